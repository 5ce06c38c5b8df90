-- Berth schema, version 5: failover that a frozen leader cannot stall, and a mutation log
-- that tells the whole truth.
--
-- 1. Unfinished Docker mutations are resolved by the next leader. A leader that died (or was
--    frozen and deposed) between an intent and its outcome leaves outcome NULL; the next
--    leader looks at Docker and records what became of it.
-- 2. `called_at`: when the call itself was made (after the last trust check), so the log
--    shows that no deposed leader started a call after its successor's first.
-- 3. Leader heartbeats are written (in their own table: the term row stays free of writes
--    that would wait for fenced transactions), so a new leader knows how long its
--    predecessor may still trust itself.

ALTER TABLE berth_mutations
    ADD COLUMN called_at timestamptz,
    ADD COLUMN resolution text
        CONSTRAINT berth_mutations_resolution_known CHECK (resolution IN ('done', 'not done', 'unknown')),
    ADD COLUMN resolved_by_term bigint,
    ADD COLUMN resolved_at timestamptz;

COMMENT ON COLUMN berth_mutations.outcome IS
    'ok, error, or fenced (not made: leadership was lost before the call); NULL while the call is in flight, or forever if its leader died: see resolution.';
COMMENT ON COLUMN berth_mutations.called_at IS
    'When the Docker call was made, just after the last trust check (written with the outcome).';
COMMENT ON COLUMN berth_mutations.resolution IS
    'For an intent left without outcome by an earlier term: what Docker showed the next leader (done, not done, unknown).';

CREATE TABLE berth_heartbeats (
    cluster   text PRIMARY KEY,
    term      bigint NOT NULL,
    holder_id uuid NOT NULL,
    beat_at   timestamptz NOT NULL
);
COMMENT ON TABLE berth_heartbeats IS
    'The leader''s last heartbeat (server time), written every BERTH_LEADER_HEARTBEAT_INTERVAL_S. A new leader waits until its predecessor''s trust window, counted from here, has lapsed, unless the predecessor has no session left.';
