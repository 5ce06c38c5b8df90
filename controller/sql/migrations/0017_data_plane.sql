-- Berth schema, version 17: one data plane per cluster. This database's own id (written in
-- the claim Berth puts on an engine, so that a second Berth database with the same cluster
-- name on that engine touches nothing), the engine each cluster runs on (a replica on
-- another engine never leads), and replicas that refuse to lead say why in berth_nodes.

CREATE TABLE berth_installation (
    singleton  boolean PRIMARY KEY DEFAULT true CONSTRAINT berth_installation_one CHECK (singleton),
    id         uuid NOT NULL DEFAULT gen_random_uuid(),
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO berth_installation DEFAULT VALUES;

CREATE TABLE berth_cluster_engines (
    cluster         text PRIMARY KEY,
    engine_id       text NOT NULL,
    claimed_by_host text NOT NULL,
    claimed_at      timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE berth_cluster_engines IS
    'The Docker engine each cluster runs on (the id in the claim Berth writes on the engine): '
    'a replica whose engine differs never leads. Delete the row to move a cluster on purpose.';

ALTER TABLE berth_nodes DROP CONSTRAINT berth_nodes_role_known;
ALTER TABLE berth_nodes
    ADD CONSTRAINT berth_nodes_role_known CHECK (role IN ('leader', 'standby', 'stopped', 'refused')),
    ADD COLUMN note text;

SELECT berth_grant_roles();
