"""The Postgres pool's reconnection schedule (`controller.gateways.postgres_pool`): however
long Postgres was away, the pool tries again within a second, so that a leader (whose
data-plane check reads through the pool) returns within 2 s of Postgres answering again.
psycopg_pool's own schedule doubles (1, 2, 4, 8, 16 s...): after a 20 s outage, `berth bench
run chaos` measured a leader 3.5 to 9.5 s after Postgres was back."""

from __future__ import annotations

from psycopg_pool.base import AttemptWithBackoff

import controller.gateways.postgres_pool  # noqa: F401  (it sets the schedule on import)


def test_a_lost_connection_is_tried_again_every_half_second_however_long_the_outage() -> None:
    attempt = AttemptWithBackoff(timeout=300.0)
    delays = []
    for second in range(60):  # a minute of failed attempts
        attempt.update_delay(float(second))
        delays.append(attempt.delay)
    assert max(delays) < 1.0, delays
    assert min(delays) > 0.0, "not a busy loop"
