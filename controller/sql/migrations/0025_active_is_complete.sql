-- Berth schema, version 25: an `active` status is complete, and the creation record is
-- written in one place.
--
-- A pass that began on an `active` deployment and wrote its row (a replica's health
-- changed, say) wrote the progress it started from, 0: the dashboard's bar and `berth
-- status` said "active 0%". The status writer now carries the recorded progress and holds
-- `active` at 100 (controller/loop/status.py); the database refuses anything else, naming
-- the rule, and rows already written that way are mended.
UPDATE deployment_status SET phase_progress = 100
WHERE phase = 'active' AND phase_progress <> 100;

ALTER TABLE deployment_status ADD CONSTRAINT deployment_status_active_is_complete
    CHECK (phase <> 'active' OR phase_progress = 100);

-- The creation record (this container is Berth's): written with a create's outcome
-- (berth_finish_mutation) and by a resolved or re-written create (the named query
-- `record_container`); both call this.
CREATE FUNCTION berth_record_container(
    created text, wanted_deployment text, target text, wanted_term bigint
) RETURNS void LANGUAGE sql AS $$
    INSERT INTO berth_containers (container_id, deployment, name, term)
    VALUES (created, wanted_deployment, target, wanted_term)
    ON CONFLICT (container_id) DO NOTHING;
$$;

CREATE OR REPLACE FUNCTION berth_finish_mutation(
    mutation_id bigint, wanted_outcome text, called_at_s float8, created text, removed text,
    wanted_deployment text, target text, wanted_term bigint, events jsonb
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE berth_mutations
    SET finished_at = clock_timestamp(), outcome = wanted_outcome,
        called_at = to_timestamp(called_at_s)
    WHERE id = mutation_id;
    IF created IS NOT NULL THEN  -- this container is Berth's
        PERFORM berth_record_container(created, wanted_deployment, target, wanted_term);
    END IF;
    IF removed IS NOT NULL THEN
        DELETE FROM berth_containers WHERE container_id = removed;
    END IF;
    PERFORM berth_insert_events(events, wanted_term);
END
$$;
