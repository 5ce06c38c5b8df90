-- Berth schema, version 10: the HTTP API, its live stream and webhooks.
-- * api_tokens: bearer tokens (`berth token create`), stored as sha256 hashes only.
-- * One stream sequence orders every change a client can watch: a deployment row, its
--   status, its events, its builds and their log lines each carry `stream_seq`, stamped
--   by the database; a NOTIFY on `berth_stream` wakes the API's readers, and a client
--   that reconnects asks for everything after the last sequence it saw.
-- * webhooks and their outbox, webhook_deliveries: a trigger writes a delivery in the
--   same transaction as the status or build change that causes it.

CREATE TABLE api_tokens (
    id           bigserial PRIMARY KEY,
    name         text NOT NULL
                 CONSTRAINT api_tokens_name_shape CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
    scope        text NOT NULL CONSTRAINT api_tokens_scope_known CHECK (scope IN ('read', 'write')),
    token_hash   text NOT NULL UNIQUE CONSTRAINT api_tokens_hash_hex CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
-- A revoked token keeps its row (when it was used, when revoked); its name may be reused.
CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (name) WHERE revoked_at IS NULL;
COMMENT ON TABLE api_tokens IS
    'Bearer tokens of the HTTP API. Only the sha256 of a token is kept: it is shown once, at `berth token create`.';

-- --- the stream ------------------------------------------------------------------------
CREATE SEQUENCE berth_stream_seq;

ALTER TABLE deployments ADD COLUMN stream_seq bigint NOT NULL DEFAULT nextval('berth_stream_seq');
ALTER TABLE deployment_status ADD COLUMN stream_seq bigint NOT NULL DEFAULT nextval('berth_stream_seq');
ALTER TABLE deployment_events ADD COLUMN stream_seq bigint NOT NULL DEFAULT nextval('berth_stream_seq');
ALTER TABLE builds ADD COLUMN stream_seq bigint NOT NULL DEFAULT nextval('berth_stream_seq');
ALTER TABLE build_logs ADD COLUMN stream_seq bigint NOT NULL DEFAULT nextval('berth_stream_seq');
CREATE INDEX deployments_stream ON deployments (stream_seq);
CREATE INDEX deployment_status_stream ON deployment_status (stream_seq);
CREATE INDEX deployment_events_stream ON deployment_events (stream_seq);
CREATE INDEX builds_stream ON builds (stream_seq);
CREATE INDEX build_logs_stream ON build_logs (stream_seq);

COMMENT ON SEQUENCE berth_stream_seq IS
    'Orders the changes the API streams (GET /api/v1/stream): a client resumes after the last one it saw.';

-- A changed deployment row, and a status or build whose visible fields changed, take the
-- next number (a heartbeat or a timestamp alone does not: the stream stays quiet).
CREATE FUNCTION berth_stream_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.stream_seq := nextval('berth_stream_seq');
    RETURN NEW;
END
$$;

CREATE FUNCTION berth_status_stream_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.phase, NEW.phase_progress, NEW.message, NEW.observed_generation,
        NEW.desired_replicas, NEW.ready_replicas, NEW.failure_kind, NEW.serving_revision,
        NEW.restart_count, NEW.next_attempt_at)
       IS DISTINCT FROM
       (OLD.phase, OLD.phase_progress, OLD.message, OLD.observed_generation,
        OLD.desired_replicas, OLD.ready_replicas, OLD.failure_kind, OLD.serving_revision,
        OLD.restart_count, OLD.next_attempt_at) THEN
        NEW.stream_seq := nextval('berth_stream_seq');
    END IF;
    RETURN NEW;
END
$$;

CREATE FUNCTION berth_build_stream_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.status, NEW.step, NEW.progress, NEW.priority, NEW.cancel_requested_at, NEW.error)
       IS DISTINCT FROM
       (OLD.status, OLD.step, OLD.progress, OLD.priority, OLD.cancel_requested_at, OLD.error) THEN
        NEW.stream_seq := nextval('berth_stream_seq');
    END IF;
    RETURN NEW;
END
$$;

-- One notification per statement (Postgres folds equal payloads of one transaction).
CREATE FUNCTION berth_stream_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('berth_stream', TG_TABLE_NAME);
    RETURN NULL;
END
$$;

CREATE TRIGGER berth_90_stream BEFORE UPDATE ON deployments
    FOR EACH ROW EXECUTE FUNCTION berth_stream_stamp();
CREATE TRIGGER berth_90_stream BEFORE UPDATE ON deployment_status
    FOR EACH ROW EXECUTE FUNCTION berth_status_stream_stamp();
CREATE TRIGGER berth_90_stream BEFORE UPDATE ON builds
    FOR EACH ROW EXECUTE FUNCTION berth_build_stream_stamp();
CREATE TRIGGER berth_91_stream_notify AFTER INSERT OR UPDATE OR DELETE ON deployments
    FOR EACH STATEMENT EXECUTE FUNCTION berth_stream_notify();
CREATE TRIGGER berth_91_stream_notify AFTER INSERT OR UPDATE ON deployment_status
    FOR EACH STATEMENT EXECUTE FUNCTION berth_stream_notify();
CREATE TRIGGER berth_91_stream_notify AFTER INSERT ON deployment_events
    FOR EACH STATEMENT EXECUTE FUNCTION berth_stream_notify();
CREATE TRIGGER berth_91_stream_notify AFTER INSERT OR UPDATE ON builds
    FOR EACH STATEMENT EXECUTE FUNCTION berth_stream_notify();
CREATE TRIGGER berth_91_stream_notify AFTER INSERT ON build_logs
    FOR EACH STATEMENT EXECUTE FUNCTION berth_stream_notify();

-- A deleted deployment leaves an event behind: the history says when, and a client of the
-- stream learns of it (a deleted row cannot be read back).
CREATE FUNCTION berth_record_deletion() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO deployment_events (deployment, generation, kind, level, action, message)
    VALUES (OLD.name, OLD.generation, 'note', 'info', 'deleted',
            format('deployment deleted by %s', current_user));
    RETURN NULL;
END
$$;
CREATE TRIGGER berth_60_record_deletion AFTER DELETE ON deployments
    FOR EACH ROW EXECUTE FUNCTION berth_record_deletion();

-- --- webhooks ----------------------------------------------------------------------------
CREATE TABLE webhooks (
    id         bigserial PRIMARY KEY,
    name       text NOT NULL UNIQUE CONSTRAINT webhooks_name_shape CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
    url        text NOT NULL CONSTRAINT webhooks_url_http CHECK (url ~ '^https?://[^\s]+$'),
    events     jsonb NOT NULL DEFAULT '["active", "failed", "rolled_back", "build.failed"]'::jsonb,
    secret     text NOT NULL DEFAULT '',
    enabled    boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE webhooks IS
    'Where to POST notifications. events: phases ("active", "failed", "rolled_back", "degraded", ...), build outcomes ("build.succeeded", "build.failed", "build.cancelled", "build.dead") or "*". Each POST is signed: X-Berth-Signature: sha256=<hex HMAC-SHA256 of the body with secret>.';

CREATE FUNCTION berth_validate_webhook() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    entry jsonb;
    entry_index integer := 0;
BEGIN
    IF jsonb_typeof(NEW.events) <> 'array' THEN
        RAISE EXCEPTION 'webhooks.events: must be a JSON array of event names, got %', jsonb_typeof(NEW.events)
            USING ERRCODE = 'check_violation', COLUMN = 'events';
    END IF;
    FOR entry IN SELECT e.value FROM jsonb_array_elements(NEW.events) e LOOP
        IF jsonb_typeof(entry) <> 'string' OR NOT (
               entry #>> '{}' = '*'
            OR entry #>> '{}' IN ('queued', 'pulling_source', 'building', 'pulling_image', 'creating',
                                  'starting', 'health_check', 'updating_routes', 'active', 'degraded',
                                  'failed', 'rolled_back', 'deleting')
            OR entry #>> '{}' IN ('build.running', 'build.succeeded', 'build.failed',
                                  'build.cancelled', 'build.dead')) THEN
            RAISE EXCEPTION 'webhooks.events[%]: unknown event %; a phase name, build.<status> or "*"',
                entry_index, entry USING ERRCODE = 'check_violation', COLUMN = 'events';
        END IF;
        entry_index := entry_index + 1;
    END LOOP;
    RETURN NEW;
END
$$;
CREATE TRIGGER berth_10_validate BEFORE INSERT OR UPDATE ON webhooks
    FOR EACH ROW EXECUTE FUNCTION berth_validate_webhook();

CREATE TABLE webhook_deliveries (
    id               bigserial PRIMARY KEY,
    webhook_id       bigint NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event            text NOT NULL,
    deployment       text NOT NULL,
    payload          jsonb NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CONSTRAINT webhook_deliveries_status_known CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts         integer NOT NULL DEFAULT 0,
    last_status_code integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    next_attempt_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    claimed_until    timestamptz,
    delivered_at     timestamptz
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, id DESC);
COMMENT ON TABLE webhook_deliveries IS
    'The webhooks'' outbox and delivery log: written in the transaction of the change that causes it, delivered at least once (X-Berth-Delivery is the id: receivers de-duplicate on it).';

-- Queue one delivery per enabled webhook that asked for `event`.
CREATE FUNCTION berth_queue_deliveries(event text, deployment text, payload jsonb) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO webhook_deliveries (webhook_id, event, deployment, payload)
    SELECT w.id, event, deployment, payload
    FROM webhooks w
    WHERE w.enabled AND (w.events ? event OR w.events ? '*');
$$;

CREATE FUNCTION berth_status_webhooks() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.phase IS DISTINCT FROM OLD.phase THEN
        PERFORM berth_queue_deliveries(NEW.phase, NEW.name, jsonb_build_object(
            'event', NEW.phase,
            'deployment', NEW.name,
            'phase', NEW.phase,
            'previous_phase', CASE WHEN TG_OP = 'UPDATE' THEN OLD.phase END,
            'message', NEW.message,
            'generation', NEW.observed_generation,
            'ready_replicas', NEW.ready_replicas,
            'desired_replicas', NEW.desired_replicas,
            'serving_revision', NEW.serving_revision,
            'at', clock_timestamp()));
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER berth_80_webhooks AFTER INSERT OR UPDATE ON deployment_status
    FOR EACH ROW EXECUTE FUNCTION berth_status_webhooks();

CREATE FUNCTION berth_build_webhooks() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IS DISTINCT FROM OLD.status AND NEW.status <> 'queued' THEN
        PERFORM berth_queue_deliveries('build.' || NEW.status, NEW.deployment, jsonb_build_object(
            'event', 'build.' || NEW.status,
            'deployment', NEW.deployment,
            'build', jsonb_build_object('id', NEW.id, 'status', NEW.status,
                                        'revision', NEW.revision, 'image', NEW.image,
                                        'error', NEW.error, 'attempts', NEW.attempts),
            'generation', NEW.generation,
            'at', clock_timestamp()));
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER berth_80_webhooks AFTER UPDATE ON builds
    FOR EACH ROW EXECUTE FUNCTION berth_build_webhooks();

CREATE FUNCTION berth_webhooks_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('berth_webhooks', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER berth_30_notify AFTER INSERT ON webhook_deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION berth_webhooks_notify();

-- --- writes through the API ----------------------------------------------------------------
-- The API sends a deployment as one JSON object; this checks what a column type cannot say
-- with the field's name (unknown keys, a string where a number goes), drops top-level
-- nulls, and the row's own triggers check the rest.
CREATE FUNCTION berth_checked_spec(spec jsonb) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
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

-- The stream's stamp is bookkeeping, not spec: writing it never bumps the generation.
CREATE OR REPLACE FUNCTION berth_spec_of(row_value jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT row_value - ARRAY['name', 'generation', 'created_at', 'updated_at', 'priority', 'rollout',
                             'stream_seq']
$$;

-- A git URL's credentials, redacted (`https://user:token@host/x` -> `https://***@host/x`, up to
-- the last @ before the path, as `model/source.redact_url` does; a test keeps them equal):
-- the overview is read by every viewer (CLI, API, dashboard); `deployments` keeps the URL.
CREATE FUNCTION berth_public_source(source jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN jsonb_typeof(source -> 'git' -> 'url') = 'string'
             AND source -> 'git' ->> 'url' ~ '^[A-Za-z][A-Za-z0-9+.-]*://[^/]*@'
        THEN jsonb_set(source, '{git,url}', to_jsonb(regexp_replace(
            source -> 'git' ->> 'url', '^([A-Za-z][A-Za-z0-9+.-]*://)[^/]*@', '\1***@')))
        ELSE source
    END
$$;

-- The overview also says where a deployment is reached (the dashboard shows its routes),
-- and never shows a git URL's credentials.
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
       berth_public_source(d.source)                         AS source,
       d.priority,
       s.serving_revision,
       d.routes
FROM deployments d
FULL JOIN deployment_status s ON s.name = d.name;
