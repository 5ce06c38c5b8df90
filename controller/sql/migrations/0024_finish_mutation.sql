-- Berth schema, version 24: a mutation's outcome in one statement. The gateway sent a
-- transaction of four or five round trips after every Docker call (BEGIN, the outcome, the
-- creation record or its removal, the events, COMMIT); `berth_finish_mutation` does the
-- same writes as one statement, which is its own transaction (the pool is autocommit).
-- `berth_insert_events` is the one place events are inserted: the named query
-- `insert_events` calls it too.

CREATE FUNCTION berth_insert_events(events jsonb, wanted_term bigint)
RETURNS void LANGUAGE sql AS $$
    -- in the list's order: the rows are made in `position` order, so their ids and times
    -- ascend with it
    INSERT INTO deployment_events
        (deployment, generation, kind, level, phase_from, phase_to, action, message, metadata,
         leader_term)
    SELECT e.deployment, e.generation, e.kind, e.level, e.phase_from, e.phase_to, e.action,
           e.message, coalesce(e.metadata, '{}'::jsonb), wanted_term
    FROM jsonb_array_elements(events) WITH ORDINALITY AS item(event, position),
         jsonb_to_record(item.event) AS e(deployment text, generation bigint, kind text,
             level text, phase_from text, phase_to text, action text, message text,
             metadata jsonb)
    ORDER BY item.position;
$$;

CREATE FUNCTION berth_finish_mutation(
    mutation_id bigint, wanted_outcome text, called_at_s float8, created text, removed text,
    wanted_deployment text, target text, wanted_term bigint, events jsonb
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE berth_mutations
    SET finished_at = clock_timestamp(), outcome = wanted_outcome,
        called_at = to_timestamp(called_at_s)
    WHERE id = mutation_id;
    IF created IS NOT NULL THEN  -- this container is Berth's
        INSERT INTO berth_containers (container_id, deployment, name, term)
        VALUES (created, wanted_deployment, target, wanted_term)
        ON CONFLICT (container_id) DO NOTHING;
    END IF;
    IF removed IS NOT NULL THEN
        DELETE FROM berth_containers WHERE container_id = removed;
    END IF;
    PERFORM berth_insert_events(events, wanted_term);
END
$$;
