-- Berth schema, version 7: deploy from source. A deployment names either an `image` or a
-- `source` (a git repository or an archive); source deployments wait in a build queue
-- (`builds`, `build_queue`), are built by the leader's build dispatcher, and then run the
-- image built. Build output goes to `build_logs`; uploaded archives live in Postgres large
-- objects (`berth_archives`), which every replica can read without a shared filesystem.

ALTER TABLE deployments ALTER COLUMN image DROP NOT NULL;
ALTER TABLE deployments
    ADD COLUMN source jsonb,
    ADD COLUMN priority integer NOT NULL DEFAULT 0;
ALTER TABLE deployments ADD CONSTRAINT deployments_image_or_source
    CHECK ((image IS NULL) <> (source IS NULL));
ALTER TABLE deployments ADD CONSTRAINT deployments_priority_range
    CHECK (priority BETWEEN -1000 AND 1000);

COMMENT ON COLUMN deployments.source IS
    'Build from source instead of running `image`: {"git": {"url", "ref"}} or {"archive": {"sha256"} | {"path"}}, with optional "dockerfile" and "context". Exactly one of image and source is set.';
COMMENT ON COLUMN deployments.priority IS
    'Build queue priority: higher builds first, first come first served within a priority. Not part of the spec (changing it rebuilds nothing).';

-- A relative path inside the source: no leading '/', no '..' component.
CREATE FUNCTION berth_relative_path(value text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT value <> '' AND value !~ '^/' AND NOT ('..' = ANY (string_to_array(value, '/')))
$$;

CREATE FUNCTION berth_check_source(source jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    key text;
    git jsonb;
    archive jsonb;
BEGIN
    IF jsonb_typeof(source) <> 'object' THEN
        PERFORM berth_refuse('source', format('must be an object {"git": {...}} or {"archive": {...}}, got %s', jsonb_typeof(source)));
    END IF;
    FOR key IN SELECT jsonb_object_keys(source) LOOP
        IF key NOT IN ('git', 'archive', 'dockerfile', 'context') THEN
            PERFORM berth_refuse(format('source.%s', key), 'is not a known field (git, archive, dockerfile, context)');
        END IF;
    END LOOP;
    IF (source ? 'git') = (source ? 'archive') THEN
        PERFORM berth_refuse('source', 'must have exactly one of "git" and "archive"');
    END IF;
    FOREACH key IN ARRAY ARRAY['dockerfile', 'context'] LOOP
        IF source ? key AND NOT (jsonb_typeof(source -> key) = 'string' AND berth_relative_path(source ->> key)) THEN
            PERFORM berth_refuse(format('source.%s', key),
                format('must be a relative path inside the source (no leading "/", no ".."), got %s', source -> key));
        END IF;
    END LOOP;
    IF source ? 'git' THEN
        git := source -> 'git';
        IF jsonb_typeof(git) <> 'object' THEN
            PERFORM berth_refuse('source.git', 'must be an object {"url": "...", "ref": "..."}');
        END IF;
        FOR key IN SELECT jsonb_object_keys(git) LOOP
            IF key NOT IN ('url', 'ref') THEN
                PERFORM berth_refuse(format('source.git.%s', key), 'is not a known field (url, ref)');
            END IF;
        END LOOP;
        IF jsonb_typeof(git -> 'url') IS DISTINCT FROM 'string' OR git ->> 'url' !~ '^\S+$' THEN
            PERFORM berth_refuse('source.git.url', 'is required: anything `git clone` accepts, without whitespace');
        END IF;
        IF git ->> 'url' ~ '^-' THEN
            PERFORM berth_refuse('source.git.url', 'must not start with "-"');
        END IF;
        IF git ? 'ref' AND jsonb_typeof(git -> 'ref') <> 'null'
           AND NOT (jsonb_typeof(git -> 'ref') = 'string' AND git ->> 'ref' ~ '^[A-Za-z0-9._/][A-Za-z0-9._/-]*$') THEN
            PERFORM berth_refuse('source.git.ref', format('must be a branch, tag or commit name, got %s', git -> 'ref'));
        END IF;
    ELSE
        archive := source -> 'archive';
        IF jsonb_typeof(archive) <> 'object' OR NOT (archive ? 'sha256' OR archive ? 'path') THEN
            PERFORM berth_refuse('source.archive', 'must be {"sha256": "<hex>"} (uploaded with `berth upload`) or {"path": "/abs/file.tar.gz"} (optionally with the "sha256" it must have)');
        END IF;
        FOR key IN SELECT jsonb_object_keys(archive) LOOP
            IF key NOT IN ('sha256', 'path') THEN
                PERFORM berth_refuse(format('source.archive.%s', key), 'is not a known field (sha256, path)');
            END IF;
        END LOOP;
        IF archive ? 'sha256' AND coalesce(archive ->> 'sha256', '') !~ '^[0-9a-f]{64}$' THEN
            PERFORM berth_refuse('source.archive.sha256', format('must be 64 lowercase hex digits, got %s', archive -> 'sha256'));
        END IF;
        IF archive ? 'path' AND NOT (jsonb_typeof(archive -> 'path') = 'string' AND archive ->> 'path' ~ '^/'
                                     AND NOT ('..' = ANY (string_to_array(archive ->> 'path', '/')))) THEN
            PERFORM berth_refuse('source.archive.path', format('must be an absolute path without "..", got %s', archive -> 'path'));
        END IF;
    END IF;
END
$$;

-- Runs after berth_10_validate (which still checks image when it is set).
CREATE FUNCTION berth_validate_source() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.source IS NOT NULL AND jsonb_typeof(NEW.source) = 'null' THEN
        NEW.source := NULL;
    END IF;
    NEW.source := jsonb_strip_nulls(NEW.source);  -- {"ref": null} means: no ref
    IF NEW.image IS NOT NULL AND NEW.source IS NOT NULL THEN
        PERFORM berth_refuse('source', 'set exactly one of image and source, not both');
    END IF;
    IF NEW.image IS NULL AND NEW.source IS NULL THEN
        PERFORM berth_refuse('image', 'is required unless source is set (set exactly one of image and source)');
    END IF;
    IF NEW.source IS NOT NULL THEN
        PERFORM berth_check_source(NEW.source);
    END IF;
    IF NEW.priority IS NULL OR NEW.priority NOT BETWEEN -1000 AND 1000 THEN
        PERFORM berth_refuse('priority', format('must be an integer from -1000 to 1000, got %s', coalesce(NEW.priority::text, 'null')));
    END IF;
    RETURN NEW;
END
$$;

-- The image check of version 1 refused a null image; a source deployment has none.
CREATE OR REPLACE FUNCTION berth_validate_deployment_image(image text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$ SELECT image IS NULL OR image ~ '^\S+$' $$;

DO $$
DECLARE
    body text;
BEGIN
    body := pg_get_functiondef('berth_validate_deployment()'::regprocedure);
    body := replace(body,
        'IF NEW.image IS NULL OR NEW.image !~ ''^\S+$'' THEN',
        'IF NOT berth_validate_deployment_image(NEW.image) THEN');
    body := replace(body, '''is required and must not contain whitespace''', '''must not contain whitespace''');
    IF position('berth_validate_deployment_image' IN body) = 0 THEN
        RAISE EXCEPTION 'migration 7: the image check of berth_validate_deployment was not found';
    END IF;
    EXECUTE body;
END
$$;

CREATE TRIGGER berth_15_validate_source BEFORE INSERT OR UPDATE ON deployments
    FOR EACH ROW EXECUTE FUNCTION berth_validate_source();

-- generation: +1 on every update that changes the spec. "The spec" is every column but
-- the bookkeeping and the settings that do not describe what runs (priority, and from
-- version 8 rollout), so a column added by a later migration counts without this
-- function being written again.
CREATE FUNCTION berth_spec_of(row_value jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT row_value - ARRAY['name', 'generation', 'created_at', 'updated_at', 'priority', 'rollout']
$$;

CREATE OR REPLACE FUNCTION berth_bump_generation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.generation := 1;
        NEW.created_at := now();
        NEW.updated_at := now();
        RETURN NEW;
    END IF;
    NEW.created_at := OLD.created_at;
    IF berth_spec_of(to_jsonb(NEW)) IS DISTINCT FROM berth_spec_of(to_jsonb(OLD)) THEN
        NEW.generation := OLD.generation + 1;
        NEW.updated_at := now();
    ELSE
        NEW.generation := OLD.generation;
        NEW.updated_at := OLD.updated_at;
    END IF;
    RETURN NEW;
END
$$;

ALTER TABLE deployment_status DROP CONSTRAINT deployment_status_phase_known;
ALTER TABLE deployment_status ADD CONSTRAINT deployment_status_phase_known CHECK (phase IN (
    'queued', 'pulling_source', 'building', 'pulling_image', 'creating', 'starting',
    'health_check', 'active', 'degraded', 'failed', 'deleting'));

CREATE TABLE builds (
    id                  bigserial PRIMARY KEY,
    deployment          text NOT NULL,
    generation          bigint NOT NULL,
    source              jsonb NOT NULL,
    source_key          text NOT NULL,
    revision            text,
    status              text NOT NULL DEFAULT 'queued'
                        CONSTRAINT builds_status_known CHECK (status IN (
                            'queued', 'running', 'succeeded', 'failed', 'cancelled', 'dead')),
    step                text NOT NULL DEFAULT '',
    progress            smallint NOT NULL DEFAULT 0 CONSTRAINT builds_progress_percent CHECK (progress BETWEEN 0 AND 100),
    files               integer,
    priority            integer NOT NULL DEFAULT 0,
    attempts            integer NOT NULL DEFAULT 0,
    queued_at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    not_before          timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at          timestamptz,
    finished_at         timestamptz,
    duration_s          double precision,
    exit_code           integer,
    error               text,
    image               text,
    cached              boolean NOT NULL DEFAULT false,
    term                bigint,
    node_id             uuid,
    heartbeat_at        timestamptz,
    cancel_requested_at timestamptz,
    requested_by        text NOT NULL DEFAULT 'berth'
);
CREATE INDEX builds_by_deployment ON builds (deployment, id DESC);
CREATE INDEX builds_waiting ON builds (priority DESC, queued_at, id) WHERE status = 'queued';
CREATE INDEX builds_running ON builds (id) WHERE status = 'running';

COMMENT ON TABLE builds IS
    'One row per build of a source deployment. Berth writes it; an operator may set cancel_requested_at (cancel) or insert through `berth retry`.';
COMMENT ON COLUMN builds.revision IS 'The resolved source revision: the git commit, or the archive''s sha256.';
COMMENT ON COLUMN builds.step IS 'What the build is doing: "pulling_source", "step 3/7", ...';
COMMENT ON COLUMN builds.not_before IS 'A retried build waits until then (backoff after a transient failure).';
COMMENT ON COLUMN builds.error IS 'Why it failed, naming the failing step, with its exit code and last log lines.';
COMMENT ON COLUMN builds.cancel_requested_at IS 'Set it to cancel: a queued build is cancelled at once, a running one within 2 s.';
COMMENT ON COLUMN builds.term IS 'Leader term that ran it; a running build of an older term is adopted or requeued by the next leader.';

-- A queued build asked to cancel is cancelled at once (nothing is running for it).
CREATE FUNCTION berth_builds_cancel_queued() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'queued' AND NEW.cancel_requested_at IS NOT NULL THEN
        NEW.status := 'cancelled';
        NEW.finished_at := clock_timestamp();
        NEW.error := coalesce(NEW.error || '; ', '') || 'cancelled before it started';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER berth_10_cancel_queued BEFORE INSERT OR UPDATE ON builds
    FOR EACH ROW EXECUTE FUNCTION berth_builds_cancel_queued();

-- Wake the daemons: the build's deployment (its status mirrors the build) and, when the
-- queue moved, every deployment waiting in it (their positions changed).
CREATE FUNCTION berth_builds_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status OR NEW.step IS DISTINCT FROM OLD.step
       OR NEW.cancel_requested_at IS DISTINCT FROM OLD.cancel_requested_at THEN
        PERFORM pg_notify('berth_deployments', NEW.deployment);
    END IF;
    IF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status THEN
        PERFORM pg_notify('berth_deployments', waiting.deployment)
        FROM (SELECT DISTINCT deployment FROM builds WHERE status = 'queued' AND deployment <> NEW.deployment) waiting;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER berth_30_notify AFTER INSERT OR UPDATE ON builds
    FOR EACH ROW EXECUTE FUNCTION berth_builds_notify();

-- A deployment's priority follows into its waiting builds.
CREATE FUNCTION berth_priority_to_builds() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.priority IS DISTINCT FROM OLD.priority THEN
        UPDATE builds SET priority = NEW.priority WHERE deployment = NEW.name AND status = 'queued';
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER berth_40_priority AFTER UPDATE ON deployments
    FOR EACH ROW EXECUTE FUNCTION berth_priority_to_builds();

-- A deployment deleted, or switched from a source to an image: its waiting and running
-- builds are cancelled (a queued one at once; a running one by its job within 2 s).
CREATE FUNCTION berth_cancel_orphaned_builds() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR (OLD.source IS NOT NULL AND NEW.source IS NULL) THEN
        UPDATE builds SET cancel_requested_at = clock_timestamp(),
                          error = CASE WHEN TG_OP = 'DELETE' THEN 'deployment deleted'
                                       ELSE 'the deployment runs an image now' END
        WHERE deployment = OLD.name AND status IN ('queued', 'running') AND cancel_requested_at IS NULL;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER berth_50_cancel_builds AFTER UPDATE OR DELETE ON deployments
    FOR EACH ROW EXECUTE FUNCTION berth_cancel_orphaned_builds();

CREATE TABLE build_logs (
    build_id bigint NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
    seq      integer NOT NULL,
    at       timestamptz NOT NULL,
    stream   text NOT NULL CONSTRAINT build_logs_stream_known CHECK (stream IN ('stdout', 'stderr', 'berth')),
    line     text NOT NULL,
    PRIMARY KEY (build_id, seq)
);
COMMENT ON TABLE build_logs IS
    'Every line of git and docker build output, and Berth''s own notes (stream berth), written in batches.';

CREATE VIEW build_queue AS
SELECT b.id, b.deployment, b.generation, b.priority, b.attempts, b.queued_at, b.not_before,
       row_number() OVER (ORDER BY b.priority DESC, b.queued_at, b.id) AS position,
       count(*) OVER () AS queue_length
FROM builds b
WHERE b.status = 'queued';

COMMENT ON VIEW build_queue IS 'Waiting builds in the order they will start; position 1 is next.';

CREATE TABLE berth_archives (
    sha256      text PRIMARY KEY CONSTRAINT berth_archives_sha256_hex CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size_bytes  bigint NOT NULL,
    object_id   oid NOT NULL,
    filename    text NOT NULL DEFAULT '',
    uploaded_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE berth_archives IS
    'Archives uploaded with `berth upload` (source {"archive": {"sha256": ...}}): the bytes are the large object object_id.';

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
       d.source,
       d.priority
FROM deployments d
FULL JOIN deployment_status s ON s.name = d.name;
