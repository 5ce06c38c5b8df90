-- Berth schema, version 15: least-privilege roles. Four group roles (NOLOGIN; people and
-- services log in as their own roles made members of one):
--   operator: writes deployments, secrets (never reads a value) and webhooks; reads status,
--             events, builds, revisions, policy and quotas;
--   viewer:   reads what the operator reads; no secret values, no tokens;
--   daemon:   Berth's own role: everything Berth reads and writes, secret values included;
--   admin:    the operator's rights plus `policy` and `quotas`.
-- Their names come from the settings BERTH_ROLE_* (`berth migrate` passes them as
-- berth.role_* for this transaction) and are kept in `berth_roles`, so that later
-- migrations grant on their new tables with `SELECT berth_grant_roles()`.
-- Trigger functions that write tables the operator may not write (the deletion event,
-- build cancellation) run as their owner (SECURITY DEFINER, with a fixed search_path).

CREATE TABLE berth_roles (
    kind text PRIMARY KEY CONSTRAINT berth_roles_kind CHECK (kind IN ('operator', 'viewer', 'daemon', 'admin')),
    role name NOT NULL
);

INSERT INTO berth_roles (kind, role) VALUES
    ('operator', coalesce(nullif(current_setting('berth.role_operator', true), ''), 'berth_operator')),
    ('viewer', coalesce(nullif(current_setting('berth.role_viewer', true), ''), 'berth_viewer')),
    ('daemon', coalesce(nullif(current_setting('berth.role_daemon', true), ''), 'berth_daemon')),
    ('admin', coalesce(nullif(current_setting('berth.role_admin', true), ''), 'berth_admin'));

CREATE FUNCTION berth_grant_roles() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    operator_role name := (SELECT role FROM berth_roles WHERE kind = 'operator');
    viewer_role name := (SELECT role FROM berth_roles WHERE kind = 'viewer');
    daemon_role name := (SELECT role FROM berth_roles WHERE kind = 'daemon');
    admin_role name := (SELECT role FROM berth_roles WHERE kind = 'admin');
    each_role name;
    readable text[] := ARRAY['deployments', 'deployment_status', 'deployment_events',
        'deployment_overview', 'deployment_revisions', 'builds', 'build_logs', 'build_queue',
        'webhook_deliveries', 'policy', 'quotas', 'berth_leader', 'berth_nodes',
        'berth_schema_migrations', 'berth_roles'];
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
    EXECUTE format('GRANT INSERT, UPDATE, DELETE ON policy, quotas TO %I', admin_role);
END
$$;

-- The deletion event names who deleted: the session's role, also under SECURITY DEFINER.
CREATE OR REPLACE FUNCTION berth_record_deletion() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO deployment_events (deployment, generation, kind, level, action, message)
    VALUES (OLD.name, OLD.generation, 'note', 'info', 'deleted',
            format('deployment deleted by %s', session_user));
    RETURN NULL;
END
$$;

-- Trigger functions that act beyond what the operator may write, run as their owner:
-- the deletion event, build cancellation and priority, a secret's rollout, and the checks
-- that read across deployments (a host port's holder, a quota's total).
DO $$
DECLARE
    fn text;
BEGIN
    FOREACH fn IN ARRAY ARRAY['berth_record_deletion()', 'berth_cancel_orphaned_builds()',
                              'berth_priority_to_builds()', 'berth_secret_rollout()',
                              'berth_stamp_secret_versions()',
                              'berth_secret_in_use()', 'berth_enforce_quotas()',
                              'berth_validate_limits()'] LOOP
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = %I, pg_temp', fn, current_schema());
    END LOOP;
END
$$;

SELECT berth_grant_roles();
