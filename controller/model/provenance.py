"""Whether a replica carrying Berth's labels is Berth's own: its creation record, or its proof.

Pure: no I/O. Called by `model.requests` (the proof label on every replica Berth creates), and
by the loop's pass and full resync (`loop.reconciler`, `loop.resync`), which mark what they
observe before planning and write lost creation records again.

Berth records every container or service it creates (`berth_containers`, written with the
create's outcome). A replica with Berth's labels and no such record is not adopted: anyone
who can run `docker run --label` can make one. But a record can be lost while the replica is
Berth's: the last transactions of a Postgres primary that an asynchronous standby never
received, or a database restored from a backup older than the replica. So each replica also
carries a proof, `io.berth.proof`: an HMAC-SHA256, keyed by a secret only this database
holds (`berth_proof_key`, schema 21), of the cluster, deployment, slot, spec hash and name
it was created with. A label can be copied, so the proof alone never outweighs the
records: a proven replica is Berth's own only when no record names another container under
its name (that one was Berth's, and this one took its place behind Berth's back). See
RECONCILIATION.md, "The database's own failover".
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum

from controller.model.names import DEFAULT_CLUSTER
from controller.model.replicas import ObservedReplica

_SEPARATOR = "\x1f"  # the ASCII unit separator: in no name, label or hash


def creation_proof(
    key: bytes, cluster: str, deployment: str, replica: int, spec_hash: str, name: str
) -> str:
    """The proof label of the replica Berth creates with these labels and this name."""
    message = _SEPARATOR.join((cluster, deployment, str(replica), spec_hash, name)).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def proves(key: bytes | None, replica: ObservedReplica) -> bool:
    """The replica's proof label is the one Berth would have written for it."""
    if key is None or not replica.proof or replica.deployment is None or replica.replica is None:
        return False
    wanted = creation_proof(
        key,
        replica.cluster or DEFAULT_CLUSTER,
        replica.deployment,
        replica.replica,
        replica.spec_hash or "",
        replica.name,
    )
    return hmac.compare_digest(wanted, replica.proof)


class Provenance(StrEnum):
    RECORDED = "recorded"  # a creation record, a create in flight, or older than records
    PROVEN = "proven"  # no record, but the proof holds and no record names another: lost
    UNRECORDED = "unrecorded"  # neither: not Berth's own, replaced like a stale one


@dataclass(frozen=True)
class CreationRecords:
    """What the database knows of one deployment's replicas: the ids Berth recorded
    creating and their names, the names of creates still in flight (their outcome not yet
    written), and the time (unix seconds) from which a replica needs a record at all."""

    ids: frozenset[str] = frozenset()
    names: frozenset[str] = frozenset()
    pending: frozenset[str] = frozenset()
    since: float | None = None

    def including(self, ids: frozenset[str]) -> CreationRecords:
        """These records and the ids a pass itself just created."""
        return replace(self, ids=self.ids | ids) if ids else self


def older_than_records(replica: ObservedReplica, records: CreationRecords) -> bool:
    """Created before Berth kept creation records at all. The engine gives a replica's
    creation time in whole seconds (rounded down), so only a replica whose whole second
    ended before records began is surely older: one made in that same second, after the
    migration, must have a record or a proof like any other."""
    return records.since is None or replica.created + 1 <= records.since


def provenance(replica: ObservedReplica, records: CreationRecords, key: bytes | None) -> Provenance:
    if (
        replica.id in records.ids
        or replica.name in records.pending
        or older_than_records(replica, records)
    ):
        return Provenance.RECORDED
    if replica.name not in records.names and proves(key, replica):
        return Provenance.PROVEN
    return Provenance.UNRECORDED


def mark_recorded(
    replicas: Iterable[ObservedReplica], records: CreationRecords, key: bytes | None
) -> list[ObservedReplica]:
    """The replicas with `recorded` set when Berth has a record of creating them, or has
    lost that record and their proof holds."""
    return [
        replica
        if provenance(replica, records, key) != Provenance.UNRECORDED
        else replace(replica, recorded=False)
        for replica in replicas
    ]


def lost_records(
    replicas: Iterable[ObservedReplica], records: CreationRecords, key: bytes | None
) -> list[ObservedReplica]:
    """Berth's own replicas whose creation record the database lost: to be written again."""
    return [r for r in replicas if provenance(r, records, key) == Provenance.PROVEN]
