"""Backoff for drift repairs: a container that keeps dying must not make Berth hammer Docker.

Pure (the caller passes `now`), so it is unit-tested without a clock. Called by the
reconciler before it repairs a deployment whose current generation was already active.
A repair closer than `window_s` to the previous one waits base * 2^(n-1) seconds (capped),
where n counts such close repairs in a row; a repair after a quiet window starts over.
Rollouts (a new generation) are never delayed and start a fresh count.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class _RepairState:
    generation: int
    count: int
    last_repair_at: float
    not_before: float | None = None


class RepairBackoff:
    def __init__(self, window_s: float, base_s: float, max_s: float) -> None:
        self.window_s = window_s
        self.base_s = base_s
        self.max_s = max_s
        self._states: dict[str, _RepairState] = {}

    def delay(self, count: int) -> float:
        return float(min(self.base_s * 2 ** min(max(count - 1, 0), 30), self.max_s))

    def check(self, name: str, generation: int, now: float) -> float:
        """0 if a repair may run now (and it is recorded as run), else the seconds to wait."""
        state = self._states.get(name)
        if state is None or state.generation != generation:
            self._states[name] = _RepairState(generation, 0, now)
            return 0.0
        if state.not_before is not None:
            if now >= state.not_before:
                state.not_before = None
                state.last_repair_at = now
                return 0.0
            return state.not_before - now
        if now - state.last_repair_at >= self.window_s:
            state.count = 0
            state.last_repair_at = now
            return 0.0
        state.count += 1
        wait = self.delay(state.count)
        state.not_before = now + wait
        return wait

    def repairs_in_a_row(self, name: str) -> int:
        state = self._states.get(name)
        return state.count if state else 0

    def forget(self, name: str) -> None:
        self._states.pop(name, None)
