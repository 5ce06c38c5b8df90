-- Berth schema, version 13: secrets. An operator writes a secret's value once in `secrets`;
-- a deployment's env names it (`{"API_KEY": {"secret": "stripe-key"}}`) and never holds the
-- value, so nothing that shows a spec (events, `berth describe`, the API, the stream) can
-- show it. The daemon reads values only when it creates a container. Each row keeps the
-- versions of the secrets it references (`deployments.secret_versions`, owned by the
-- database): a new value changes that column, so the generation of every deployment that
-- uses the secret moves and they roll out like any spec change.

CREATE TABLE secrets (
    name        text PRIMARY KEY
                CONSTRAINT secrets_name_pattern
                CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
    value       text NOT NULL
                CONSTRAINT secrets_value_size CHECK (octet_length(value) <= 32768),
    version     bigint NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE secrets IS
    'Secret values that deployments reference from env as {"secret": name}. Written by operators; values readable only by Berth''s own role. `version` counts value changes.';

-- The names of the secrets an env references.
CREATE FUNCTION berth_secret_refs(env jsonb) RETURNS SETOF text LANGUAGE sql IMMUTABLE AS $$
    SELECT e.value ->> 'secret' FROM jsonb_each(CASE WHEN jsonb_typeof(env) = 'object' THEN env ELSE '{}' END) e
    WHERE jsonb_typeof(e.value) = 'object'
$$;

-- The current version of each secret an env references.
CREATE FUNCTION berth_secret_versions(env jsonb) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_object_agg(s.name, s.version), '{}'::jsonb)
    FROM secrets s WHERE s.name IN (SELECT berth_secret_refs(env))
$$;

-- Owned by the database, like `generation`: recomputed on every write of the row, so a
-- value written by hand is replaced. berth_spec_of counts it as spec (every column but the
-- bookkeeping does): a new version moves the generation, and the daemon reads it with the
-- row into the spec hash.
ALTER TABLE deployments ADD COLUMN secret_versions jsonb NOT NULL DEFAULT '{}'::jsonb;
COMMENT ON COLUMN deployments.secret_versions IS
    'The version of each secret env references, e.g. {"stripe-key": 3}; kept by the database, never set by hand.';

CREATE FUNCTION berth_stamp_secret_versions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.secret_versions := berth_secret_versions(NEW.env);
    RETURN NEW;
END
$$;

-- After the checks of env (10), before the generation (20).
CREATE TRIGGER berth_18_secret_versions BEFORE INSERT OR UPDATE ON deployments
    FOR EACH ROW EXECUTE FUNCTION berth_stamp_secret_versions();

-- env (and labels) as version 1 checked them, except that an env value may also be a
-- reference to an existing secret: exactly {"secret": "<name>"}.
CREATE OR REPLACE FUNCTION berth_check_string_map(map_value jsonb, field text) RETURNS void
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
        IF field = 'env' AND jsonb_typeof(entry.value) = 'object' THEN
            IF (SELECT array_agg(k) FROM jsonb_object_keys(entry.value) k) IS DISTINCT FROM ARRAY['secret']
               OR jsonb_typeof(entry.value -> 'secret') <> 'string' THEN
                PERFORM berth_refuse(format('env.%s', entry.key),
                    'must be a string or a secret reference {"secret": "<name>"}');
            END IF;
            IF NOT EXISTS (SELECT 1 FROM secrets s WHERE s.name = entry.value ->> 'secret') THEN
                PERFORM berth_refuse(format('env.%s', entry.key),
                    format('secret %L does not exist (INSERT INTO secrets (name, value) first)', entry.value ->> 'secret'));
            END IF;
            CONTINUE;
        END IF;
        IF jsonb_typeof(entry.value) <> 'string' THEN
            PERFORM berth_refuse(format('%s.%s', field, entry.key),
                format('must be a string%s, got %s', CASE WHEN field = 'env' THEN ' or {"secret": "<name>"}' ELSE '' END,
                       jsonb_typeof(entry.value)));
        END IF;
    END LOOP;
END
$$;

-- A changed value: the next version.
CREATE FUNCTION berth_secret_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.version := 1;
        NEW.created_at := now();
        NEW.updated_at := now();
        RETURN NEW;
    END IF;
    NEW.created_at := OLD.created_at;
    IF NEW.name <> OLD.name THEN
        RAISE EXCEPTION 'secrets.name: cannot be renamed; insert a new secret and point env at it'
            USING ERRCODE = 'check_violation', COLUMN = 'name';
    END IF;
    IF NEW.value IS DISTINCT FROM OLD.value THEN
        NEW.version := OLD.version + 1;
        NEW.updated_at := now();
    ELSE
        NEW.version := OLD.version;
        NEW.updated_at := OLD.updated_at;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER berth_10_version BEFORE INSERT OR UPDATE ON secrets
    FOR EACH ROW EXECUTE FUNCTION berth_secret_changed();

-- ... and every deployment using it restamped: its secret_versions, then its generation,
-- move (berth_18_secret_versions and berth_20_generation do it).
CREATE FUNCTION berth_secret_rollout() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.version <> OLD.version THEN
        UPDATE deployments d SET secret_versions = '{}'::jsonb
        WHERE NEW.name IN (SELECT berth_secret_refs(d.env));
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER berth_20_rollout AFTER UPDATE ON secrets
    FOR EACH ROW EXECUTE FUNCTION berth_secret_rollout();

CREATE FUNCTION berth_secret_in_use() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    user_name text;
BEGIN
    SELECT d.name INTO user_name FROM deployments d
    WHERE OLD.name IN (SELECT berth_secret_refs(d.env)) ORDER BY d.name LIMIT 1;
    IF user_name IS NOT NULL THEN
        RAISE EXCEPTION 'secrets.name: secret % is used by deployment %; remove the reference first', OLD.name, user_name
            USING ERRCODE = 'foreign_key_violation', COLUMN = 'name';
    END IF;
    RETURN OLD;
END
$$;

CREATE TRIGGER berth_10_in_use BEFORE DELETE ON secrets
    FOR EACH ROW EXECUTE FUNCTION berth_secret_in_use();
