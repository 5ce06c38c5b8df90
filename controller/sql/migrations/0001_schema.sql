-- Berth schema, version 1: desired state (deployments), observed state
-- (deployment_status, deployment_events) and a view joining them.
-- Applied by `berth migrate` and at daemon start, under an advisory lock.

CREATE TABLE deployments (
    name        text PRIMARY KEY
                CONSTRAINT deployments_name_dns_label
                CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
    image       text NOT NULL CONSTRAINT deployments_image_no_whitespace CHECK (image ~ '^\S+$'),
    command     text[],
    env         jsonb NOT NULL DEFAULT '{}'::jsonb,
    ports       jsonb NOT NULL DEFAULT '[]'::jsonb,
    replicas    integer NOT NULL DEFAULT 1
                CONSTRAINT deployments_replicas_range CHECK (replicas BETWEEN 0 AND 1000),
    healthcheck jsonb,
    labels      jsonb NOT NULL DEFAULT '{}'::jsonb,
    generation  bigint NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE deployments IS
    'Desired state, written by operators. Berth converges Docker containers to it.';
COMMENT ON COLUMN deployments.generation IS
    'Bumped by the database on every change of the spec; never set by hand.';

-- True when `value` is a JSON integer within [low, high].
CREATE FUNCTION berth_json_int_between(value jsonb, low numeric, high numeric)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_typeof(value) = 'number'
       AND value::numeric = trunc(value::numeric)
       AND value::numeric BETWEEN low AND high
$$;

-- Raise a check_violation naming the field, e.g. "deployments.ports[0].container: ...".
CREATE FUNCTION berth_refuse(field text, problem text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'deployments.%: %', field, problem
        USING ERRCODE = 'check_violation', COLUMN = split_part(split_part(field, '.', 1), '[', 1);
END
$$;

CREATE FUNCTION berth_check_string_map(map_value jsonb, field text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    entry record;
BEGIN
    IF jsonb_typeof(map_value) <> 'object' THEN
        PERFORM berth_refuse(field, format('must be a JSON object of string to string, got %s', jsonb_typeof(map_value)));
    END IF;
    FOR entry IN SELECT e.key, e.value FROM jsonb_each(map_value) AS e LOOP
        IF entry.key = '' THEN
            PERFORM berth_refuse(field, 'keys must not be empty');
        END IF;
        IF jsonb_typeof(entry.value) <> 'string' THEN
            PERFORM berth_refuse(format('%s.%s', field, entry.key),
                format('must be a string, got %s', jsonb_typeof(entry.value)));
        END IF;
    END LOOP;
END
$$;

CREATE FUNCTION berth_validate_deployment() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    port jsonb;
    port_index integer := 0;
    key text;
    seen text[] := '{}';
    port_id text;
    check_test jsonb;
BEGIN
    IF NEW.name IS NULL OR NEW.name !~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$' THEN
        PERFORM berth_refuse('name', format(
            'must be a lowercase DNS label (a-z, 0-9, ''-''; 1-63 characters; no leading or trailing ''-''), got %L',
            NEW.name));
    END IF;
    IF NEW.image IS NULL OR NEW.image !~ '^\S+$' THEN
        PERFORM berth_refuse('image', 'is required and must not contain whitespace');
    END IF;
    IF NEW.replicas IS NULL OR NEW.replicas NOT BETWEEN 0 AND 1000 THEN
        PERFORM berth_refuse('replicas', format('must be between 0 and 1000, got %s', coalesce(NEW.replicas::text, 'null')));
    END IF;
    IF NEW.command IS NOT NULL THEN
        IF cardinality(NEW.command) = 0 THEN
            PERFORM berth_refuse('command', 'must be null (the image''s default) or a non-empty array');
        END IF;
        IF array_position(NEW.command, NULL) IS NOT NULL THEN
            PERFORM berth_refuse(format('command[%s]', array_position(NEW.command, NULL) - 1), 'must not be null');
        END IF;
    END IF;

    NEW.env := coalesce(NEW.env, '{}'::jsonb);
    NEW.labels := coalesce(NEW.labels, '{}'::jsonb);
    NEW.ports := coalesce(NEW.ports, '[]'::jsonb);
    PERFORM berth_check_string_map(NEW.env, 'env');
    PERFORM berth_check_string_map(NEW.labels, 'labels');
    FOR key IN SELECT jsonb_object_keys(NEW.labels) LOOP
        IF key LIKE 'io.berth.%' THEN
            PERFORM berth_refuse(format('labels.%s', key), 'the prefix "io.berth." is reserved for Berth');
        END IF;
    END LOOP;

    IF jsonb_typeof(NEW.ports) <> 'array' THEN
        PERFORM berth_refuse('ports', format('must be a JSON array, got %s', jsonb_typeof(NEW.ports)));
    END IF;
    FOR port IN SELECT p.value FROM jsonb_array_elements(NEW.ports) AS p LOOP
        IF jsonb_typeof(port) <> 'object' THEN
            PERFORM berth_refuse(format('ports[%s]', port_index), 'must be an object {"container": int, "host": int|null, "protocol": "tcp"|"udp"}');
        END IF;
        FOR key IN SELECT jsonb_object_keys(port) LOOP
            IF key NOT IN ('container', 'host', 'protocol') THEN
                PERFORM berth_refuse(format('ports[%s].%s', port_index, key), 'is not a known field (container, host, protocol)');
            END IF;
        END LOOP;
        IF NOT coalesce(berth_json_int_between(port -> 'container', 1, 65535), false) THEN
            PERFORM berth_refuse(format('ports[%s].container', port_index),
                format('must be an integer from 1 to 65535, got %s', coalesce((port -> 'container')::text, 'nothing')));
        END IF;
        IF port ? 'host' AND jsonb_typeof(port -> 'host') <> 'null'
           AND NOT berth_json_int_between(port -> 'host', 1, 65535) THEN
            PERFORM berth_refuse(format('ports[%s].host', port_index),
                format('must be null or an integer from 1 to 65535, got %s', port -> 'host'));
        END IF;
        IF port ? 'protocol' AND coalesce(port ->> 'protocol', '') NOT IN ('tcp', 'udp') THEN
            PERFORM berth_refuse(format('ports[%s].protocol', port_index),
                format('must be "tcp" or "udp", got %s', port -> 'protocol'));
        END IF;
        port_id := (port ->> 'container') || '/' || coalesce(port ->> 'protocol', 'tcp');
        IF port_id = ANY (seen) THEN
            PERFORM berth_refuse(format('ports[%s]', port_index), format('publishes %s twice', port_id));
        END IF;
        seen := seen || port_id;
        IF jsonb_typeof(port -> 'host') = 'number' AND NEW.replicas > 1 THEN
            PERFORM berth_refuse(format('ports[%s].host', port_index),
                'a fixed host port can serve only one replica (set host to null or replicas <= 1)');
        END IF;
        port_index := port_index + 1;
    END LOOP;

    IF NEW.healthcheck IS NOT NULL AND jsonb_typeof(NEW.healthcheck) = 'null' THEN
        NEW.healthcheck := NULL;
    END IF;
    IF NEW.healthcheck IS NOT NULL THEN
        IF jsonb_typeof(NEW.healthcheck) <> 'object' THEN
            PERFORM berth_refuse('healthcheck', 'must be null or an object');
        END IF;
        FOR key IN SELECT jsonb_object_keys(NEW.healthcheck) LOOP
            IF key NOT IN ('test', 'interval_s', 'timeout_s', 'retries', 'start_period_s') THEN
                PERFORM berth_refuse(format('healthcheck.%s', key),
                    'is not a known field (test, interval_s, timeout_s, retries, start_period_s)');
            END IF;
        END LOOP;
        check_test := NEW.healthcheck -> 'test';
        IF check_test IS NULL OR jsonb_typeof(check_test) <> 'array' OR jsonb_array_length(check_test) < 2
           OR check_test ->> 0 NOT IN ('CMD', 'CMD-SHELL')
           OR EXISTS (SELECT 1 FROM jsonb_array_elements(check_test) item WHERE jsonb_typeof(item) <> 'string') THEN
            PERFORM berth_refuse('healthcheck.test', 'must be ["CMD", "program", "arg", ...] or ["CMD-SHELL", "shell command"]');
        END IF;
        IF check_test ->> 0 = 'CMD-SHELL' AND jsonb_array_length(check_test) <> 2 THEN
            PERFORM berth_refuse('healthcheck.test', '"CMD-SHELL" takes exactly one shell string');
        END IF;
        FOREACH key IN ARRAY ARRAY['interval_s', 'timeout_s'] LOOP
            IF NEW.healthcheck ? key AND NOT (jsonb_typeof(NEW.healthcheck -> key) = 'number'
                                           AND (NEW.healthcheck ->> key)::numeric > 0) THEN
                PERFORM berth_refuse(format('healthcheck.%s', key), format('must be a number of seconds > 0, got %s', NEW.healthcheck -> key));
            END IF;
        END LOOP;
        IF NEW.healthcheck ? 'start_period_s' AND NOT (jsonb_typeof(NEW.healthcheck -> 'start_period_s') = 'number'
                                                    AND (NEW.healthcheck ->> 'start_period_s')::numeric >= 0) THEN
            PERFORM berth_refuse('healthcheck.start_period_s', format('must be a number of seconds >= 0, got %s', NEW.healthcheck -> 'start_period_s'));
        END IF;
        IF NEW.healthcheck ? 'retries' AND NOT berth_json_int_between(NEW.healthcheck -> 'retries', 1, 1000) THEN
            PERFORM berth_refuse('healthcheck.retries', format('must be an integer from 1 to 1000, got %s', NEW.healthcheck -> 'retries'));
        END IF;
    END IF;
    RETURN NEW;
END
$$;

-- generation: 1 on insert, +1 on every update that changes the spec, never by hand.
CREATE FUNCTION berth_bump_generation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.generation := 1;
        NEW.created_at := now();
        NEW.updated_at := now();
        RETURN NEW;
    END IF;
    NEW.created_at := OLD.created_at;
    IF (NEW.image, NEW.command, NEW.env, NEW.ports, NEW.replicas, NEW.healthcheck, NEW.labels)
       IS DISTINCT FROM
       (OLD.image, OLD.command, OLD.env, OLD.ports, OLD.replicas, OLD.healthcheck, OLD.labels) THEN
        NEW.generation := OLD.generation + 1;
        NEW.updated_at := now();
    ELSE
        NEW.generation := OLD.generation;
        NEW.updated_at := OLD.updated_at;
    END IF;
    RETURN NEW;
END
$$;

-- Wake the daemons: the payload is the deployment's name.
CREATE FUNCTION berth_notify_deployment() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('berth_deployments', coalesce(NEW.name, OLD.name));
    IF TG_OP = 'UPDATE' AND NEW.name <> OLD.name THEN
        PERFORM pg_notify('berth_deployments', OLD.name);
    END IF;
    RETURN NULL;
END
$$;

-- Triggers fire in name order: validate first, then stamp the generation.
CREATE TRIGGER berth_10_validate BEFORE INSERT OR UPDATE ON deployments
    FOR EACH ROW EXECUTE FUNCTION berth_validate_deployment();
CREATE TRIGGER berth_20_generation BEFORE INSERT OR UPDATE ON deployments
    FOR EACH ROW EXECUTE FUNCTION berth_bump_generation();
CREATE TRIGGER berth_30_notify AFTER INSERT OR UPDATE OR DELETE ON deployments
    FOR EACH ROW EXECUTE FUNCTION berth_notify_deployment();

CREATE TABLE deployment_status (
    name                text PRIMARY KEY,
    phase               text NOT NULL DEFAULT 'queued'
                        CONSTRAINT deployment_status_phase_known CHECK (phase IN (
                            'queued', 'pulling_image', 'creating', 'starting',
                            'health_check', 'active', 'failed', 'deleting')),
    phase_progress      smallint NOT NULL DEFAULT 0
                        CONSTRAINT deployment_status_progress_percent CHECK (phase_progress BETWEEN 0 AND 100),
    phase_metadata      jsonb NOT NULL DEFAULT '{}'::jsonb,
    phase_updated_at    timestamptz NOT NULL DEFAULT now(),
    observed_generation bigint NOT NULL DEFAULT 0,
    desired_replicas    integer NOT NULL DEFAULT 0,
    ready_replicas      integer NOT NULL DEFAULT 0,
    message             text NOT NULL DEFAULT '',
    failure_kind        text CONSTRAINT deployment_status_failure_kind CHECK (failure_kind IN ('transient', 'permanent')),
    attempts            integer NOT NULL DEFAULT 0,
    next_attempt_at     timestamptz,
    last_converged_at   timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE deployment_status IS
    'Observed state, written by Berth only. Converged: observed_generation = generation AND phase = active.';

CREATE TABLE deployment_events (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    deployment  text NOT NULL,
    generation  bigint,
    kind        text NOT NULL CONSTRAINT deployment_events_kind_known CHECK (kind IN ('phase', 'action', 'error', 'note')),
    level       text NOT NULL CONSTRAINT deployment_events_level_known CHECK (level IN ('info', 'warning', 'error')),
    phase_from  text,
    phase_to    text,
    action      text,
    message     text NOT NULL,
    metadata    jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX deployment_events_by_deployment ON deployment_events (deployment, id DESC);

COMMENT ON TABLE deployment_events IS
    'Append-only history of everything Berth did and why. Rows may be deleted for retention, never changed.';

CREATE FUNCTION berth_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'deployment_events is append-only' USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER berth_append_only BEFORE UPDATE ON deployment_events
    FOR EACH ROW EXECUTE FUNCTION berth_events_append_only();

CREATE VIEW deployment_overview AS
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
       d.updated_at                                          AS spec_updated_at
FROM deployments d
FULL JOIN deployment_status s ON s.name = d.name;
