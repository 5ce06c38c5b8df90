-- Berth schema, version 4: the stuck-phase counter lives in Postgres, not in a leader's
-- memory, so a failover neither resets it nor loses it.

ALTER TABLE deployment_status
    ADD COLUMN stuck_resumes integer NOT NULL DEFAULT 0
        CONSTRAINT deployment_status_stuck_resumes_nonnegative CHECK (stuck_resumes >= 0),
    ADD COLUMN stuck_generation bigint;

COMMENT ON COLUMN deployment_status.stuck_resumes IS
    'Times generation stuck_generation was found stuck in a moving phase and resumed; reset when the deployment reaches active or failed. The third time fails the deployment.';
COMMENT ON COLUMN deployment_status.stuck_generation IS
    'The generation stuck_resumes counts for.';
