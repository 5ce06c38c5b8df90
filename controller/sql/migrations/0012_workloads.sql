-- Berth schema, version 12: production workloads. Resource limits, volumes, networks and the
-- process options of a container; and a deny-by-default `policy`: the options that give a
-- container power over its host (privileged mode, the host's network, PID or IPC namespace,
-- devices, the Docker socket or `/` as a bind mount, capabilities outside Docker's default
-- set) are refused, naming the field, unless an administrator allowed them for that
-- deployment. Every new column defaults to what Docker did before, so existing rows keep
-- their spec (and their containers: the spec hash leaves defaults out).

ALTER TABLE deployments
    ADD COLUMN resources    jsonb NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN volumes      jsonb NOT NULL DEFAULT '[]'::jsonb,
    ADD COLUMN networks     jsonb NOT NULL DEFAULT '[]'::jsonb,
    ADD COLUMN stop_signal  text,
    ADD COLUMN stop_grace_s double precision,
    ADD COLUMN "user"       text,
    ADD COLUMN read_only    boolean NOT NULL DEFAULT false,
    ADD COLUMN cap_add      jsonb NOT NULL DEFAULT '[]'::jsonb,
    ADD COLUMN cap_drop     jsonb NOT NULL DEFAULT '[]'::jsonb,
    ADD COLUMN init         boolean NOT NULL DEFAULT false,
    ADD COLUMN privileged   boolean NOT NULL DEFAULT false,
    ADD COLUMN network_mode text,
    ADD COLUMN pid_mode     text,
    ADD COLUMN ipc_mode     text,
    ADD COLUMN devices      jsonb NOT NULL DEFAULT '[]'::jsonb;

COMMENT ON COLUMN deployments.resources IS
    'Limits per replica: {"memory": bytes or "512Mi"/"1Gi"/"256M", "cpus": 0.5, "pids": 200}.';
COMMENT ON COLUMN deployments.volumes IS
    'Mounts: a named volume {"name": "data", "target": "/data", "read_only": false, "retain": true} (made by Berth, shared by the replicas, kept across replacements, removed on delete only when retain is false) or a bind {"source": "/srv/x", "target": "/x", "read_only": true} of a host path under BERTH_ALLOWED_BIND_PATHS.';
COMMENT ON COLUMN deployments.networks IS
    'User-defined networks Berth makes, e.g. ["backend"]: each replica joins with the deployment''s name as its DNS alias.';

-- The workload fields a row sets, as one object without those at their defaults: what the
-- daemon's full read fetches: null for the many rows that set none (the guard costs less
-- than building an object per row, and one null less than decoding 15 columns).
CREATE FUNCTION berth_workload_of(d deployments) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN d.resources <> '{}' OR d.volumes <> '[]' OR d.networks <> '[]'
                  OR d.stop_signal IS NOT NULL OR d.stop_grace_s IS NOT NULL OR d."user" IS NOT NULL
                  OR d.read_only OR d.cap_add <> '[]' OR d.cap_drop <> '[]' OR d.init
                  OR d.privileged OR d.network_mode IS NOT NULL OR d.pid_mode IS NOT NULL
                  OR d.ipc_mode IS NOT NULL OR d.devices <> '[]'
        THEN jsonb_strip_nulls(jsonb_build_object(
            'resources', nullif(d.resources, '{}'), 'volumes', nullif(d.volumes, '[]'),
            'networks', nullif(d.networks, '[]'), 'stop_signal', d.stop_signal,
            'stop_grace_s', d.stop_grace_s, 'user', d."user", 'read_only', nullif(d.read_only, false),
            'cap_add', nullif(d.cap_add, '[]'), 'cap_drop', nullif(d.cap_drop, '[]'),
            'init', nullif(d.init, false), 'privileged', nullif(d.privileged, false),
            'network_mode', d.network_mode, 'pid_mode', d.pid_mode, 'ipc_mode', d.ipc_mode,
            'devices', nullif(d.devices, '[]')))
    END
$$;

-- The capabilities Docker grants by default: adding one back (after cap_drop ALL) is safe.
CREATE FUNCTION berth_safe_capabilities() RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['AUDIT_WRITE', 'CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'FSETID', 'KILL', 'MKNOD',
                 'NET_BIND_SERVICE', 'NET_RAW', 'SETFCAP', 'SETGID', 'SETPCAP', 'SETUID',
                 'SYS_CHROOT']
$$;

-- What an administrator may allow one deployment: the dangerous options by name, and
-- capabilities outside the safe set as "cap:NAME". True when every one is known.
CREATE FUNCTION berth_permissions_known(permissions text[]) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(bool_and(p IN ('privileged', 'host_network', 'host_pid', 'host_ipc', 'devices',
                                   'docker_socket', 'host_root')
                             OR p ~ '^cap:[A-Z][A-Z0-9_]*$'), true)
    FROM unnest(permissions) p
$$;

CREATE TABLE policy (
    deployment  text PRIMARY KEY
                CONSTRAINT policy_deployment_dns_label
                CHECK (deployment ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
    allow       text[] NOT NULL DEFAULT '{}'
                CONSTRAINT policy_allow_known
                CHECK (array_position(allow, NULL) IS NULL AND berth_permissions_known(allow)),
    reason      text NOT NULL DEFAULT '',
    granted_by  text NOT NULL DEFAULT current_user,
    granted_at  timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE policy IS
    'Dangerous options an administrator allowed a deployment: privileged, host_network, host_pid, host_ipc, devices, docker_socket, host_root (`/` as a bind), cap:NAME. Writable only by the administrator role.';

-- A normalised absolute path: no empty, "." or ".." segment and no trailing "/".
CREATE FUNCTION berth_clean_absolute_path(value text) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT value = '/' OR (value ~ '^(/[^/\x01-\x1f]+)+$'
                           AND value !~ '(^|/)\.\.?(/|$)')
$$;

-- The permission a bind of `source` needs, if any: `/` itself, or the Docker socket, a
-- directory holding it, or any other *.sock of the engine.
CREATE FUNCTION berth_bind_permission(source text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN source = '/' THEN 'host_root'
        WHEN source IN ('/var', '/var/run', '/run', '/var/run/docker.sock', '/run/docker.sock',
                        '/var/run/docker', '/run/docker', '/var/lib/docker')
             OR source LIKE '/var/lib/docker/%' OR source LIKE '%docker.sock'
             OR source LIKE '%/containerd.sock' THEN 'docker_socket'
    END
$$;

-- Bytes from 123, "123", "512Mi", "1Gi", "256M", "64k": null if not such a quantity.
CREATE FUNCTION berth_memory_bytes(value jsonb) RETURNS numeric LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN jsonb_typeof(value) = 'number' AND value::numeric = trunc(value::numeric) THEN value::numeric
        WHEN jsonb_typeof(value) = 'string' AND value #>> '{}' ~ '^[0-9]{1,15}([kKMGT]i?|[kKMGT]?)$' THEN
            (substring(value #>> '{}' from '^[0-9]+'))::numeric *
            CASE substring(value #>> '{}' from '[kKMGT]i?$')
                WHEN 'k' THEN 1000 WHEN 'K' THEN 1000 WHEN 'M' THEN 1000000
                WHEN 'G' THEN 1000000000 WHEN 'T' THEN 1000000000000
                WHEN 'ki' THEN 1024 WHEN 'Ki' THEN 1024 WHEN 'Mi' THEN 1048576
                WHEN 'Gi' THEN 1073741824 WHEN 'Ti' THEN 1099511627776
                ELSE 1 END
    END
$$;

CREATE FUNCTION berth_validate_workload() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    allowed text[];
    key text;
    item jsonb;
    item_index integer;
    memory numeric;
    seen text[] := '{}';
    needed text;
    capability text;
BEGIN
    SELECT p.allow INTO allowed FROM policy p WHERE p.deployment = NEW.name;
    allowed := coalesce(allowed, '{}');
    NEW.cap_add := coalesce(NEW.cap_add, '[]'::jsonb);
    NEW.cap_drop := coalesce(NEW.cap_drop, '[]'::jsonb);
    NEW.devices := coalesce(NEW.devices, '[]'::jsonb);
    NEW.read_only := coalesce(NEW.read_only, false);
    NEW.init := coalesce(NEW.init, false);
    NEW.privileged := coalesce(NEW.privileged, false);

    -- resources (a null field is an absent one: clients that write every field send them)
    NEW.resources := jsonb_strip_nulls(coalesce(NEW.resources, '{}'::jsonb));
    IF jsonb_typeof(NEW.resources) <> 'object' THEN
        PERFORM berth_refuse('resources', format('must be an object {"memory", "cpus", "pids"}, got %s', jsonb_typeof(NEW.resources)));
    END IF;
    FOR key IN SELECT jsonb_object_keys(NEW.resources) LOOP
        IF key NOT IN ('memory', 'cpus', 'pids') THEN
            PERFORM berth_refuse(format('resources.%s', key), 'is not a known field (memory, cpus, pids)');
        END IF;
    END LOOP;
    IF NEW.resources ? 'memory' THEN
        memory := berth_memory_bytes(NEW.resources -> 'memory');
        IF memory IS NULL OR memory < 6291456 OR memory > 1099511627776 THEN
            PERFORM berth_refuse('resources.memory', format(
                'must be bytes or a quantity like "512Mi", "1Gi", "256M", from 6Mi to 1Ti, got %s', NEW.resources -> 'memory'));
        END IF;
    END IF;
    IF NEW.resources ? 'cpus' AND NOT (jsonb_typeof(NEW.resources -> 'cpus') = 'number'
                                       AND (NEW.resources ->> 'cpus')::numeric BETWEEN 0.01 AND 1024) THEN
        PERFORM berth_refuse('resources.cpus', format('must be a number of CPUs from 0.01 to 1024, got %s', NEW.resources -> 'cpus'));
    END IF;
    IF NEW.resources ? 'pids' AND NOT berth_json_int_between(NEW.resources -> 'pids', 1, 4194304) THEN
        PERFORM berth_refuse('resources.pids', format('must be an integer from 1 to 4194304, got %s', NEW.resources -> 'pids'));
    END IF;

    -- volumes
    NEW.volumes := jsonb_strip_nulls(coalesce(NEW.volumes, '[]'::jsonb));
    IF jsonb_typeof(NEW.volumes) <> 'array' THEN
        PERFORM berth_refuse('volumes', format('must be a JSON array, got %s', jsonb_typeof(NEW.volumes)));
    END IF;
    item_index := 0;
    FOR item IN SELECT v.value FROM jsonb_array_elements(NEW.volumes) v LOOP
        IF jsonb_typeof(item) <> 'object' THEN
            PERFORM berth_refuse(format('volumes[%s]', item_index),
                'must be an object {"name" or "source", "target", "read_only", "retain"}');
        END IF;
        FOR key IN SELECT jsonb_object_keys(item) LOOP
            IF key NOT IN ('name', 'source', 'target', 'read_only', 'retain') THEN
                PERFORM berth_refuse(format('volumes[%s].%s', item_index, key),
                    'is not a known field (name, source, target, read_only, retain)');
            END IF;
        END LOOP;
        IF (item ? 'name') = (item ? 'source') THEN
            PERFORM berth_refuse(format('volumes[%s]', item_index),
                'set exactly one of "name" (a named volume) and "source" (a host path to bind)');
        END IF;
        IF item ? 'name' AND NOT (jsonb_typeof(item -> 'name') = 'string'
                                 AND item ->> 'name' ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$') THEN
            PERFORM berth_refuse(format('volumes[%s].name', item_index),
                format('must be a lowercase DNS label (a-z, 0-9, ''-''), got %s', item -> 'name'));
        END IF;
        IF item ? 'source' THEN
            IF jsonb_typeof(item -> 'source') <> 'string' OR NOT berth_clean_absolute_path(item ->> 'source') THEN
                PERFORM berth_refuse(format('volumes[%s].source', item_index),
                    format('must be an absolute host path without "..", "." or empty segments, got %s', item -> 'source'));
            END IF;
            needed := berth_bind_permission(item ->> 'source');
            IF needed IS NOT NULL AND NOT needed = ANY (allowed) THEN
                PERFORM berth_refuse(format('volumes[%s].source', item_index), format(
                    '%s would give the container the host (%s): refused unless an administrator allows "%s" for this deployment in policy',
                    item ->> 'source', CASE needed WHEN 'host_root' THEN 'its whole file system' ELSE 'its Docker engine' END, needed));
            END IF;
            IF item ? 'retain' THEN
                PERFORM berth_refuse(format('volumes[%s].retain', item_index), 'applies to named volumes only');
            END IF;
        END IF;
        IF jsonb_typeof(item -> 'target') IS DISTINCT FROM 'string' OR item ->> 'target' = '/'
           OR NOT berth_clean_absolute_path(item ->> 'target') THEN
            PERFORM berth_refuse(format('volumes[%s].target', item_index),
                format('must be an absolute path in the container, not "/", without ".." segments, got %s', coalesce((item -> 'target')::text, 'nothing')));
        END IF;
        IF item ->> 'target' = ANY (seen) THEN
            PERFORM berth_refuse(format('volumes[%s].target', item_index), format('%s is mounted twice', item ->> 'target'));
        END IF;
        seen := seen || (item ->> 'target');
        FOREACH key IN ARRAY ARRAY['read_only', 'retain'] LOOP
            IF item ? key AND jsonb_typeof(item -> key) <> 'boolean' THEN
                PERFORM berth_refuse(format('volumes[%s].%s', item_index, key), format('must be true or false, got %s', item -> key));
            END IF;
        END LOOP;
        item_index := item_index + 1;
    END LOOP;

    -- networks
    NEW.networks := coalesce(NEW.networks, '[]'::jsonb);
    IF jsonb_typeof(NEW.networks) <> 'array' THEN
        PERFORM berth_refuse('networks', format('must be a JSON array of network names, got %s', jsonb_typeof(NEW.networks)));
    END IF;
    seen := '{}';
    item_index := 0;
    FOR item IN SELECT n.value FROM jsonb_array_elements(NEW.networks) n LOOP
        IF jsonb_typeof(item) <> 'string' OR item #>> '{}' !~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$' THEN
            PERFORM berth_refuse(format('networks[%s]', item_index), format('must be a lowercase DNS label (a-z, 0-9, ''-''), got %s', item));
        END IF;
        IF item #>> '{}' = ANY (seen) THEN
            PERFORM berth_refuse(format('networks[%s]', item_index), format('%s is listed twice', item));
        END IF;
        seen := seen || (item #>> '{}');
        item_index := item_index + 1;
    END LOOP;
    IF jsonb_array_length(NEW.networks) > 0 AND NEW.network_mode IS NOT NULL THEN
        PERFORM berth_refuse('networks', format('cannot be joined with network_mode %s', NEW.network_mode));
    END IF;

    -- process options
    IF NEW.stop_signal IS NOT NULL AND NEW.stop_signal !~ '^(SIG[A-Z0-9+-]{2,12}|[0-9]{1,2})$' THEN
        PERFORM berth_refuse('stop_signal', format('must be a signal like "SIGTERM", "SIGQUIT" or a number, got %L', NEW.stop_signal));
    END IF;
    IF NEW.stop_grace_s IS NOT NULL AND NOT (NEW.stop_grace_s BETWEEN 0 AND 3600) THEN
        PERFORM berth_refuse('stop_grace_s', format('must be a number of seconds from 0 to 3600, got %s', NEW.stop_grace_s));
    END IF;
    IF NEW."user" IS NOT NULL AND NEW."user" !~ '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,31})?$' THEN
        PERFORM berth_refuse('user', format('must be "name", "uid" or "uid:gid", got %L', NEW."user"));
    END IF;
    FOREACH key IN ARRAY ARRAY['cap_add', 'cap_drop'] LOOP
        item := CASE key WHEN 'cap_add' THEN NEW.cap_add ELSE NEW.cap_drop END;
        IF jsonb_typeof(item) <> 'array' THEN
            PERFORM berth_refuse(key, format('must be a JSON array of capability names, got %s', jsonb_typeof(item)));
        END IF;
        item_index := 0;
        FOR capability IN SELECT c.value #>> '{}' FROM jsonb_array_elements(item) c LOOP
            IF capability IS NULL OR capability !~ '^[A-Z][A-Z0-9_]{1,30}$' THEN
                PERFORM berth_refuse(format('%s[%s]', key, item_index),
                    format('must be a capability name like "NET_BIND_SERVICE" (without "CAP_") or "ALL", got %s', item -> item_index));
            END IF;
            IF key = 'cap_add' AND NOT capability = ANY (berth_safe_capabilities())
               AND NOT ('cap:' || capability) = ANY (allowed) THEN
                PERFORM berth_refuse(format('cap_add[%s]', item_index), format(
                    '%s is outside the safe set (Docker''s defaults): refused unless an administrator allows "cap:%s" for this deployment in policy',
                    capability, capability));
            END IF;
            item_index := item_index + 1;
        END LOOP;
    END LOOP;

    -- what only policy allows
    IF NEW.privileged AND NOT 'privileged' = ANY (allowed) THEN
        PERFORM berth_refuse('privileged', 'a privileged container owns the host: refused unless an administrator allows "privileged" for this deployment in policy');
    END IF;
    IF NEW.network_mode IS NOT NULL AND NEW.network_mode NOT IN ('host', 'none') THEN
        PERFORM berth_refuse('network_mode', format('must be null (a bridge), "host" or "none", got %L (use networks to join a network)', NEW.network_mode));
    END IF;
    IF NEW.network_mode = 'host' AND NOT 'host_network' = ANY (allowed) THEN
        PERFORM berth_refuse('network_mode', 'the host''s network is refused unless an administrator allows "host_network" for this deployment in policy');
    END IF;
    IF NEW.network_mode IS NOT NULL AND (jsonb_array_length(NEW.ports) > 0 OR jsonb_array_length(coalesce(NEW.routes, '[]')) > 0) THEN
        PERFORM berth_refuse('ports', format('cannot be published with network_mode %L (the host''s network, or none); leave ports and routes empty', NEW.network_mode));
    END IF;
    IF NEW.pid_mode IS NOT NULL AND NEW.pid_mode <> 'host' THEN
        PERFORM berth_refuse('pid_mode', format('must be null or "host", got %L', NEW.pid_mode));
    END IF;
    IF NEW.pid_mode = 'host' AND NOT 'host_pid' = ANY (allowed) THEN
        PERFORM berth_refuse('pid_mode', 'the host''s PID namespace is refused unless an administrator allows "host_pid" for this deployment in policy');
    END IF;
    IF NEW.ipc_mode IS NOT NULL AND NEW.ipc_mode NOT IN ('host', 'private', 'shareable') THEN
        PERFORM berth_refuse('ipc_mode', format('must be null, "private", "shareable" or "host", got %L', NEW.ipc_mode));
    END IF;
    IF NEW.ipc_mode = 'host' AND NOT 'host_ipc' = ANY (allowed) THEN
        PERFORM berth_refuse('ipc_mode', 'the host''s IPC namespace is refused unless an administrator allows "host_ipc" for this deployment in policy');
    END IF;
    IF jsonb_typeof(NEW.devices) <> 'array' THEN
        PERFORM berth_refuse('devices', format('must be a JSON array of host device paths, got %s', jsonb_typeof(NEW.devices)));
    END IF;
    item_index := 0;
    FOR item IN SELECT d.value FROM jsonb_array_elements(NEW.devices) d LOOP
        IF jsonb_typeof(item) <> 'string' OR item #>> '{}' !~ '^/dev/[A-Za-z0-9_./-]+$' OR item #>> '{}' ~ '(^|/)\.\.(/|$)' THEN
            PERFORM berth_refuse(format('devices[%s]', item_index), format('must be a path under /dev, got %s', item));
        END IF;
        IF NOT 'devices' = ANY (allowed) THEN
            PERFORM berth_refuse(format('devices[%s]', item_index), 'host devices are refused unless an administrator allows "devices" for this deployment in policy');
        END IF;
        item_index := item_index + 1;
    END LOOP;
    RETURN NEW;
END
$$;

-- After the shape checks of berth_10_validate (ports and routes are arrays by then).
CREATE TRIGGER berth_11_validate_workload BEFORE INSERT OR UPDATE ON deployments
    FOR EACH ROW EXECUTE FUNCTION berth_validate_workload();

-- A permission cannot be taken away while a deployment uses it: change the deployment first.
CREATE FUNCTION berth_policy_in_use() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    kept text[] := CASE WHEN TG_OP = 'DELETE' THEN '{}' ELSE NEW.allow END;
    used text;
BEGIN
    SELECT u.permission INTO used
    FROM deployments d, LATERAL (
        SELECT 'privileged' AS permission WHERE d.privileged
        UNION ALL SELECT 'host_network' WHERE d.network_mode = 'host'
        UNION ALL SELECT 'host_pid' WHERE d.pid_mode = 'host'
        UNION ALL SELECT 'host_ipc' WHERE d.ipc_mode = 'host'
        UNION ALL SELECT 'devices' WHERE jsonb_array_length(d.devices) > 0
        UNION ALL SELECT berth_bind_permission(v ->> 'source') FROM jsonb_array_elements(d.volumes) v
        UNION ALL SELECT 'cap:' || (c #>> '{}') FROM jsonb_array_elements(d.cap_add) c
                  WHERE NOT (c #>> '{}') = ANY (berth_safe_capabilities())
    ) u
    WHERE d.name = OLD.deployment AND u.permission IS NOT NULL AND NOT u.permission = ANY (kept)
    LIMIT 1;
    IF used IS NOT NULL THEN
        RAISE EXCEPTION 'policy.allow: deployment % still uses "%"; change the deployment first', OLD.deployment, used
            USING ERRCODE = 'check_violation', COLUMN = 'allow';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$;

CREATE TRIGGER berth_10_in_use BEFORE UPDATE OR DELETE ON policy
    FOR EACH ROW EXECUTE FUNCTION berth_policy_in_use();

-- The API's fields with their JSON types: version 10's, plus those above.
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
