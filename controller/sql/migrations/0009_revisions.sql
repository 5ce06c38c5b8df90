-- Berth schema, version 9: revisions and rollbacks. Every spec that was rolled out is kept
-- as a revision; the status says which one serves. A rollout that does not become ready
-- within its progress deadline (or crash-loops) is rolled back to the serving revision.

CREATE TABLE deployment_revisions (
    deployment  text NOT NULL,
    revision    integer NOT NULL,
    generation  bigint NOT NULL,
    spec        jsonb NOT NULL,
    spec_hash   text NOT NULL,
    image       text NOT NULL,
    image_id    text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    outcome     text NOT NULL
                CONSTRAINT deployment_revisions_outcome_known CHECK (outcome IN (
                    'serving', 'superseded', 'rolled_back', 'failed')),
    reason      text NOT NULL DEFAULT '',
    PRIMARY KEY (deployment, revision)
);
CREATE UNIQUE INDEX deployment_revisions_one_serving ON deployment_revisions (deployment)
    WHERE outcome = 'serving';

COMMENT ON TABLE deployment_revisions IS
    'One row per rolled-out spec of a deployment: the one serving, those it superseded, those rolled back. `berth rollout undo` writes a revision''s spec back into deployments.';
COMMENT ON COLUMN deployment_revisions.spec IS
    'The spec as rolled out, with the image it ran (a source deployment''s built image).';

ALTER TABLE deployment_status
    ADD COLUMN serving_revision integer,
    ADD COLUMN rollout_started_at timestamptz;

COMMENT ON COLUMN deployment_status.serving_revision IS
    'The revision whose replicas serve (deployment_revisions.revision); after a rollback, the one rolled back to.';
COMMENT ON COLUMN deployment_status.rollout_started_at IS
    'When the current generation''s rollout began: its progress deadline counts from here.';

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
       coalesce(s.restart_count, 0)                          AS restart_count,
       d.source,
       d.priority,
       s.serving_revision
FROM deployments d
FULL JOIN deployment_status s ON s.name = d.name;
