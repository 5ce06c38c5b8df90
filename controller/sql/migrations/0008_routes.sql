-- Berth schema, version 8: routes and rollouts. A deployment may ask for HTTP routes:
-- requests for a host (and path prefix) through Berth's reverse proxy go to its ready
-- replicas on a container port. Berth programs the proxy (Caddy, through its admin API)
-- from these rows. `rollout` says how a new revision replaces the old one.

ALTER TABLE deployments
    ADD COLUMN routes jsonb NOT NULL DEFAULT '[]'::jsonb,
    ADD COLUMN rollout jsonb NOT NULL DEFAULT '{}'::jsonb;

COMMENT ON COLUMN deployments.rollout IS
    'How a new revision replaces the old: {"strategy": "start-first"|"stop-first", "max_surge": 1, "max_unavailable": 0, "progress_deadline_s": 120, "auto_rollback": true, "drain_s": 1}. Not part of the spec''s generation.';

COMMENT ON COLUMN deployments.routes IS
    'HTTP routes through Berth''s proxy: [{"host": "app.example.test", "port": 8080, "path_prefix": "/"}]. A host and prefix belong to one deployment.';

-- Every row's routes as (host, path_prefix): the uniqueness check reads it.
CREATE FUNCTION berth_route_keys(routes jsonb) RETURNS TABLE (host text, path_prefix text)
LANGUAGE sql IMMUTABLE AS $$
    SELECT lower(r ->> 'host'), coalesce(r ->> 'path_prefix', '/')
    FROM jsonb_array_elements(CASE WHEN jsonb_typeof(routes) = 'array' THEN routes ELSE '[]' END) r
$$;

CREATE FUNCTION berth_validate_routes() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    route jsonb;
    route_index integer := 0;
    key text;
    owner text;
    seen text[] := '{}';
BEGIN
    NEW.routes := coalesce(NEW.routes, '[]'::jsonb);
    IF jsonb_typeof(NEW.routes) <> 'array' THEN
        PERFORM berth_refuse('routes', format('must be a JSON array, got %s', jsonb_typeof(NEW.routes)));
    END IF;
    FOR route IN SELECT r.value FROM jsonb_array_elements(NEW.routes) AS r LOOP
        IF jsonb_typeof(route) <> 'object' THEN
            PERFORM berth_refuse(format('routes[%s]', route_index), 'must be an object {"host": "...", "port": int, "path_prefix": "/..."}');
        END IF;
        FOR key IN SELECT jsonb_object_keys(route) LOOP
            IF key NOT IN ('host', 'port', 'path_prefix') THEN
                PERFORM berth_refuse(format('routes[%s].%s', route_index, key), 'is not a known field (host, port, path_prefix)');
            END IF;
        END LOOP;
        IF jsonb_typeof(route -> 'host') IS DISTINCT FROM 'string'
           OR route ->> 'host' !~ '^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'
           OR length(route ->> 'host') > 253 THEN
            PERFORM berth_refuse(format('routes[%s].host', route_index),
                format('must be a lowercase DNS name such as "app.example.test", got %s', coalesce((route -> 'host')::text, 'nothing')));
        END IF;
        IF NOT coalesce(berth_json_int_between(route -> 'port', 1, 65535), false) THEN
            PERFORM berth_refuse(format('routes[%s].port', route_index),
                format('must be the container port, an integer from 1 to 65535, got %s', coalesce((route -> 'port')::text, 'nothing')));
        END IF;
        IF route ? 'path_prefix' AND (jsonb_typeof(route -> 'path_prefix') <> 'string'
                                      OR route ->> 'path_prefix' !~ '^/[A-Za-z0-9._~/-]*$') THEN
            PERFORM berth_refuse(format('routes[%s].path_prefix', route_index),
                format('must start with "/" and contain only letters, digits and . _ ~ / -, got %s', route -> 'path_prefix'));
        END IF;
        key := (route ->> 'host') || coalesce(route ->> 'path_prefix', '/');
        IF key = ANY (seen) THEN
            PERFORM berth_refuse(format('routes[%s]', route_index), format('routes %s twice', key));
        END IF;
        seen := seen || key;
        route_index := route_index + 1;
    END LOOP;

    -- A host and prefix belong to one deployment. Concurrent writers take turns (the lock
    -- ends with the transaction), so two INSERTs cannot both take the same route.
    IF jsonb_array_length(NEW.routes) > 0 THEN
        PERFORM pg_advisory_xact_lock(hashtext('berth.routes'));
        route_index := 0;
        FOR route IN SELECT r.value FROM jsonb_array_elements(NEW.routes) AS r LOOP
            SELECT d.name INTO owner
            FROM deployments d, berth_route_keys(d.routes) k
            WHERE d.name <> NEW.name AND k.host = route ->> 'host'
              AND k.path_prefix = coalesce(route ->> 'path_prefix', '/')
            LIMIT 1;
            IF owner IS NOT NULL THEN
                PERFORM berth_refuse(format('routes[%s].host', route_index),
                    format('%s%s is already routed to deployment %s', route ->> 'host',
                           coalesce(route ->> 'path_prefix', '/'), owner));
            END IF;
            route_index := route_index + 1;
        END LOOP;
    END IF;
    RETURN NEW;
END
$$;

CREATE FUNCTION berth_validate_rollout() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    key text;
    rollout jsonb;
    fixed integer;
BEGIN
    NEW.rollout := coalesce(NEW.rollout, '{}'::jsonb);
    rollout := NEW.rollout;
    IF jsonb_typeof(rollout) <> 'object' THEN
        PERFORM berth_refuse('rollout', format('must be an object, got %s', jsonb_typeof(rollout)));
    END IF;
    FOR key IN SELECT jsonb_object_keys(rollout) LOOP
        IF key NOT IN ('strategy', 'max_surge', 'max_unavailable', 'progress_deadline_s', 'auto_rollback', 'drain_s') THEN
            PERFORM berth_refuse(format('rollout.%s', key),
                'is not a known field (strategy, max_surge, max_unavailable, progress_deadline_s, auto_rollback, drain_s)');
        END IF;
    END LOOP;
    IF rollout ? 'strategy' AND coalesce(rollout ->> 'strategy', '') NOT IN ('start-first', 'stop-first') THEN
        PERFORM berth_refuse('rollout.strategy', format('must be "start-first" or "stop-first", got %s', rollout -> 'strategy'));
    END IF;
    FOREACH key IN ARRAY ARRAY['max_surge', 'max_unavailable'] LOOP
        IF rollout ? key AND NOT berth_json_int_between(rollout -> key, 0, 1000) THEN
            PERFORM berth_refuse(format('rollout.%s', key), format('must be an integer from 0 to 1000, got %s', rollout -> key));
        END IF;
    END LOOP;
    IF coalesce(rollout ->> 'strategy', 'start-first') = 'start-first'
       AND coalesce((rollout ->> 'max_surge')::integer, 1) + coalesce((rollout ->> 'max_unavailable')::integer, 0) = 0 THEN
        PERFORM berth_refuse('rollout.max_surge', 'max_surge and max_unavailable cannot both be 0: the rollout could not move');
    END IF;
    IF rollout ? 'progress_deadline_s' AND NOT (jsonb_typeof(rollout -> 'progress_deadline_s') = 'number'
                                                AND (rollout ->> 'progress_deadline_s')::numeric > 0) THEN
        PERFORM berth_refuse('rollout.progress_deadline_s', format('must be a number of seconds > 0, got %s', rollout -> 'progress_deadline_s'));
    END IF;
    IF rollout ? 'drain_s' AND NOT (jsonb_typeof(rollout -> 'drain_s') = 'number'
                                    AND (rollout ->> 'drain_s')::numeric BETWEEN 0 AND 3600) THEN
        PERFORM berth_refuse('rollout.drain_s', format('must be a number of seconds from 0 to 3600, got %s', rollout -> 'drain_s'));
    END IF;
    IF rollout ? 'auto_rollback' AND jsonb_typeof(rollout -> 'auto_rollback') <> 'boolean' THEN
        PERFORM berth_refuse('rollout.auto_rollback', format('must be true or false, got %s', rollout -> 'auto_rollback'));
    END IF;
    SELECT i - 1 INTO fixed FROM jsonb_array_elements(NEW.ports) WITH ORDINALITY AS p(value, i)
    WHERE jsonb_typeof(p.value -> 'host') = 'number' LIMIT 1;
    IF fixed IS NOT NULL AND NOT rollout ? 'strategy' THEN
        -- a fixed host port cannot be held by two revisions: recreate, as before version 8
        NEW.rollout := rollout || '{"strategy": "stop-first"}'::jsonb;
    ELSIF fixed IS NOT NULL AND rollout ->> 'strategy' <> 'stop-first' THEN
        PERFORM berth_refuse('rollout.strategy', format(
            'must be "stop-first" where a fixed host port is published (ports[%s].host): two revisions cannot hold one port', fixed));
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER berth_17_validate_rollout BEFORE INSERT OR UPDATE ON deployments
    FOR EACH ROW EXECUTE FUNCTION berth_validate_rollout();

CREATE TRIGGER berth_16_validate_routes BEFORE INSERT OR UPDATE ON deployments
    FOR EACH ROW EXECUTE FUNCTION berth_validate_routes();

-- (routes count for the generation, rollout does not: berth_spec_of, version 7.)

ALTER TABLE deployment_status DROP CONSTRAINT deployment_status_phase_known;
ALTER TABLE deployment_status ADD CONSTRAINT deployment_status_phase_known CHECK (phase IN (
    'queued', 'pulling_source', 'building', 'pulling_image', 'creating', 'starting',
    'health_check', 'updating_routes', 'active', 'degraded', 'failed', 'rolled_back',
    'deleting'));
