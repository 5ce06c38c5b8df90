-- Berth schema, version 2: leader election, fencing and the mutation log.

-- One row per cluster: the current leader term. A replica that wins the advisory lock
-- increments `term`; every write of the leader is conditioned on it (FOR SHARE), so the
-- increment waits for the old leader's in-flight mutations and fences out later ones.
CREATE TABLE berth_leader (
    cluster      text PRIMARY KEY,
    term         bigint NOT NULL,
    holder_id    uuid NOT NULL,
    holder_host  text NOT NULL,
    holder_pid   integer NOT NULL,
    acquired_at  timestamptz NOT NULL
);

-- Every replica, leader or standby, reports itself here every few seconds.
CREATE TABLE berth_nodes (
    node_id    uuid PRIMARY KEY,
    cluster    text NOT NULL,
    host       text NOT NULL,
    pid        integer NOT NULL,
    http_addr  text NOT NULL,
    role       text NOT NULL CONSTRAINT berth_nodes_role_known CHECK (role IN ('leader', 'standby', 'stopped')),
    term       bigint,
    started_at timestamptz NOT NULL,
    seen_at    timestamptz NOT NULL
);
CREATE INDEX berth_nodes_by_cluster ON berth_nodes (cluster, seen_at DESC);

-- Every Docker mutation: an intent committed (fenced by term) before the call, finished after.
CREATE TABLE berth_mutations (
    id          bigserial PRIMARY KEY,
    cluster     text NOT NULL,
    term        bigint NOT NULL,
    node_id     uuid NOT NULL,
    deployment  text NOT NULL,
    action      text NOT NULL,
    target      text NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz,
    outcome     text CONSTRAINT berth_mutations_outcome_known CHECK (outcome IN ('ok', 'error', 'fenced'))
);
CREATE INDEX berth_mutations_by_term ON berth_mutations (cluster, term);
CREATE INDEX berth_mutations_by_start ON berth_mutations (started_at);

ALTER TABLE deployment_status ADD COLUMN leader_term bigint NOT NULL DEFAULT 0;
COMMENT ON COLUMN deployment_status.leader_term IS 'Term of the leader that last wrote this row.';
ALTER TABLE deployment_events ADD COLUMN leader_term bigint;
