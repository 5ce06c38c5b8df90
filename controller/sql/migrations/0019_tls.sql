-- Berth schema, version 19: HTTPS routes. A route may ask for TLS (`"tls": {"issuer":
-- "acme"}`): the leader obtains a certificate for its host through ACME, keeps it here,
-- renews it before it expires (or when `renew_requested_at` is set) and hands it to the
-- proxy at run time. The private keys are readable only by Berth's own role; operators and
-- viewers read `certificate_status`.

CREATE OR REPLACE FUNCTION berth_validate_routes() RETURNS trigger LANGUAGE plpgsql AS $$
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
            IF key NOT IN ('host', 'port', 'path_prefix', 'tls') THEN
                PERFORM berth_refuse(format('routes[%s].%s', route_index, key), 'is not a known field (host, port, path_prefix, tls)');
            END IF;
        END LOOP;
        IF route ? 'tls' AND jsonb_typeof(route -> 'tls') <> 'null' THEN
            IF jsonb_typeof(route -> 'tls') <> 'object' THEN
                PERFORM berth_refuse(format('routes[%s].tls', route_index),
                    format('must be an object {"issuer": "acme", "redirect_http": true}, got %s', route -> 'tls'));
            END IF;
            FOR key IN SELECT jsonb_object_keys(route -> 'tls') LOOP
                IF key NOT IN ('issuer', 'redirect_http') THEN
                    PERFORM berth_refuse(format('routes[%s].tls.%s', route_index, key), 'is not a known field (issuer, redirect_http)');
                END IF;
            END LOOP;
            IF route -> 'tls' ? 'issuer' AND (route -> 'tls' -> 'issuer') IS DISTINCT FROM '"acme"'::jsonb THEN
                PERFORM berth_refuse(format('routes[%s].tls.issuer', route_index),
                    format('must be "acme" (a certificate obtained and renewed through ACME), got %s', route -> 'tls' -> 'issuer'));
            END IF;
            IF route -> 'tls' ? 'redirect_http' AND jsonb_typeof(route -> 'tls' -> 'redirect_http') <> 'boolean' THEN
                PERFORM berth_refuse(format('routes[%s].tls.redirect_http', route_index),
                    format('must be true or false, got %s', route -> 'tls' -> 'redirect_http'));
            END IF;
        END IF;
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

CREATE TABLE certificates (
    host                text PRIMARY KEY,
    issuer              text NOT NULL CONSTRAINT certificates_issuer CHECK (issuer IN ('acme')),
    certificate_pem     text,
    private_key_pem     text,
    serial              text,
    not_before          timestamptz,
    not_after           timestamptz,
    renew_requested_at  timestamptz,
    attempts            integer NOT NULL DEFAULT 0,
    last_attempt_at     timestamptz,
    last_error          text,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE certificates IS
    'The certificate of each host a route serves over HTTPS, kept by the leader. Set renew_requested_at = now() to renew one at once. Keys readable only by Berth''s role.';

CREATE TABLE acme_accounts (
    directory_url    text PRIMARY KEY,
    account_key_pem  text NOT NULL,
    account_uri      text,
    created_at       timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE acme_accounts IS 'Berth''s ACME account at each directory (its key is a secret).';

CREATE VIEW certificate_status AS
    SELECT host, issuer, serial, not_before, not_after,
           not_before + (not_after - not_before) * 2 / 3 AS renew_after,
           renew_requested_at, attempts, last_attempt_at, last_error, updated_at
    FROM certificates;
COMMENT ON VIEW certificate_status IS 'Certificates without their keys: what operators read.';

INSERT INTO berth_readable VALUES ('certificate_status');
SELECT berth_grant_roles();

-- The operator may ask for a renewal (`berth cert renew HOST`), reading only the host.
DO $$
DECLARE
    operator_role name := (SELECT role FROM berth_roles WHERE kind = 'operator');
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = operator_role) THEN
        EXECUTE format('GRANT SELECT (host), UPDATE (renew_requested_at, attempts) ON certificates TO %I', operator_role);
    END IF;
END
$$;
