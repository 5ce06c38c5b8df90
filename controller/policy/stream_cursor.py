"""Where a reader of the stream stands: what it delivered, what it still waits for.

Pure: no I/O. Used by the API's stream hub (`controller.app.stream_hub`). Stream numbers
(`berth_stream_seq`) are taken when a row is written but become visible when its
transaction commits, so a reader may see 7 before 6 (6's transaction commits later, or
never: a refused insert also takes a number). A number skipped over is a *hole*: later
reads also ask for it, until it shows up or `hole_timeout_s` passes. The *safe* cursor
is the highest number below every open hole: a client that resumes from it misses
nothing, at the price of seeing again what it got past that point (items carry their
number; clients de-duplicate on it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

HOLE_TIMEOUT_S = 5.0
MAX_HOLES = 10_000  # under heavy churn the oldest are given up first


@dataclass
class StreamCursor:
    delivered: int
    hole_timeout_s: float = HOLE_TIMEOUT_S
    holes: dict[int, float] = field(default_factory=dict)  # number -> when first missed

    def accept(self, seqs: Iterable[int], now: float) -> list[int]:
        """Take the numbers a read returned; return those not delivered before, in order."""
        fresh = []
        for seq in sorted(set(seqs)):
            if seq in self.holes:
                del self.holes[seq]
                fresh.append(seq)
            elif seq > self.delivered:
                for missing in range(self.delivered + 1, seq):
                    self.holes[missing] = now
                self.delivered = seq
                fresh.append(seq)
        self.expire(now)
        while len(self.holes) > MAX_HOLES:
            del self.holes[min(self.holes)]
        return fresh

    def expire(self, now: float) -> None:
        """Give up on holes older than the timeout (a rolled-back write never appears)."""
        for seq, since in list(self.holes.items()):
            if now - since >= self.hole_timeout_s:
                del self.holes[seq]

    @property
    def safe(self) -> int:
        """Resume from here and nothing is missed."""
        return min(self.holes) - 1 if self.holes else self.delivered

    def open_holes(self) -> list[int]:
        return sorted(self.holes)
