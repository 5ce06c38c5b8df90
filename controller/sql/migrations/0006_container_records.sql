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
