-- Berth schema, version 3: per-replica restarts with backoff, and the `degraded` phase.

ALTER TABLE deployment_status DROP CONSTRAINT deployment_status_phase_known;
ALTER TABLE deployment_status ADD CONSTRAINT deployment_status_phase_known CHECK (phase IN (
    'queued', 'pulling_image', 'creating', 'starting', 'health_check', 'active', 'degraded',
    'failed', 'deleting'));

ALTER TABLE deployment_status
    ADD COLUMN restart_count integer NOT NULL DEFAULT 0,
    ADD COLUMN replica_restarts jsonb NOT NULL DEFAULT '{}'::jsonb;

COMMENT ON COLUMN deployment_status.restart_count IS
    'Restarts of the current generation''s replicas (exited or unhealthy), all replicas together.';
COMMENT ON COLUMN deployment_status.replica_restarts IS
    'Per replica index: restarts, last_restart_at, next_restart_at (unix seconds), last_reason, last_exit_code.';

CREATE OR REPLACE VIEW deployment_overview AS
SELECT coalesce(d.name, s.name)                              AS name,
       d.image,
       d.replicas                                            AS desired_replicas,
       coalesce(s.ready_replicas, 0)                         AS ready_replicas,
       coalesce(s.phase, 'queued')                           AS phase,
       coalesce(s.phase_progress, 0)                         AS phase_progress,
       d.generation,
       coalesce(s.observed_generation, 0)                    AS observed_generation,
       coalesce(d.generation = s.observed_generation AND s.phase = 'active', false) AS converged,
       coalesce(s.message, '')                               AS message,
       s.failure_kind,
       s.next_attempt_at,
       s.phase_updated_at,
       d.updated_at                                          AS spec_updated_at,
       coalesce(s.restart_count, 0)                          AS restart_count
FROM deployments d
FULL JOIN deployment_status s ON s.name = d.name;
