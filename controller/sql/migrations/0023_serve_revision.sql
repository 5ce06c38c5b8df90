-- Berth schema, version 23: a spec becoming the serving revision in one round trip. The
-- gateway sent five statements for it (the serving row locked, superseded, the next number,
-- the new row, the status row pointed at it) on every activation; this function runs the
-- same steps, in the same order, inside the caller's fenced transaction.

CREATE FUNCTION berth_serve_revision(
    wanted_deployment text, wanted_generation bigint, wanted_spec jsonb, wanted_hash text,
    wanted_image text
) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    serving_now integer;
    serving_hash text;
    chosen integer;
BEGIN
    SELECT revision, spec_hash INTO serving_now, serving_hash FROM deployment_revisions
    WHERE deployment = wanted_deployment AND outcome = 'serving' FOR UPDATE;
    IF serving_now IS NOT NULL AND serving_hash = wanted_hash THEN
        chosen := serving_now;
    ELSE
        UPDATE deployment_revisions SET outcome = 'superseded'
        WHERE deployment = wanted_deployment AND outcome = 'serving';
        SELECT coalesce(max(revision), 0) + 1 INTO chosen FROM deployment_revisions
        WHERE deployment = wanted_deployment;
        INSERT INTO deployment_revisions
            (deployment, revision, generation, spec, spec_hash, image, image_id, outcome)
        VALUES (wanted_deployment, chosen, wanted_generation, wanted_spec, wanted_hash,
                wanted_image, NULL, 'serving');
    END IF;
    UPDATE deployment_status SET serving_revision = chosen WHERE name = wanted_deployment;
    RETURN chosen;
END
$$;
