-- Named queries used by the Postgres gateway (controller/gateways/). Each starts with
-- "-- name: NAME"; parameters are psycopg named placeholders. Every statement Berth's loop
-- runs is here; the in-memory fake (tests/fakes.py) answers the same names.

-- name: select_deployments
-- Every deployment with its status, plus statuses whose deployment was deleted
-- (spec columns null): the whole desired state in one query for a full resync.
SELECT coalesce(d.name, s.name) AS name,
       d.name IS NOT NULL AS present,
       d.image, d.command, d.env, d.ports, d.replicas, d.healthcheck, d.labels, d.generation,
       d.source, d.priority, d.routes, d.rollout,
       berth_workload_of(d) AS workload,
       nullif(d.secret_versions, '{}') AS secret_versions,  -- most: none, nothing to decode
       s.phase, s.phase_progress, s.message, s.phase_metadata, s.phase_updated_at,
       s.observed_generation, s.ready_replicas,
       s.failure_kind, s.attempts, s.next_attempt_at, s.leader_term,
       s.restart_count, s.replica_restarts, s.replicas AS observed_replicas,
       CASE WHEN s.stuck_generation = d.generation THEN s.stuck_resumes ELSE 0 END AS stuck_resumes,
       coalesce(c.ids, '{}') AS recorded_containers, coalesce(c.names, '{}') AS recorded_names,
       coalesce(i.names, '{}') AS pending_creates,
       (SELECT extract(epoch FROM applied_at)::float8 FROM berth_schema_migrations
        WHERE version = 6) AS records_since,
       EXISTS (SELECT 1 FROM builds b WHERE b.deployment = coalesce(d.name, s.name)
               AND b.status = 'queued') AS build_queued,
       s.serving_revision, s.rollout_started_at, r.spec AS serving_spec, r.spec_hash AS serving_hash
FROM deployments d
FULL JOIN deployment_status s ON s.name = d.name
LEFT JOIN deployment_revisions r
    ON r.deployment = coalesce(d.name, s.name) AND r.revision = s.serving_revision
LEFT JOIN (SELECT deployment, array_agg(container_id) AS ids, array_agg(name) AS names
           FROM berth_containers GROUP BY deployment) c ON c.deployment = coalesce(d.name, s.name)
LEFT JOIN (SELECT deployment, array_agg(target) AS names FROM berth_mutations
           WHERE action = 'create' AND outcome IS NULL AND resolution IS NULL
           GROUP BY deployment) i ON i.deployment = coalesce(d.name, s.name);

-- name: select_deployment
SELECT wanted.name,
       d.name IS NOT NULL AS present,
       d.image, d.command, d.env, d.ports, d.replicas, d.healthcheck, d.labels, d.generation,
       d.source, d.priority, d.routes, d.rollout,
       berth_workload_of(d) AS workload,
       nullif(d.secret_versions, '{}') AS secret_versions,  -- most: none, nothing to decode
       s.phase, s.phase_progress, s.message, s.phase_metadata, s.phase_updated_at,
       s.observed_generation, s.ready_replicas,
       s.failure_kind, s.attempts, s.next_attempt_at, s.leader_term,
       s.restart_count, s.replica_restarts, s.replicas AS observed_replicas,
       CASE WHEN s.stuck_generation = d.generation THEN s.stuck_resumes ELSE 0 END AS stuck_resumes,
       ARRAY(SELECT container_id FROM berth_containers c WHERE c.deployment = wanted.name)
           AS recorded_containers,
       ARRAY(SELECT c.name FROM berth_containers c WHERE c.deployment = wanted.name)
           AS recorded_names,
       ARRAY(SELECT target FROM berth_mutations m WHERE m.deployment = wanted.name
             AND m.action = 'create' AND m.outcome IS NULL AND m.resolution IS NULL)
           AS pending_creates,
       (SELECT extract(epoch FROM applied_at)::float8 FROM berth_schema_migrations
        WHERE version = 6) AS records_since,
       EXISTS (SELECT 1 FROM builds b WHERE b.deployment = wanted.name AND b.status = 'queued')
           AS build_queued,
       s.serving_revision, s.rollout_started_at, r.spec AS serving_spec, r.spec_hash AS serving_hash
FROM (SELECT %(name)s::text AS name) wanted
LEFT JOIN deployments d ON d.name = wanted.name
LEFT JOIN deployment_status s ON s.name = wanted.name
LEFT JOIN deployment_revisions r ON r.deployment = wanted.name AND r.revision = s.serving_revision
WHERE d.name IS NOT NULL OR s.name IS NOT NULL;

-- name: fenced_write
-- The fence, a status row (or none) and its events: one statement (schema 26), its own
-- transaction or the first of a longer one. The term row is held FOR SHARE to the end of
-- the transaction (a new leader's claim waits for it); a term that is over, or a holder
-- the database does not know (a term number granted twice after a failover), raises
-- SQLSTATE BF001, which the gateway turns into Deposed: nothing of it is written.
SELECT berth_fenced_write(%(cluster)s, %(term)s, %(node_id)s, %(status)s, %(create_row)s,
                          %(events)s);

-- name: commit_intent
-- A mutation's intent with the fence, and the status row and events it carries: one
-- statement, its own transaction (schema 26). Returns the intent's id.
SELECT berth_commit_intent(%(cluster)s, %(term)s, %(node_id)s, %(deployment)s, %(action)s,
                           %(target)s, %(status)s, %(create_row)s, %(events)s) AS id;

-- name: insert_events
-- The events of one transaction in one statement (a JSON array of them), in their order
-- (schema 24's function is the one place they are inserted).
SELECT berth_insert_events(%(events)s, %(leader_term)s);

-- name: delete_status
DELETE FROM deployment_status WHERE name = %(name)s;

-- name: upsert_deployment
INSERT INTO deployments AS d
    (name, image, source, priority, command, env, ports, replicas, healthcheck, labels, routes,
     rollout, resources, volumes, networks, stop_signal, stop_grace_s, "user", read_only,
     cap_add, cap_drop, init, privileged, network_mode, pid_mode, ipc_mode, devices,
     placement)
VALUES (%(name)s, %(image)s, %(source)s, %(priority)s, %(command)s, %(env)s, %(ports)s,
        %(replicas)s, %(healthcheck)s, %(labels)s, %(routes)s, %(rollout)s, %(resources)s,
        %(volumes)s, %(networks)s, %(stop_signal)s, %(stop_grace_s)s, %(user)s, %(read_only)s,
        %(cap_add)s, %(cap_drop)s, %(init)s, %(privileged)s, %(network_mode)s, %(pid_mode)s,
        %(ipc_mode)s, %(devices)s, %(placement)s)
ON CONFLICT (name) DO UPDATE
SET image = excluded.image, source = excluded.source, priority = excluded.priority,
    command = excluded.command, env = excluded.env,
    ports = excluded.ports, replicas = excluded.replicas,
    healthcheck = excluded.healthcheck, labels = excluded.labels, routes = excluded.routes,
    rollout = excluded.rollout, resources = excluded.resources, volumes = excluded.volumes,
    networks = excluded.networks, stop_signal = excluded.stop_signal,
    stop_grace_s = excluded.stop_grace_s, "user" = excluded."user",
    read_only = excluded.read_only, cap_add = excluded.cap_add, cap_drop = excluded.cap_drop,
    init = excluded.init, privileged = excluded.privileged,
    network_mode = excluded.network_mode, pid_mode = excluded.pid_mode,
    ipc_mode = excluded.ipc_mode, devices = excluded.devices, placement = excluded.placement
RETURNING d.generation, (xmax = 0) AS inserted;

-- name: delete_deployment
DELETE FROM deployments WHERE name = %(name)s RETURNING name;

-- name: select_overview
SELECT * FROM deployment_overview ORDER BY name;

-- name: select_overview_json
-- The whole overview as one JSON array, built by Postgres: the API's list sends it as is.
SELECT coalesce(json_agg(o ORDER BY o.name), '[]')::text AS items FROM deployment_overview o;

-- name: select_overview_one
SELECT * FROM deployment_overview WHERE name = %(name)s;

-- name: select_spec
SELECT name, image, source, priority, command, env, ports, replicas, healthcheck, labels,
       routes, rollout, resources, volumes, networks, stop_signal, stop_grace_s, "user",
       read_only, cap_add, cap_drop, init, privileged, network_mode, pid_mode, ipc_mode, devices,
       placement, generation, created_at, updated_at
FROM deployments WHERE name = %(name)s;

-- name: select_secret_values
-- Only the daemon's role may read values: it does so when it creates containers, and for
-- the certificates of `tls` routes with issuer files.
SELECT name, value FROM secrets
WHERE name IN (SELECT jsonb_array_elements_text(%(names)s::jsonb));

-- name: select_status
SELECT * FROM deployment_status WHERE name = %(name)s;

-- name: select_events
SELECT id, at, generation, kind, level, phase_from, phase_to, action, message, metadata
FROM deployment_events WHERE deployment = %(name)s
ORDER BY id DESC LIMIT %(limit)s;

-- name: claim_term
-- A new term, once every transaction holding the old term row FOR SHARE has ended (fenced
-- writes and the old leader's heartbeats). Returns the previous holder.
WITH previous AS (SELECT holder_id FROM berth_leader WHERE cluster = %(cluster)s)
INSERT INTO berth_leader AS l (cluster, term, holder_id, holder_host, holder_pid, acquired_at)
VALUES (%(cluster)s, 1, %(node_id)s, %(host)s, %(pid)s, now())
ON CONFLICT (cluster) DO UPDATE
SET term = l.term + 1, holder_id = excluded.holder_id, holder_host = excluded.holder_host,
    holder_pid = excluded.holder_pid, acquired_at = now()
RETURNING term, (SELECT holder_id FROM previous)::text AS previous_holder;

-- name: previous_beat_age
-- Run after claim_term: seconds since the previous term's last heartbeat (none: no row).
-- Every heartbeat that could still renew the old leader's trust had committed by the claim.
SELECT extract(epoch FROM clock_timestamp() - beat_at)::float8 AS age_s
FROM berth_heartbeats WHERE cluster = %(cluster)s AND term = %(term)s - 1;

-- name: heartbeat
-- The leader's heartbeat: record it (never over a newer term's) and read who leads now,
-- holding the term row FOR SHARE so that a claim waits for it (see previous_beat_age).
WITH beat AS (
    INSERT INTO berth_heartbeats AS h (cluster, term, holder_id, beat_at)
    VALUES (%(cluster)s, %(term)s, %(node_id)s, clock_timestamp())
    ON CONFLICT (cluster) DO UPDATE
    SET term = excluded.term, holder_id = excluded.holder_id, beat_at = excluded.beat_at
    WHERE h.term <= excluded.term
)
SELECT term, holder_id::text AS holder_id FROM berth_leader
WHERE cluster = %(cluster)s FOR SHARE;

-- name: node_sessions
-- Sessions a Berth process still has open (its pool is named after its node id).
SELECT count(*) AS sessions FROM pg_stat_activity
WHERE application_name IN ('berth ' || %(node_id)s, 'berth-lock ' || %(cluster)s || ' ' || %(node_id)s);

-- name: select_leader
SELECT cluster, term, holder_id, holder_host, holder_pid, acquired_at
FROM berth_leader WHERE cluster = %(cluster)s;

-- name: finish_mutation
-- A mutation's outcome, its creation record (or its removal) and its events: one statement,
-- its own transaction (schema 24).
SELECT berth_finish_mutation(%(id)s, %(outcome)s, %(called_at)s, %(created)s, %(removed)s,
                             %(deployment)s, %(target)s, %(term)s, %(events)s);

-- name: prune_mutations
-- Hourly, by the leader: the mutation log, and the output of builds that ended as long ago
-- (their `builds` rows stay: the history).
WITH build_output AS (
    DELETE FROM build_logs WHERE build_id IN (
        SELECT id FROM builds
        WHERE finished_at < now() - make_interval(secs => %(older_than_s)s))
)
DELETE FROM berth_mutations WHERE started_at < now() - make_interval(secs => %(older_than_s)s);

-- name: upsert_node
INSERT INTO berth_nodes AS n (node_id, cluster, host, pid, http_addr, role, term, started_at, seen_at, note)
VALUES (%(node_id)s, %(cluster)s, %(host)s, %(pid)s, %(http_addr)s, %(role)s, %(term)s, %(started_at)s, now(), %(note)s)
ON CONFLICT (node_id) DO UPDATE
SET role = excluded.role, term = excluded.term, http_addr = excluded.http_addr, seen_at = now(),
    note = excluded.note;

-- name: select_nodes
SELECT node_id, host, pid, http_addr, role, term, started_at, seen_at, note,
       extract(epoch FROM now() - seen_at) AS seen_seconds_ago
FROM berth_nodes
WHERE cluster = %(cluster)s AND seen_at > now() - make_interval(secs => %(within_s)s)
ORDER BY role, host, pid;

-- name: mark_stuck
-- A moving phase found stuck and resumed once more; the count belongs to one generation.
UPDATE deployment_status
SET stuck_resumes = CASE WHEN stuck_generation = %(generation)s THEN stuck_resumes + 1 ELSE 1 END,
    stuck_generation = %(generation)s
WHERE name = %(name)s;

-- name: lock_migrations
-- Migrations run one process at a time (a transaction-scoped advisory lock).
SELECT pg_advisory_xact_lock(%(key)s);

-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS berth_schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: select_migrations
SELECT version FROM berth_schema_migrations;

-- name: insert_migration
INSERT INTO berth_schema_migrations (version, name) VALUES (%(version)s, %(name)s);

-- name: schema_version
SELECT coalesce(max(version), 0) AS version FROM berth_schema_migrations;

-- name: listen
LISTEN berth_deployments;

-- name: listen_stream
LISTEN berth_stream;

-- name: listen_webhooks
LISTEN berth_webhooks;

-- name: set_local_setting
SELECT set_config(%(name)s, %(value)s, true);

-- name: set_session_setting
SELECT set_config(%(name)s, %(value)s, false);

-- name: advisory_lock
-- The leader election: blocks until this session holds the cluster's lock.
SELECT pg_advisory_lock(%(key)s);

-- name: release_holds
-- Something a failure may have depended on changed: the Docker engine came back (every
-- failure is due now), or an image appeared (permanent ones: "image not found" may be
-- cured). The attempts count stays, so a real fault backs off as before.
UPDATE deployment_status SET next_attempt_at = now()
WHERE failure_kind IS NOT NULL AND next_attempt_at > now()
  AND (NOT %(permanent_only)s OR failure_kind = 'permanent')
RETURNING name;

-- name: select_unfinished_intents
-- Mutations of earlier terms that never recorded an outcome (their leader died or was deposed
-- mid-call), not yet resolved: the new leader checks each against Docker.
SELECT id, term, deployment, action, target
FROM berth_mutations
WHERE cluster = %(cluster)s AND term < %(term)s AND outcome IS NULL AND resolution IS NULL
ORDER BY id;

-- name: resolve_intent
UPDATE berth_mutations
SET resolution = %(resolution)s, resolved_by_term = %(term)s, resolved_at = clock_timestamp()
WHERE id = %(id)s AND resolution IS NULL;

-- name: ping
-- The probes' and every command's look at the server: does it take writes? A standby in
-- recovery, or a server set read-only (default_transaction_read_only), does not.
SELECT pg_is_in_recovery() OR current_setting('transaction_read_only') = 'on' AS read_only,
       pg_is_in_recovery() AS in_recovery;

-- name: record_container
-- Written with a create's outcome (or a resolved create): this container is Berth's.
-- (schema 25's function: berth_finish_mutation writes it through the same one)
SELECT berth_record_container(%(container_id)s, %(deployment)s, %(name)s, %(term)s);

-- name: select_proof_key
-- The key of the io.berth.proof label (sql/migrations/0021_creation_proof.sql).
SELECT key FROM berth_proof_key;

-- ---------------------------------------------------------------------------------------
-- Builds (sql/migrations/0007_builds.sql): the source stage of a pass, the dispatcher,
-- the build jobs and the CLI.

-- name: select_current_build
-- The deployment's newest build, with its place in the queue.
SELECT b.*, q.position, q.queue_length
FROM builds b LEFT JOIN build_queue q ON q.id = b.id
WHERE b.deployment = %(deployment)s
ORDER BY b.id DESC LIMIT 1;

-- name: supersede_builds
-- A new source for a deployment: its builds of other sources waiting or running are
-- cancelled (a queued one at once, by trigger; a running one by its job within 2 s).
UPDATE builds SET cancel_requested_at = clock_timestamp(),
                  error = 'superseded by generation ' || %(generation)s::text
WHERE deployment = %(deployment)s AND status IN ('queued', 'running')
  AND source_key <> %(source_key)s AND cancel_requested_at IS NULL;

-- name: insert_build
INSERT INTO builds (deployment, generation, source, source_key, revision, priority, requested_by)
VALUES (%(deployment)s, %(generation)s, %(source)s, %(source_key)s, %(revision)s, %(priority)s,
        %(requested_by)s)
RETURNING *;

-- name: lock_build_queue
-- One claim at a time, cluster-wide (a transaction-scoped advisory lock).
SELECT pg_advisory_xact_lock(%(key)s);

-- name: claim_build
-- The next build to run, if fewer than `limit` run now (any term's running builds count:
-- a predecessor's are resolved before this leader claims). Highest priority first, then
-- first queued; a retried build waits out its not_before.
WITH running AS (SELECT count(*) AS n FROM builds WHERE status = 'running'),
next AS (
    SELECT id FROM builds
    WHERE status = 'queued' AND not_before <= clock_timestamp() AND cancel_requested_at IS NULL
    ORDER BY priority DESC, queued_at, id
    LIMIT 1 FOR UPDATE SKIP LOCKED
)
UPDATE builds b
SET status = 'running', attempts = b.attempts + 1, started_at = clock_timestamp(),
    finished_at = NULL, duration_s = NULL, exit_code = NULL, step = 'pulling_source',
    progress = 0, error = NULL, term = %(term)s, node_id = %(node_id)s,
    heartbeat_at = clock_timestamp()
FROM next, running
WHERE b.id = next.id AND running.n < %(limit)s
RETURNING b.*;

-- name: build_heartbeat
-- A running build's progress (every ~0.2 s with its log batch); answers whether it was
-- asked to cancel. Nothing is updated once another term took the build over.
UPDATE builds
SET step = %(step)s, progress = %(progress)s, files = coalesce(%(files)s, files),
    revision = coalesce(%(revision)s, revision), image = coalesce(%(image)s, image),
    heartbeat_at = clock_timestamp()
WHERE id = %(id)s AND status = 'running' AND term = %(term)s
RETURNING cancel_requested_at IS NOT NULL AS cancel_requested;

-- name: insert_build_logs
INSERT INTO build_logs (build_id, seq, at, stream, line)
SELECT %(build_id)s, seq, to_timestamp(at), stream, line
FROM unnest(%(seqs)s::int[], %(ats)s::float8[], %(streams)s::text[], %(lines)s::text[])
     AS t(seq, at, stream, line)
ON CONFLICT DO NOTHING;

-- name: finish_build
-- A build's end: a final status, or `queued` again after `retry_after_s` (transient failure).
UPDATE builds
SET status = %(status)s,
    finished_at = CASE WHEN %(status)s = 'queued' THEN NULL ELSE clock_timestamp() END,
    duration_s = CASE WHEN %(status)s = 'queued' OR started_at IS NULL THEN NULL
                      ELSE extract(epoch FROM clock_timestamp() - started_at) END,
    not_before = CASE WHEN %(status)s = 'queued'
                      THEN clock_timestamp() + make_interval(secs => %(retry_after_s)s)
                      ELSE not_before END,
    step = CASE WHEN %(status)s = 'queued' THEN '' ELSE step END,
    progress = CASE WHEN %(status)s = 'succeeded' THEN 100 ELSE progress END,
    exit_code = %(exit_code)s,
    -- a cancel keeps the reason its requester gave (superseded, deployment deleted)
    error = CASE WHEN %(status)s = 'cancelled' THEN coalesce(error, %(error)s) ELSE %(error)s END,
    image = coalesce(%(image)s, image), revision = coalesce(%(revision)s, revision),
    cached = %(cached)s
WHERE id = %(id)s AND status = 'running' AND term = %(term)s
RETURNING id;

-- name: select_orphan_builds
-- Builds left running by an earlier term (its leader died or was deposed mid-build).
SELECT * FROM builds WHERE status = 'running' AND (term IS NULL OR term < %(term)s) ORDER BY id;

-- name: take_over_build
-- A new leader takes an orphaned build over (so that finish_build accepts its end).
UPDATE builds SET term = %(term)s WHERE id = %(id)s AND status = 'running' AND term < %(term)s
RETURNING id;

-- name: select_builds
SELECT b.id, b.deployment, b.generation, b.status, b.revision, b.step, b.progress, b.priority,
       b.attempts, b.queued_at, b.started_at, b.finished_at, b.duration_s, b.exit_code,
       b.error, b.image, b.cached, b.cancel_requested_at, b.source, q.position, q.queue_length
FROM builds b LEFT JOIN build_queue q ON q.id = b.id
WHERE (%(deployment)s::text IS NULL OR b.deployment = %(deployment)s)
  AND (NOT %(dead_only)s OR b.status = 'dead')
ORDER BY (b.status = 'queued') DESC, q.position, b.id DESC
LIMIT %(limit)s;

-- name: select_latest_build
SELECT * FROM builds WHERE deployment = %(deployment)s ORDER BY id DESC LIMIT 1;

-- name: select_build_logs
SELECT seq, at, stream, line FROM build_logs
WHERE build_id = %(build_id)s AND seq > %(after)s ORDER BY seq LIMIT %(limit)s;

-- name: select_build_state
SELECT status FROM builds WHERE id = %(id)s;

-- name: cancel_builds
UPDATE builds SET cancel_requested_at = clock_timestamp()
WHERE deployment = %(deployment)s AND status IN ('queued', 'running') AND cancel_requested_at IS NULL
RETURNING id, status;

-- name: release_hold
-- `berth retry`: the deployment's failure is due now (the new build is what it waits for).
UPDATE deployment_status SET next_attempt_at = now(), attempts = 0
WHERE name = %(name)s AND failure_kind IS NOT NULL;

-- name: create_large_object
SELECT lo_create(0) AS object_id;

-- name: write_large_object
SELECT lo_put(%(object_id)s, %(offset)s, %(data)s);

-- name: unlink_large_object
SELECT lo_unlink(%(object_id)s);

-- name: read_large_object
SELECT lo_get(%(object_id)s, %(offset)s, %(length)s) AS data;

-- name: insert_archive
INSERT INTO berth_archives (sha256, size_bytes, object_id, filename)
VALUES (%(sha256)s, %(size_bytes)s, %(object_id)s, %(filename)s)
ON CONFLICT (sha256) DO NOTHING
RETURNING sha256;

-- name: select_archive
SELECT sha256, size_bytes, object_id, filename, uploaded_at FROM berth_archives
WHERE sha256 = %(sha256)s;

-- ---------------------------------------------------------------------------------------
-- Revisions (sql/migrations/0009_revisions.sql).

-- name: serve_revision
-- This spec serves now (sql/migrations/0023_serve_revision.sql): its number.
SELECT berth_serve_revision(%(deployment)s, %(generation)s, %(spec)s, %(spec_hash)s,
                            %(image)s) AS revision;

-- name: next_revision
SELECT coalesce(max(revision), 0) + 1 AS revision FROM deployment_revisions
WHERE deployment = %(deployment)s;

-- name: insert_revision
INSERT INTO deployment_revisions
    (deployment, revision, generation, spec, spec_hash, image, image_id, outcome, reason)
VALUES (%(deployment)s, %(revision)s, %(generation)s, %(spec)s, %(spec_hash)s, %(image)s,
        %(image_id)s, %(outcome)s, %(reason)s);


-- name: select_revisions
SELECT revision, generation, spec, spec_hash, image, image_id, created_at, outcome, reason
FROM deployment_revisions WHERE deployment = %(deployment)s ORDER BY revision DESC LIMIT %(limit)s;

-- ---------------------------------------------------------------------------------------
-- The HTTP API (sql/migrations/0010_api.sql): tokens, writes of whole deployments, pages.

-- name: insert_token
INSERT INTO api_tokens (name, scope, token_hash) VALUES (%(name)s, %(scope)s, %(token_hash)s)
RETURNING id, name, scope, created_at;

-- name: select_token
SELECT id, name, scope, last_used_at FROM api_tokens
WHERE token_hash = %(token_hash)s AND revoked_at IS NULL;

-- name: touch_token
UPDATE api_tokens SET last_used_at = now() WHERE id = %(id)s;

-- name: select_tokens
SELECT id, name, scope, created_at, last_used_at, revoked_at FROM api_tokens ORDER BY id;

-- name: revoke_token
UPDATE api_tokens SET revoked_at = now() WHERE name = %(name)s AND revoked_at IS NULL
RETURNING id;

-- name: api_create_deployment
INSERT INTO deployments (name, image, source, priority, command, env, ports, replicas,
                         healthcheck, labels, routes, rollout, resources, volumes, networks,
                         stop_signal, stop_grace_s, "user", read_only, cap_add, cap_drop, init,
                         privileged, network_mode, pid_mode, ipc_mode, devices, placement)
SELECT %(name)s, s ->> 'image', s -> 'source', coalesce((s ->> 'priority')::integer, 0),
       CASE WHEN s ? 'command' THEN ARRAY(SELECT jsonb_array_elements_text(s -> 'command')) END,
       coalesce(s -> 'env', '{}'), coalesce(s -> 'ports', '[]'),
       coalesce((s ->> 'replicas')::integer, 1), s -> 'healthcheck', coalesce(s -> 'labels', '{}'),
       coalesce(s -> 'routes', '[]'), coalesce(s -> 'rollout', '{}'),
       coalesce(s -> 'resources', '{}'), coalesce(s -> 'volumes', '[]'),
       coalesce(s -> 'networks', '[]'), s ->> 'stop_signal', (s ->> 'stop_grace_s')::float8,
       s ->> 'user', coalesce((s ->> 'read_only')::boolean, false),
       coalesce(s -> 'cap_add', '[]'), coalesce(s -> 'cap_drop', '[]'),
       coalesce((s ->> 'init')::boolean, false), coalesce((s ->> 'privileged')::boolean, false),
       s ->> 'network_mode', s ->> 'pid_mode', s ->> 'ipc_mode', coalesce(s -> 'devices', '[]'),
       coalesce(s -> 'placement', '{}')
FROM berth_checked_spec(%(spec)s) AS s
ON CONFLICT (name) DO NOTHING
RETURNING generation;

-- name: api_replace_deployment
-- A whole new spec (absent fields take their defaults), only if the row is still at
-- the generation the caller read (when it says one: If-Match).
UPDATE deployments AS d
SET image = s ->> 'image', source = s -> 'source',
    priority = coalesce((s ->> 'priority')::integer, 0),
    command = CASE WHEN s ? 'command' THEN ARRAY(SELECT jsonb_array_elements_text(s -> 'command')) END,
    env = coalesce(s -> 'env', '{}'), ports = coalesce(s -> 'ports', '[]'),
    replicas = coalesce((s ->> 'replicas')::integer, 1), healthcheck = s -> 'healthcheck',
    labels = coalesce(s -> 'labels', '{}'), routes = coalesce(s -> 'routes', '[]'),
    rollout = coalesce(s -> 'rollout', '{}'), resources = coalesce(s -> 'resources', '{}'),
    volumes = coalesce(s -> 'volumes', '[]'), networks = coalesce(s -> 'networks', '[]'),
    stop_signal = s ->> 'stop_signal', stop_grace_s = (s ->> 'stop_grace_s')::float8,
    "user" = s ->> 'user', read_only = coalesce((s ->> 'read_only')::boolean, false),
    cap_add = coalesce(s -> 'cap_add', '[]'), cap_drop = coalesce(s -> 'cap_drop', '[]'),
    init = coalesce((s ->> 'init')::boolean, false),
    privileged = coalesce((s ->> 'privileged')::boolean, false),
    network_mode = s ->> 'network_mode', pid_mode = s ->> 'pid_mode',
    ipc_mode = s ->> 'ipc_mode', devices = coalesce(s -> 'devices', '[]'),
    placement = coalesce(s -> 'placement', '{}')
FROM berth_checked_spec(%(spec)s) AS s
WHERE d.name = %(name)s AND (%(expected)s::bigint IS NULL OR d.generation = %(expected)s)
RETURNING d.generation;

-- name: api_delete_deployment
DELETE FROM deployments
WHERE name = %(name)s AND (%(expected)s::bigint IS NULL OR generation = %(expected)s)
RETURNING name;

-- name: select_generation
SELECT generation FROM deployments WHERE name = %(name)s;

-- name: select_events_page
SELECT id, at, generation, kind, level, phase_from, phase_to, action, message, metadata
FROM deployment_events
WHERE deployment = %(name)s AND (%(before)s::bigint IS NULL OR id < %(before)s)
ORDER BY id DESC LIMIT %(limit)s;

-- name: select_build
SELECT b.id, b.deployment, b.generation, b.status, b.revision, b.step, b.progress, b.priority,
       b.attempts, b.queued_at, b.started_at, b.finished_at, b.duration_s, b.exit_code,
       b.error, b.image, b.cached, b.cancel_requested_at, b.source, q.position, q.queue_length
FROM builds b LEFT JOIN build_queue q ON q.id = b.id
WHERE b.id = %(id)s;

-- name: cancel_build
UPDATE builds SET cancel_requested_at = clock_timestamp()
WHERE id = %(id)s AND status IN ('queued', 'running') AND cancel_requested_at IS NULL
RETURNING id, status;

-- ---------------------------------------------------------------------------------------
-- The live stream: every change after a sequence number (or in the holes a reader still
-- waits on), oldest first, optionally for one deployment.

-- name: select_stream
-- `since` is below every hole: one index range scan over recent rows, holes hashed.
SELECT seq, kind, deployment, data FROM (
    SELECT d.stream_seq AS seq, 'spec' AS kind, d.name AS deployment,
           jsonb_build_object('generation', d.generation, 'image', d.image,
                              'replicas', d.replicas, 'priority', d.priority,
                              'routes', d.routes, 'updated_at', d.updated_at) AS data
    FROM deployments d
    WHERE d.stream_seq > %(since)s
      AND (d.stream_seq > %(after)s OR d.stream_seq = ANY(%(holes)s::bigint[]))
    UNION ALL
    SELECT s.stream_seq, 'status', s.name,
           jsonb_build_object('phase', s.phase, 'phase_progress', s.phase_progress,
                              'message', s.message, 'observed_generation', s.observed_generation,
                              'desired_replicas', s.desired_replicas,
                              'ready_replicas', s.ready_replicas, 'failure_kind', s.failure_kind,
                              'serving_revision', s.serving_revision,
                              'restart_count', s.restart_count,
                              'phase_updated_at', s.phase_updated_at)
    FROM deployment_status s
    WHERE s.stream_seq > %(since)s
      AND (s.stream_seq > %(after)s OR s.stream_seq = ANY(%(holes)s::bigint[]))
    UNION ALL
    SELECT e.stream_seq, 'event', e.deployment,
           jsonb_build_object('id', e.id, 'at', e.at, 'generation', e.generation, 'kind', e.kind,
                              'level', e.level, 'phase_from', e.phase_from,
                              'phase_to', e.phase_to, 'action', e.action, 'message', e.message)
    FROM deployment_events e
    WHERE e.stream_seq > %(since)s
      AND (e.stream_seq > %(after)s OR e.stream_seq = ANY(%(holes)s::bigint[]))
    UNION ALL
    SELECT b.stream_seq, 'build', b.deployment,
           jsonb_build_object('id', b.id, 'status', b.status, 'step', b.step,
                              'progress', b.progress, 'priority', b.priority,
                              'revision', b.revision, 'error', b.error,
                              'cancel_requested_at', b.cancel_requested_at)
    FROM builds b
    WHERE b.stream_seq > %(since)s
      AND (b.stream_seq > %(after)s OR b.stream_seq = ANY(%(holes)s::bigint[]))
    UNION ALL
    SELECT l.stream_seq, 'log', b.deployment,
           jsonb_build_object('build_id', l.build_id, 'seq', l.seq, 'at', l.at,
                              'stream', l.stream, 'line', l.line)
    FROM build_logs l JOIN builds b ON b.id = l.build_id
    WHERE l.stream_seq > %(since)s
      AND (l.stream_seq > %(after)s OR l.stream_seq = ANY(%(holes)s::bigint[]))
) AS changes
WHERE %(deployment)s::text IS NULL OR deployment = %(deployment)s
ORDER BY seq LIMIT %(limit)s;

-- name: stream_head
SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS seq FROM berth_stream_seq;

-- ---------------------------------------------------------------------------------------
-- Webhook deliveries: claimed for a lease (a sender that dies releases them by expiry).

-- name: claim_deliveries
UPDATE webhook_deliveries AS d
SET claimed_until = clock_timestamp() + make_interval(secs => %(lease_s)s),
    attempts = d.attempts + 1
FROM webhooks w
WHERE w.id = d.webhook_id AND d.id IN (
    SELECT id FROM webhook_deliveries
    WHERE status = 'pending' AND next_attempt_at <= clock_timestamp()
      AND (claimed_until IS NULL OR claimed_until < clock_timestamp())
    ORDER BY next_attempt_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED)
RETURNING d.id, d.event, d.deployment, d.payload, d.attempts, w.url, w.secret, w.enabled;

-- name: finish_delivery
UPDATE webhook_deliveries
SET status = %(status)s, last_status_code = %(status_code)s, last_error = %(error)s,
    next_attempt_at = clock_timestamp() + make_interval(secs => %(retry_in_s)s),
    delivered_at = CASE WHEN %(status)s = 'delivered' THEN clock_timestamp() END,
    claimed_until = NULL
WHERE id = %(id)s;

-- name: next_delivery_due
SELECT extract(epoch FROM min(next_attempt_at) - clock_timestamp()) AS due_in_s
FROM webhook_deliveries WHERE status = 'pending';

-- name: prune_events
-- Retention: events older than max_age_s, and those past the newest `keep` of their
-- deployment, go (the index on (deployment, id DESC) serves the ranking).
WITH ranked AS (
    SELECT id, at, row_number() OVER (PARTITION BY deployment ORDER BY id DESC) AS newest
    FROM deployment_events
), gone AS (
    DELETE FROM deployment_events e USING ranked r
    WHERE e.id = r.id
      AND (r.newest > %(keep)s OR r.at < now() - make_interval(secs => %(max_age_s)s))
    RETURNING 1
)
SELECT count(*) AS removed FROM gone;

-- name: prune_build_logs
-- Retention: the log lines of finished builds older than max_age_s, or past the newest
-- `keep` finished builds of their deployment. The builds rows (outcome, error) stay.
WITH finished AS (
    SELECT id, finished_at,
           row_number() OVER (PARTITION BY deployment ORDER BY id DESC) AS newest
    FROM builds WHERE status IN ('succeeded', 'failed', 'cancelled', 'dead')
), gone AS (
    DELETE FROM build_logs l USING finished f
    WHERE l.build_id = f.id
      AND (f.newest > %(keep)s OR f.finished_at < now() - make_interval(secs => %(max_age_s)s))
    RETURNING 1
)
SELECT count(*) AS removed FROM gone;

-- name: select_declared_networks
SELECT DISTINCT n.value #>> '{}' AS network
FROM deployments d, jsonb_array_elements(d.networks) n;

-- name: select_deleted_built_deployments
-- Deployments Berth built images for that no longer exist: their images are the janitor's.
SELECT DISTINCT b.deployment FROM builds b
WHERE b.image IS NOT NULL AND NOT EXISTS (SELECT 1 FROM deployments d WHERE d.name = b.deployment);

-- name: select_installation
-- This Berth database's own id (migration 17): what it writes in the engine claims it makes.
SELECT id::text AS id FROM berth_installation;

-- name: claim_cluster_engine
-- The first claim of a cluster records its engine; later ones change nothing.
INSERT INTO berth_cluster_engines (cluster, engine_id, claimed_by_host)
VALUES (%(cluster)s, %(engine_id)s, %(host)s)
ON CONFLICT (cluster) DO NOTHING;

-- name: select_cluster_engine
SELECT engine_id::text AS engine_id, claimed_by_host FROM berth_cluster_engines
WHERE cluster = %(cluster)s;

-- name: record_nodes
-- The runtime's nodes as the leader observed them (fenced by the caller's transaction);
-- nodes gone from the runtime are dropped.
INSERT INTO cluster_nodes AS n (cluster, node_id, name, address, role, availability, state,
                                labels, engine_version, seen_at)
SELECT %(cluster)s, x.node_id, x.name, x.address, x.role, x.availability, x.state, x.labels,
       x.engine_version, now()
FROM jsonb_to_recordset(%(nodes)s::jsonb) AS x(node_id text, name text, address text, role text,
     availability text, state text, labels jsonb, engine_version text)
ON CONFLICT (cluster, node_id) DO UPDATE
SET name = excluded.name, address = excluded.address, role = excluded.role,
    availability = excluded.availability, state = excluded.state, labels = excluded.labels,
    engine_version = excluded.engine_version, seen_at = now();

-- name: forget_nodes
DELETE FROM cluster_nodes
WHERE cluster = %(cluster)s AND NOT node_id = ANY (%(kept)s::text[]);

-- name: select_node_wishes
SELECT node_id, name, wanted_availability, note FROM cluster_nodes
WHERE cluster = %(cluster)s AND wanted_availability IS NOT NULL;

-- name: note_node
UPDATE cluster_nodes SET note = %(note)s WHERE cluster = %(cluster)s AND node_id = %(node_id)s;

-- name: select_cluster_nodes
SELECT * FROM nodes WHERE cluster = %(cluster)s ORDER BY name;

-- name: want_availability
-- `berth node drain|activate|pause NAME`: by name, id or address, or by hostname when one
-- node alone has it (engines may share a hostname: never drain them all by mistake).
UPDATE cluster_nodes AS n SET wanted_availability = %(wanted)s
WHERE n.cluster = %(cluster)s
  AND (%(node)s IN (n.name, n.node_id, n.address)
       OR (split_part(n.name, '@', 1) = %(node)s
           AND (SELECT count(*) FROM cluster_nodes o
                WHERE o.cluster = n.cluster AND split_part(o.name, '@', 1) = %(node)s) = 1))
RETURNING n.name;

-- name: select_replicas
SELECT * FROM replicas WHERE (%(deployment)s::text IS NULL OR deployment = %(deployment)s)
ORDER BY deployment, slot, revision;

-- name: select_certificates
-- Every host's certificate with its key (Berth's role only): the certificate keeper's read.
SELECT host, issuer, certificate_pem, private_key_pem, serial, not_before, not_after,
       renew_requested_at, attempts, last_attempt_at, updated_at
FROM certificates ORDER BY host;

-- name: save_certificate
-- A certificate obtained (fenced by the caller's transaction): the failures forgotten.
INSERT INTO certificates AS c (host, issuer, certificate_pem, private_key_pem, serial,
                               not_before, not_after, attempts, last_attempt_at, last_error,
                               updated_at)
VALUES (%(host)s, %(issuer)s, %(certificate_pem)s, %(private_key_pem)s, %(serial)s,
        %(not_before)s, %(not_after)s, 0, now(), NULL, now())
ON CONFLICT (host) DO UPDATE
SET issuer = excluded.issuer, certificate_pem = excluded.certificate_pem,
    private_key_pem = excluded.private_key_pem, serial = excluded.serial,
    not_before = excluded.not_before, not_after = excluded.not_after, attempts = 0,
    last_attempt_at = now(), last_error = NULL, updated_at = now();

-- name: certificate_failed
-- An attempt that obtained nothing: counted, with the ACME server's words (no secret in them).
INSERT INTO certificates AS c (host, issuer, attempts, last_attempt_at, last_error)
VALUES (%(host)s, %(issuer)s, 1, now(), %(error)s)
ON CONFLICT (host) DO UPDATE
SET attempts = c.attempts + 1, last_attempt_at = now(), last_error = excluded.last_error;

-- name: forget_certificates
-- Hosts no route asks TLS for any more.
DELETE FROM certificates WHERE NOT host = ANY (%(kept)s::text[]);

-- name: request_renewal
-- An operator's renewal: at the next sweep, without waiting out the failures' backoff.
UPDATE certificates SET renew_requested_at = now(), attempts = 0 WHERE host = %(host)s
RETURNING host;

-- name: select_certificate_status
SELECT host, issuer, serial, not_before, not_after, renew_after, renew_requested_at,
       attempts, last_attempt_at, last_error
FROM certificate_status ORDER BY host;

-- name: select_acme_account
SELECT account_key_pem, account_uri FROM acme_accounts WHERE directory_url = %(directory_url)s;

-- name: save_acme_account
INSERT INTO acme_accounts (directory_url, account_key_pem, account_uri)
VALUES (%(directory_url)s, %(account_key_pem)s, %(account_uri)s)
ON CONFLICT (directory_url) DO UPDATE
SET account_key_pem = excluded.account_key_pem, account_uri = excluded.account_uri;

-- name: select_authority
SELECT certificate_pem, private_key_pem FROM certificate_authorities WHERE name = %(name)s;

-- name: save_authority
-- The first CA made wins (two leaders in a row cannot both make one): the stored one is read after.
INSERT INTO certificate_authorities (name, certificate_pem, private_key_pem)
VALUES (%(name)s, %(certificate_pem)s, %(private_key_pem)s)
ON CONFLICT (name) DO NOTHING;

-- name: select_authority_certificate
SELECT certificate_pem FROM certificate_authorities WHERE name = %(name)s;

-- name: select_registry_images
-- Every image Berth built and pushed (a build's `image`, distinct per deployment) and whether
-- retention keeps it: one of the newest %(retention)s distinct images of a deployment that
-- still exists, or the image of its serving revision. The janitor prunes the rest from the
-- registry (BERTH_REGISTRY); a deleted deployment keeps none.
WITH built AS (
    SELECT b.deployment, b.image, max(b.id) AS last_id
    FROM builds b
    WHERE b.status = 'succeeded' AND b.image IS NOT NULL
    GROUP BY b.deployment, b.image
), ranked AS (
    SELECT built.*, row_number() OVER (PARTITION BY deployment ORDER BY last_id DESC) AS newest
    FROM built
)
SELECT r.deployment, r.image,
       EXISTS (SELECT 1 FROM deployments d WHERE d.name = r.deployment)
       AND (r.newest <= %(retention)s OR EXISTS (
           SELECT 1 FROM deployment_revisions v
           WHERE v.deployment = r.deployment AND v.outcome = 'serving' AND v.image = r.image
       )) AS kept
FROM ranked r;
