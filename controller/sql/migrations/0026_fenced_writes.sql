-- Berth schema, version 26: a fenced write in one statement.
--
-- A mutation's intent was a transaction of five to seven round trips (BEGIN, the fence
-- check, the status row made and written, its events, the intent, COMMIT), twice for every
-- new container; a status write alone, five. These functions do the same writes in the
-- same order as one statement, which is its own transaction (the pool is autocommit), or
-- the first statement of a longer fenced transaction (a revision served with its phase):
--
-- * `berth_hold_term`: the fence. The term row held FOR SHARE until the transaction ends (a
--   new leader's claim waits for it), or SQLSTATE BF001 when the term is over or another
--   holder has it: the gateway raises Deposed, and nothing of the transaction is written.
-- * `berth_write_status`: the whole status row (made first when `create_row`) from the
--   JSON of the gateway's StatusWrite: the one place its columns are written.
-- * `berth_fenced_write`: the fence, the status row (if any) and its events; every fenced
--   transaction of the gateway begins with it (the named query `fenced_write`).
-- * `berth_commit_intent`: that and the mutation's intent; returns the intent's id.

CREATE FUNCTION berth_hold_term(wanted_cluster text, wanted_term bigint, node text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    -- The holder is checked with the term: a term number can be granted twice (a
    -- primary's last claim lost in a failover, the same number claimed again on the
    -- promoted standby), and only the holder the database knows may write in it.
    PERFORM 1 FROM berth_leader
    WHERE cluster = wanted_cluster AND term = wanted_term AND holder_id::text = node
    FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'term % of cluster % is over, or not this node''s',
            wanted_term, quote_literal(wanted_cluster)
            USING ERRCODE = 'BF001';
    END IF;
END
$$;

CREATE FUNCTION berth_write_status(status jsonb, wanted_term bigint, create_row boolean)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    wanted deployment_status := jsonb_populate_record(NULL::deployment_status, status);
BEGIN
    IF create_row THEN
        INSERT INTO deployment_status (name, desired_replicas, leader_term)
        VALUES (wanted.name, wanted.desired_replicas, wanted_term)
        ON CONFLICT (name) DO NOTHING;
    END IF;
    UPDATE deployment_status
    SET phase = wanted.phase,
        phase_progress = wanted.phase_progress,
        phase_metadata = wanted.phase_metadata,
        phase_updated_at = CASE WHEN phase IS DISTINCT FROM wanted.phase THEN now()
                                ELSE phase_updated_at END,
        observed_generation = wanted.observed_generation,
        desired_replicas = wanted.desired_replicas,
        ready_replicas = wanted.ready_replicas,
        message = wanted.message,
        failure_kind = wanted.failure_kind,
        attempts = wanted.attempts,
        next_attempt_at = wanted.next_attempt_at,
        leader_term = wanted_term,
        restart_count = wanted.restart_count,
        replica_restarts = wanted.replica_restarts,
        rollout_started_at = wanted.rollout_started_at,
        replicas = wanted.replicas,
        last_converged_at = CASE WHEN wanted.phase = 'active' THEN now()
                                 ELSE last_converged_at END,
        -- a settled phase ends the generation's stuck count (see mark_stuck; model/phases.py
        -- SETTLED_PHASES lists the same)
        stuck_resumes = CASE WHEN wanted.phase IN ('active', 'failed', 'rolled_back') THEN 0
                             ELSE stuck_resumes END,
        updated_at = now()
    WHERE name = wanted.name;
END
$$;

CREATE FUNCTION berth_fenced_write(
    wanted_cluster text, wanted_term bigint, node text, status jsonb, create_row boolean,
    events jsonb
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM berth_hold_term(wanted_cluster, wanted_term, node);
    IF status IS NOT NULL THEN
        PERFORM berth_write_status(status, wanted_term, create_row);
    END IF;
    PERFORM berth_insert_events(events, wanted_term);
END
$$;

CREATE FUNCTION berth_commit_intent(
    wanted_cluster text, wanted_term bigint, node text, wanted_deployment text,
    wanted_action text, wanted_target text, status jsonb, create_row boolean, events jsonb
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    intent_id bigint;
BEGIN
    PERFORM berth_fenced_write(wanted_cluster, wanted_term, node, status, create_row, events);
    INSERT INTO berth_mutations (cluster, term, node_id, deployment, action, target)
    VALUES (wanted_cluster, wanted_term, node::uuid, wanted_deployment, wanted_action,
            wanted_target)
    RETURNING id INTO intent_id;
    RETURN intent_id;
END
$$;
