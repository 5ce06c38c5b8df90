-- Berth schema, version 19: HTTPS routes. A route may ask for TLS (`"tls": {"issuer":
-- "acme"}`, `"internal"` or `"files"`): the leader obtains a certificate for its host
-- (through ACME, from Berth's own CA, or from the two secrets the route names), keeps it
-- here, renews it before it expires (or when `renew_requested_at` is set) and hands it to
-- the proxy at run time. The private keys are readable only by Berth's own role; operators
-- and viewers read `certificate_status` and the CA's certificate.

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
        IF route ? 'tls' AND jsonb_typeof(route -> 'tls') <> 'null' THEN
            IF jsonb_typeof(route -> 'tls') <> 'object' THEN
                PERFORM berth_refuse(format('routes[%s].tls', route_index),
                    format('must be an object {"issuer": "acme", "redirect_http": true}, got %s', route -> 'tls'));
            END IF;
            FOR key IN SELECT jsonb_object_keys(route -> 'tls') LOOP
                IF key NOT IN ('issuer', 'redirect_http', 'certificate_secret', 'key_secret') THEN
                    PERFORM berth_refuse(format('routes[%s].tls.%s', route_index, key),
                        'is not a known field (issuer, redirect_http, certificate_secret, key_secret)');
                END IF;
            END LOOP;
            IF route -> 'tls' ? 'issuer' AND coalesce(route -> 'tls' ->> 'issuer', '') NOT IN ('acme', 'internal', 'files') THEN
                PERFORM berth_refuse(format('routes[%s].tls.issuer', route_index),
                    format('must be "acme" (obtained and renewed through ACME), "internal" (signed by Berth''s own CA) or "files" (the operator''s, in two secrets), got %s', route -> 'tls' -> 'issuer'));
            END IF;
            IF route -> 'tls' ? 'redirect_http' AND jsonb_typeof(route -> 'tls' -> 'redirect_http') <> 'boolean' THEN
                PERFORM berth_refuse(format('routes[%s].tls.redirect_http', route_index),
                    format('must be true or false, got %s', route -> 'tls' -> 'redirect_http'));
            END IF;
            FOREACH key IN ARRAY ARRAY['certificate_secret', 'key_secret'] LOOP
                IF (route -> 'tls' ->> 'issuer') IS DISTINCT FROM 'files' THEN
                    IF route -> 'tls' ? key THEN
                        PERFORM berth_refuse(format('routes[%s].tls.%s', route_index, key), 'goes with issuer "files" only');
                    END IF;
                ELSIF jsonb_typeof(route -> 'tls' -> key) IS DISTINCT FROM 'string' THEN
                    PERFORM berth_refuse(format('routes[%s].tls.%s', route_index, key),
                        'the name of a secret is needed with issuer "files"');
                ELSIF NOT EXISTS (SELECT 1 FROM secrets s WHERE s.name = route -> 'tls' ->> key) THEN
                    PERFORM berth_refuse(format('routes[%s].tls.%s', route_index, key),
                        format('secret %L does not exist (INSERT INTO secrets (name, value) first)', route -> 'tls' ->> key));
                END IF;
            END LOOP;
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
    issuer              text NOT NULL CONSTRAINT certificates_issuer CHECK (issuer IN ('acme', 'internal', 'files')),
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

CREATE TABLE certificate_authorities (
    name             text PRIMARY KEY,
    certificate_pem  text NOT NULL,
    private_key_pem  text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE certificate_authorities IS
    'Berth''s own CA for `tls` routes with issuer internal (made once by the leader). Trust its certificate: `berth cert ca`.';

CREATE VIEW certificate_status AS
    SELECT host, issuer, serial, not_before, not_after,
           not_before + (not_after - not_before) * 2 / 3 AS renew_after,
           renew_requested_at, attempts, last_attempt_at, last_error, updated_at
    FROM certificates;
COMMENT ON VIEW certificate_status IS 'Certificates without their keys: what operators read.';

-- Column grants, as rows (a later version adds a row instead of replacing the function):
-- the operator may ask for a renewal (`berth cert renew HOST`), reading only the host; the
-- operator and the viewer may read the internal CA's certificate (`berth cert ca`), never
-- its key.
CREATE TABLE berth_column_grants (
    role_kind  text NOT NULL REFERENCES berth_roles (kind),
    privilege  text NOT NULL CHECK (privilege IN ('SELECT', 'UPDATE', 'INSERT')),
    relation   text NOT NULL,
    columns    text NOT NULL,
    PRIMARY KEY (role_kind, privilege, relation)
);
INSERT INTO berth_column_grants VALUES
    ('operator', 'SELECT', 'certificates', 'host'),
    ('operator', 'UPDATE', 'certificates', 'renew_requested_at, attempts'),
    ('operator', 'SELECT', 'certificate_authorities', 'name, certificate_pem, created_at'),
    ('viewer', 'SELECT', 'certificate_authorities', 'name, certificate_pem, created_at');

-- Version 18's grants, and the column grants of berth_column_grants.
CREATE OR REPLACE FUNCTION berth_grant_roles() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    operator_role name := (SELECT role FROM berth_roles WHERE kind = 'operator');
    viewer_role name := (SELECT role FROM berth_roles WHERE kind = 'viewer');
    daemon_role name := (SELECT role FROM berth_roles WHERE kind = 'daemon');
    admin_role name := (SELECT role FROM berth_roles WHERE kind = 'admin');
    each_role name;
    readable text[] := ARRAY(SELECT relation FROM berth_readable ORDER BY relation);
    relation text;
    grant_row record;
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

    -- Column grants of later versions, one row each in berth_column_grants.
    FOR grant_row IN SELECT * FROM berth_column_grants ORDER BY relation, role_kind, privilege LOOP
        EXECUTE format('GRANT %s (%s) ON %I TO %I', grant_row.privilege, grant_row.columns, grant_row.relation,
                       (SELECT role FROM berth_roles WHERE kind = grant_row.role_kind));
    END LOOP;
END
$$;

INSERT INTO berth_readable VALUES ('certificate_status'), ('berth_column_grants');
SELECT berth_grant_roles();
