"""Names: the one pattern for deployment and cluster names, and Berth's container labels.

Imported by the spec, the settings and the Docker gateway. The database checks the same
pattern (`deployments_name_dns_label` in sql/migrations/0001_schema.sql); a unit test keeps
the SQL text equal to `NAME_REGEX`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

# A lowercase DNS label (RFC 1123): usable as a container name part and a DNS alias.
NAME_REGEX = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
NAME_PATTERN = re.compile(NAME_REGEX)
NAME_RULE = "must be a lowercase DNS label: a-z, 0-9 and '-', 1-63 characters"

LABEL_DEPLOYMENT = "io.berth.deployment"
LABEL_REPLICA = "io.berth.replica"
LABEL_SPEC_HASH = "io.berth.spec-hash"
LABEL_CLUSTER = "io.berth.cluster"
LABEL_GENERATION = "io.berth.generation"
# Berth's proof of having created a replica, keyed by the database's secret
# (`controller.model.provenance`): an HMAC, never the key.
LABEL_PROOF = "io.berth.proof"
# Named volumes and networks Berth made carry these (and LABEL_CLUSTER); nothing without
# them is ever removed.
LABEL_VOLUME = "io.berth.volume"
LABEL_NETWORK = "io.berth.network"
# On a swarm, the node holding a deployment's node-local volume carries the node label
# `io.berth.volume-home.<volume's Docker name>` (Berth's record of where the data is).
LABEL_VOLUME_HOME = "io.berth.volume-home"
# The engine claim (`controller.model.claims`): the engine's id and the claiming database.
LABEL_ENGINE = "io.berth.engine"
LABEL_DATABASE = "io.berth.database"
# Images Berth builds live in this repository namespace, one repository per deployment
# (and cluster); the `builds` table records which build made which tag. Nothing else may
# tag images there: Berth removes old ones (BERTH_IMAGE_RETENTION).
BUILD_REPOSITORY_PREFIX = "berth-build/"
RESERVED_LABEL_PREFIX = "io.berth."
# A route's host: a lowercase DNS name (the database checks the same pattern).
HOST_PATTERN = r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
LOOPBACK = "127.0.0.1"
DEFAULT_CLUSTER = "default"
# Where the docker runtime's replicas run: its one engine.
LOCAL_NODE = "local"


def container_name(
    deployment: str, replica: int, cluster: str = DEFAULT_CLUSTER, revision: str = ""
) -> str:
    """Deterministic name: Docker's unique names make a repeated create find the first one.

    The revision (the first 8 characters of the spec hash) is part of it, so that during a
    start-first rollout the old and the new container of one slot live side by side, and a
    crash at any step still leaves at most one container per (slot, revision). Another
    cluster's containers carry its name too, so two Berth installations sharing an engine
    never contend for a name.
    """
    suffix = f"-{revision[:8]}" if revision else ""
    if cluster == DEFAULT_CLUSTER:
        return f"berth-{deployment}-{replica}{suffix}"
    return f"berth-{cluster}-{deployment}-{replica}{suffix}"


def volume_name(deployment: str, volume: str, cluster: str = DEFAULT_CLUSTER) -> str:
    """The Docker name of a deployment's named volume (shared by its replicas)."""
    if cluster == DEFAULT_CLUSTER:
        return f"berth-{deployment}-{volume}"
    return f"berth-{cluster}-{deployment}-{volume}"


def network_name(network: str, cluster: str = DEFAULT_CLUSTER) -> str:
    """The Docker name of a network deployments declare (`networks`), per cluster."""
    if cluster == DEFAULT_CLUSTER:
        return f"berth-net-{network}"
    return f"berth-{cluster}-net-{network}"


def build_repository(deployment: str, cluster: str = DEFAULT_CLUSTER) -> str:
    """The repository of the images built for `deployment`."""
    if cluster == DEFAULT_CLUSTER:
        return f"{BUILD_REPOSITORY_PREFIX}{deployment}"
    return f"{BUILD_REPOSITORY_PREFIX}{cluster}-{deployment}"


def build_image(deployment: str, build_key: str, cluster: str = DEFAULT_CLUSTER) -> str:
    """The tag of the image built for `deployment` from one revision and build inputs
    (`build_key`): the same source never gets a second name, so it is never rebuilt."""
    return f"{build_repository(deployment, cluster)}:{build_key}"


def advisory_key(name: str) -> int:
    """A signed 64-bit advisory-lock key: the first 8 bytes of sha256(name) (not Postgres'
    `hashtext`, whose value is not promised across versions)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def same_replica(found: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    """Whether the labels `found` on an object holding a replica's name are the identity of
    the replica `wanted` (deployment, slot, revision, cluster): a repeated create finds the
    first one, and anything else under that name is not it. Both runtimes ask this."""
    identity = (LABEL_DEPLOYMENT, LABEL_REPLICA, LABEL_SPEC_HASH)
    return all(found.get(key) == wanted.get(key) for key in identity) and (
        found.get(LABEL_CLUSTER, DEFAULT_CLUSTER) == wanted.get(LABEL_CLUSTER, DEFAULT_CLUSTER)
    )
