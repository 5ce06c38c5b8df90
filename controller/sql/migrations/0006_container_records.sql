-- Berth schema, version 6: a record of every container Berth created. A container that
-- carries Berth's labels (and its cluster's) but that Berth has no record of creating is not
-- adopted as a replica: it is replaced like a stale one. Containers created before this
-- migration was applied count as recorded (Berth made them, or adopted them, already).

CREATE TABLE berth_containers (
    container_id text PRIMARY KEY,
    deployment   text NOT NULL,
    name         text NOT NULL,
    term         bigint NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX berth_containers_by_deployment ON berth_containers (deployment);

COMMENT ON TABLE berth_containers IS
    'Containers Berth created (written with the create''s outcome, or by the next leader when it resolves an unfinished create as done); removed with the container.';

-- Every pass reads the creates still in flight for its deployment, and every new leader the
-- unfinished intents of earlier terms: both look only at rows without outcome or resolution,
-- a handful among a week of mutations, so a partial index keeps them off a table scan.
CREATE INDEX berth_mutations_unfinished ON berth_mutations (deployment)
    WHERE outcome IS NULL AND resolution IS NULL;
