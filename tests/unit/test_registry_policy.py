"""What the janitor deletes from the registry (controller.policy.registry): only Berth's
pinned build manifests of this registry that no kept image names."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.policy.registry import manifests_to_delete, pinned_manifest

REG = "10.0.0.254:5000"
A = f"{REG}/berth-build/web@sha256:" + "a" * 64
B = f"{REG}/berth-build/web@sha256:" + "b" * 64
C = f"{REG}/berth-build/api@sha256:" + "c" * 64


@pytest.mark.parametrize(
    ("image", "manifest"),
    [
        (A, ("berth-build/web", "sha256:" + "a" * 64)),
        ("berth-build/web:3f2a", None),  # built without a registry: nothing pushed
        (f"other:5000/berth-build/web@sha256:{'a' * 64}", None),  # another registry
        (f"{REG}/library/nginx@sha256:{'a' * 64}", None),  # not Berth's repository
        (f"{REG}/berth-build/web:latest", None),  # not pinned
    ],
)
def test_only_berths_pinned_manifests_in_this_registry_are_named(
    image: str, manifest: tuple[str, str] | None
) -> None:
    assert pinned_manifest(image, REG) == manifest


@pytest.mark.parametrize(
    ("images", "deleted"),
    [
        ([(A, True), (B, False)], [("berth-build/web", "sha256:" + "b" * 64)]),
        ([(A, True), (B, True)], []),
        ([(A, False), (A, True)], []),  # the same manifest kept under another build
        (
            [(A, False), (C, False)],
            [("berth-build/api", "sha256:" + "c" * 64), ("berth-build/web", "sha256:" + "a" * 64)],
        ),
        ([("berth-build/web:1", False)], []),
        ([], []),
    ],
)
def test_what_retention_no_longer_keeps_is_deleted(
    images: list[tuple[str, bool]], deleted: list[tuple[str, str]]
) -> None:
    assert manifests_to_delete(images, REG) == deleted
    assert manifests_to_delete(images, "") == [], "no registry: nothing to delete"


@given(st.lists(st.tuples(st.sampled_from([A, B, C, "x:1"]), st.booleans()), max_size=12))
def test_a_kept_image_is_never_deleted(images: list[tuple[str, bool]]) -> None:
    deleted = set(manifests_to_delete(images, REG))
    assert not {pinned_manifest(image, REG) for image, keep in images if keep} & deleted
