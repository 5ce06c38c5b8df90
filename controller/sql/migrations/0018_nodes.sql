-- Berth schema, version 18: many nodes. Where each replica runs (recorded by the leader with
-- the deployment's status: the `replicas` view), the runtime's nodes (the `nodes` view, and
-- `cluster_nodes.wanted_availability` to drain or activate one), and a deployment's
-- `placement`: constraints on node attributes and labels, spread over a label, at most N
-- replicas per node. The patterns below are controller/model/nodes.py's (a unit test keeps
-- them equal).

ALTER TABLE deployments ADD COLUMN placement jsonb NOT NULL DEFAULT '{}'::jsonb;
COMMENT ON COLUMN deployments.placement IS
    'Where replicas may run (swarm runtime): {"constraints": ["node.labels.zone==a", "node.role!=manager"], "spread": "zone", "max_per_node": 1}.';

CREATE FUNCTION berth_validate_placement() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    entry record;
    item jsonb;
    item_index integer := 0;
BEGIN
    IF jsonb_typeof(NEW.placement) <> 'object' THEN
        PERFORM berth_refuse('placement', format('must be a JSON object, got %s', jsonb_typeof(NEW.placement)));
    END IF;
    FOR entry IN SELECT e.key FROM jsonb_each(NEW.placement) e LOOP
        IF entry.key NOT IN ('constraints', 'spread', 'max_per_node') THEN
            PERFORM berth_refuse('placement.' || entry.key, 'unknown field (constraints, spread, max_per_node)');
        END IF;
    END LOOP;
    IF NEW.placement ? 'constraints' THEN
        IF jsonb_typeof(NEW.placement -> 'constraints') <> 'array' THEN
            PERFORM berth_refuse('placement.constraints', 'must be a JSON array of constraints like "node.labels.zone==a"');
        END IF;
        IF jsonb_array_length(NEW.placement -> 'constraints') > 16 THEN
            PERFORM berth_refuse('placement.constraints', format('at most 16, got %s', jsonb_array_length(NEW.placement -> 'constraints')));
        END IF;
        FOR item IN SELECT c.value FROM jsonb_array_elements(NEW.placement -> 'constraints') c LOOP
            IF jsonb_typeof(item) <> 'string' OR item #>> '{}' !~ '^node\.(id|hostname|role|platform\.os|platform\.arch|labels\.[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}) *(==|!=) *[A-Za-z0-9_.:@/-]{1,128}$' THEN
                PERFORM berth_refuse(format('placement.constraints[%s]', item_index),
                    format('must be "node.<id|hostname|role|platform.os|platform.arch|labels.NAME><==|!=><value>", got %s', item));
            END IF;
            item_index := item_index + 1;
        END LOOP;
    END IF;
    IF jsonb_typeof(NEW.placement -> 'spread') NOT IN ('null') AND (jsonb_typeof(NEW.placement -> 'spread') <> 'string'
       OR NEW.placement ->> 'spread' !~ '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$') THEN
        PERFORM berth_refuse('placement.spread', format('must be the name of a node label, like "zone", got %s', NEW.placement -> 'spread'));
    END IF;
    IF jsonb_typeof(NEW.placement -> 'max_per_node') NOT IN ('null')
       AND NOT berth_json_int_between(NEW.placement -> 'max_per_node', 1, 1000) THEN
        PERFORM berth_refuse('placement.max_per_node', format('must be an integer from 1 to 1000, got %s', NEW.placement -> 'max_per_node'));
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER berth_13_validate_placement BEFORE INSERT OR UPDATE ON deployments
    FOR EACH ROW EXECUTE FUNCTION berth_validate_placement();

-- The workload fields a row sets (version 12's, plus placement).
CREATE OR REPLACE FUNCTION berth_workload_of(d deployments) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN d.resources <> '{}' OR d.volumes <> '[]' OR d.networks <> '[]'
                  OR d.stop_signal IS NOT NULL OR d.stop_grace_s IS NOT NULL OR d."user" IS NOT NULL
                  OR d.read_only OR d.cap_add <> '[]' OR d.cap_drop <> '[]' OR d.init
                  OR d.privileged OR d.network_mode IS NOT NULL OR d.pid_mode IS NOT NULL
                  OR d.ipc_mode IS NOT NULL OR d.devices <> '[]' OR d.placement <> '{}'
        THEN jsonb_strip_nulls(jsonb_build_object(
            'resources', nullif(d.resources, '{}'), 'volumes', nullif(d.volumes, '[]'),
            'networks', nullif(d.networks, '[]'), 'stop_signal', d.stop_signal,
            'stop_grace_s', d.stop_grace_s, 'user', d."user", 'read_only', nullif(d.read_only, false),
            'cap_add', nullif(d.cap_add, '[]'), 'cap_drop', nullif(d.cap_drop, '[]'),
            'init', nullif(d.init, false), 'privileged', nullif(d.privileged, false),
            'network_mode', d.network_mode, 'pid_mode', d.pid_mode, 'ipc_mode', d.ipc_mode,
            'devices', nullif(d.devices, '[]'), 'placement', nullif(d.placement, '{}')))
    END
$$;

-- The API's fields with their JSON types: version 12's, plus placement.
CREATE OR REPLACE FUNCTION berth_checked_spec(spec jsonb) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    entry record;
    expected text;
    cleaned jsonb := '{}'::jsonb;
BEGIN
    IF spec IS NULL OR jsonb_typeof(spec) <> 'object' THEN
        RAISE EXCEPTION 'deployments: the body must be a JSON object, got %', coalesce(jsonb_typeof(spec), 'nothing')
            USING ERRCODE = 'check_violation';
    END IF;
    FOR entry IN SELECT e.key, e.value FROM jsonb_each(spec) e LOOP
        expected := CASE entry.key
            WHEN 'name' THEN 'string' WHEN 'image' THEN 'string'
            WHEN 'replicas' THEN 'integer' WHEN 'priority' THEN 'integer'
            WHEN 'command' THEN 'array' WHEN 'ports' THEN 'array' WHEN 'routes' THEN 'array'
            WHEN 'env' THEN 'object' WHEN 'labels' THEN 'object' WHEN 'rollout' THEN 'object'
            WHEN 'source' THEN 'object' WHEN 'healthcheck' THEN 'object'
            WHEN 'resources' THEN 'object' WHEN 'volumes' THEN 'array' WHEN 'networks' THEN 'array'
            WHEN 'stop_signal' THEN 'string' WHEN 'stop_grace_s' THEN 'number'
            WHEN 'user' THEN 'string' WHEN 'read_only' THEN 'boolean'
            WHEN 'cap_add' THEN 'array' WHEN 'cap_drop' THEN 'array' WHEN 'init' THEN 'boolean'
            WHEN 'privileged' THEN 'boolean' WHEN 'network_mode' THEN 'string'
            WHEN 'pid_mode' THEN 'string' WHEN 'ipc_mode' THEN 'string' WHEN 'devices' THEN 'array'
            WHEN 'placement' THEN 'object'
        END;
        IF expected IS NULL THEN
            PERFORM berth_refuse(entry.key, 'unknown field');
        END IF;
        CONTINUE WHEN jsonb_typeof(entry.value) = 'null';
        IF expected = 'integer' THEN
            IF NOT berth_json_int_between(entry.value, -2147483648, 2147483647) THEN
                PERFORM berth_refuse(entry.key, format('must be an integer, got %s', entry.value));
            END IF;
        ELSIF jsonb_typeof(entry.value) <> expected THEN
            PERFORM berth_refuse(entry.key, format('must be a JSON %s, got %s', expected, jsonb_typeof(entry.value)));
        END IF;
        IF entry.key = 'command' AND EXISTS (
            SELECT 1 FROM jsonb_array_elements(entry.value) a WHERE jsonb_typeof(a) <> 'string') THEN
            PERFORM berth_refuse('command', 'must be an array of strings');
        END IF;
        cleaned := cleaned || jsonb_build_object(entry.key, entry.value);
    END LOOP;
    RETURN cleaned;
END
$$;

-- Where each replica runs, as the leader last observed it (written with the status row).
ALTER TABLE deployment_status ADD COLUMN replicas jsonb NOT NULL DEFAULT '[]'::jsonb;
COMMENT ON COLUMN deployment_status.replicas IS
    'The replicas as last observed by the leader: [{"id", "revision", "slot", "node", "state", "health", "address", "restarts", "note"}]; read it through the replicas view.';

CREATE VIEW replicas AS
SELECT s.name AS deployment, r.revision, r.slot, r.node, r.state, r.health, r.address,
       r.restarts, r.note, r.id AS replica_id, s.updated_at AS observed_at
FROM deployment_status s,
     LATERAL jsonb_to_recordset(s.replicas) AS r(id text, revision text, slot integer,
         node text, state text, health text, address text, restarts integer, note text);
COMMENT ON VIEW replicas IS 'Every replica: its deployment, revision, slot, node, state, health, address and restarts.';

-- The runtime's nodes, as the leader last observed them; an operator sets
-- wanted_availability to drain or activate one (`berth node drain NAME`).
CREATE TABLE cluster_nodes (
    cluster             text NOT NULL,
    node_id             text NOT NULL,
    name                text NOT NULL,
    address             text NOT NULL DEFAULT '',
    role                text NOT NULL,
    availability        text NOT NULL,
    state               text NOT NULL,
    labels              jsonb NOT NULL DEFAULT '{}'::jsonb,
    engine_version      text NOT NULL DEFAULT '',
    wanted_availability text CONSTRAINT cluster_nodes_wanted_known
                        CHECK (wanted_availability IN ('active', 'pause', 'drain')),
    note                text NOT NULL DEFAULT '',
    seen_at             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cluster, node_id)
);
COMMENT ON COLUMN cluster_nodes.wanted_availability IS
    'Set by an operator: drain (Berth moves the node''s replicas off start-first, then Swarm drains it), pause, or active. NULL: leave it as it is.';

CREATE VIEW nodes AS
SELECT n.cluster, n.name, n.address, n.role, n.availability, n.state, n.labels,
       (SELECT count(*) FROM replicas r WHERE r.node = n.name OR r.node = n.name || ' (lost)') AS replicas,
       n.wanted_availability, n.note, n.engine_version, n.node_id, n.seen_at
FROM cluster_nodes n;
COMMENT ON VIEW nodes IS 'The runtime''s nodes with the replicas Berth runs on each.';

-- The relations the operator and the viewer read: a table, so that a migration adding one
-- inserts a row instead of replacing berth_grant_roles.
CREATE TABLE berth_readable (relation text PRIMARY KEY);
INSERT INTO berth_readable VALUES
    ('deployments'), ('deployment_status'), ('deployment_events'), ('deployment_overview'),
    ('deployment_revisions'), ('builds'), ('build_logs'), ('build_queue'),
    ('webhook_deliveries'), ('policy'), ('quotas'), ('berth_leader'), ('berth_nodes'),
    ('berth_schema_migrations'), ('berth_roles'), ('berth_readable'), ('replicas'),
    ('nodes'), ('cluster_nodes');

-- Version 15's grants, reading the relations from berth_readable; the operator may drain
-- and activate nodes.
CREATE OR REPLACE FUNCTION berth_grant_roles() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    operator_role name := (SELECT role FROM berth_roles WHERE kind = 'operator');
    viewer_role name := (SELECT role FROM berth_roles WHERE kind = 'viewer');
    daemon_role name := (SELECT role FROM berth_roles WHERE kind = 'daemon');
    admin_role name := (SELECT role FROM berth_roles WHERE kind = 'admin');
    each_role name;
    readable text[] := ARRAY(SELECT relation FROM berth_readable ORDER BY relation);
    relation text;
BEGIN
    FOREACH each_role IN ARRAY ARRAY[operator_role, viewer_role, daemon_role, admin_role] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = each_role) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', each_role);
            EXCEPTION
                WHEN duplicate_object THEN
                    NULL;  -- made meanwhile by a migration of another database of this server
                WHEN insufficient_privilege THEN
                    -- An upgrade run by a role that may not create roles must not fail: the
                    -- schema is made, the grants wait for an administrator.
                    RAISE WARNING 'role % does not exist and % may not create roles: no grants made. As an administrator: CREATE ROLE % NOLOGIN (and the other three of berth_roles), then SELECT berth_grant_roles();',
                        each_role, current_user, each_role;
                    RETURN;
            END;
        END IF;
        BEGIN
            EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), each_role);
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE WARNING 'could not grant CONNECT on database % to %: the database''s owner may', current_database(), each_role;
        END;
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', current_schema(), each_role);
    END LOOP;
    BEGIN
        EXECUTE format('GRANT %I TO %I', operator_role, admin_role);
    EXCEPTION WHEN insufficient_privilege THEN
        RAISE WARNING 'could not make % a member of %: an administrator may (GRANT % TO %)', admin_role, operator_role, operator_role, admin_role;
    END;

    -- Berth's own role: every table, sequence and function of the schema.
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO %I', current_schema(), daemon_role);
    EXECUTE format('GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA %I TO %I', current_schema(), daemon_role);

    -- Reading: the operator, the viewer (and through the operator, the administrator).
    FOREACH relation IN ARRAY readable LOOP
        IF to_regclass(relation) IS NOT NULL THEN
            EXECUTE format('GRANT SELECT ON %I TO %I, %I', relation, operator_role, viewer_role);
        END IF;
    END LOOP;
    EXECUTE format('GRANT SELECT (name, version, created_at, updated_at) ON secrets TO %I, %I', operator_role, viewer_role);
    EXECUTE format('GRANT SELECT (id, name, url, events, enabled, created_at) ON webhooks TO %I, %I', operator_role, viewer_role);

    -- Writing: the operator's declarations; the administrator's policy and quotas.
    EXECUTE format('GRANT INSERT, UPDATE, DELETE ON deployments, webhooks TO %I', operator_role);
    EXECUTE format('GRANT INSERT, DELETE ON secrets TO %I', operator_role);
    EXECUTE format('GRANT UPDATE (value) ON secrets TO %I', operator_role);
    EXECUTE format('GRANT USAGE ON SEQUENCE berth_stream_seq TO %I', operator_role);
    EXECUTE format('GRANT USAGE ON ALL SEQUENCES IN SCHEMA %I TO %I', current_schema(), operator_role);
    EXECUTE format('GRANT UPDATE (wanted_availability) ON cluster_nodes TO %I', operator_role);
    EXECUTE format('GRANT INSERT, UPDATE, DELETE ON policy, quotas TO %I', admin_role);
END
$$;

SELECT berth_grant_roles();
