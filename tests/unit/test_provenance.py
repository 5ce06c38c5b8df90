"""Which replicas carrying Berth's labels are Berth's own (`controller.model.provenance`): a
table of records and proofs, and properties of the proof (hypothesis): it holds for what
Berth created, and for nothing that differs from it in one identity field or in the key."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.model.provenance import (
    CreationRecords,
    Provenance,
    creation_proof,
    lost_records,
    mark_recorded,
    provenance,
    proves,
)
from controller.model.replicas import ObservedReplica

KEY = bytes(range(32))


def made_by_berth(key: bytes = KEY, proof: str | None = None) -> ObservedReplica:
    """Replica 0 of `web` as Berth creates it, or with `proof` in place of its own."""
    replica = ObservedReplica("c-id", "c-name", "web", 0, "h1", cluster="prod", created=1000)
    made = creation_proof(key, "prod", "web", 0, "h1", "c-name")
    return replace(replica, proof=made if proof is None else proof)


@pytest.mark.parametrize(
    ("records", "replica", "found"),
    [
        (CreationRecords(frozenset({"c-id"}), since=500.0), made_by_berth(), "recorded"),
        (CreationRecords(pending=frozenset({"c-name"}), since=500.0), made_by_berth(), "recorded"),
        (CreationRecords(since=2000.0), made_by_berth(proof=""), "recorded"),  # before records
        (CreationRecords(since=None), made_by_berth(proof=""), "recorded"),  # an older schema
        (CreationRecords(since=1001.0), made_by_berth(proof=""), "recorded"),  # its second ended
        # Created (whole seconds: 1000) in the second records began, after them: not older.
        (CreationRecords(since=1000.4), made_by_berth(), "proven"),
        (CreationRecords(since=1000.4), made_by_berth(proof=""), "unrecorded"),
        # The database lost the record (a failover, a restore); the proof holds: Berth's own.
        (CreationRecords(since=500.0), made_by_berth(), "proven"),
        # Labels copied from a real replica after it was removed behind Berth's back: the
        # record of that name (another id) still stands, so the proof does not outweigh it.
        (
            CreationRecords(frozenset({"old-id"}), frozenset({"c-name"}), since=500.0),
            made_by_berth(),
            "unrecorded",
        ),
        (CreationRecords(since=500.0), made_by_berth(proof=""), "unrecorded"),  # by hand
        (CreationRecords(since=500.0), made_by_berth(proof="0" * 64), "unrecorded"),  # forged
        (CreationRecords(since=500.0), made_by_berth(key=b"another database"), "unrecorded"),
    ],
)
def test_provenance(records: CreationRecords, replica: ObservedReplica, found: str) -> None:
    assert provenance(replica, records, KEY) == Provenance(found)
    [marked] = mark_recorded([replica], records, KEY)
    assert marked.recorded is (found != "unrecorded")
    assert lost_records([replica], records, KEY) == ([replica] if found == "proven" else [])


def test_without_a_key_nothing_is_proven() -> None:
    replica = made_by_berth()
    assert provenance(replica, CreationRecords(since=500.0), None) == Provenance.UNRECORDED


def test_a_pass_counts_what_it_just_created() -> None:
    records = CreationRecords(since=500.0).including(frozenset({"c-id"}))
    assert provenance(made_by_berth(proof=""), records, KEY) == Provenance.RECORDED


labels = st.text(st.characters(codec="utf-8", exclude_characters="\x1f"), max_size=20)


@given(labels, labels, st.integers(0, 99), labels, labels, st.binary(min_size=1, max_size=40))
def test_the_proof_holds_for_what_berth_created(
    cluster: str, deployment: str, slot: int, spec_hash: str, name: str, key: bytes
) -> None:
    proof = creation_proof(key, cluster or "default", deployment, slot, spec_hash, name)
    replica = ObservedReplica("id", name, deployment, slot, spec_hash, cluster or "default")
    assert proves(key, replace(replica, proof=proof))


@given(st.sampled_from(["cluster", "deployment", "replica", "spec_hash", "name", "key"]))
def test_the_proof_fails_when_one_field_differs(changed: str) -> None:
    replica = made_by_berth()
    key = b"another key" if changed == "key" else KEY
    changes: dict[str, ObservedReplica] = {
        "cluster": replace(replica, cluster="other"),
        "deployment": replace(replica, deployment="other"),
        "replica": replace(replica, replica=1),
        "spec_hash": replace(replica, spec_hash="other"),
        "name": replace(replica, name="other"),
        "key": replica,
    }
    replica = changes[changed]
    assert not proves(key, replica)
    assert proves(KEY, made_by_berth())
