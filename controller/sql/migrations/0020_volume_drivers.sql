-- Berth schema, version 20: a named volume may name its driver (`volumes[].driver`). Without
-- one it is the `local` driver's: on a swarm it lives on one node, and a deployment with
-- more than one replica is refused by the swarm runtime naming the field; a driver that
-- shares a volume across nodes (a volume plugin) lets the replicas run on several nodes.
-- Version 12's workload check is patched in place, as version 7 patched the image check,
-- rather than copied whole: the patch fails loudly if the text it changes is not found.
DO $$
DECLARE
    body text;
BEGIN
    body := pg_get_functiondef('berth_validate_workload()'::regprocedure);
    body := replace(body,
        'IF key NOT IN (''name'', ''source'', ''target'', ''read_only'', ''retain'') THEN',
        'IF key NOT IN (''name'', ''source'', ''target'', ''read_only'', ''retain'', ''driver'') THEN');
    body := replace(body,
        'is not a known field (name, source, target, read_only, retain)',
        'is not a known field (name, source, target, read_only, retain, driver)');
    body := replace(body,
        'must be an object {"name" or "source", "target", "read_only", "retain"}',
        'must be an object {"name" or "source", "target", "read_only", "retain", "driver"}');
    body := replace(body,
        E'        seen := seen || (item ->> ''target'');\n',
        E'        IF item ? ''driver'' AND item ? ''source'' THEN\n'
        || E'            PERFORM berth_refuse(format(''volumes[%s].driver'', item_index), ''applies to named volumes only'');\n'
        || E'        END IF;\n'
        || E'        IF item ? ''driver'' AND NOT (jsonb_typeof(item -> ''driver'') = ''string''\n'
        || E'                AND item ->> ''driver'' ~ ''^[a-z0-9][a-z0-9._/:-]{0,127}$'') THEN\n'
        || E'            PERFORM berth_refuse(format(''volumes[%s].driver'', item_index),\n'
        || E'                format(''must name a volume driver (a-z, 0-9, ".", "_", "/", ":", "-"), got %s'', item -> ''driver''));\n'
        || E'        END IF;\n'
        || E'        seen := seen || (item ->> ''target'');\n');
    IF position('retain, driver)' IN body) = 0 OR position('volumes[%s].driver' IN body) = 0 THEN
        RAISE EXCEPTION 'migration 20: the volume checks of berth_validate_workload were not found';
    END IF;
    EXECUTE body;
END
$$;

COMMENT ON COLUMN deployments.volumes IS
    'Mounts: a named volume {"name": "data", "target": "/data", "read_only": false, "retain": true, "driver": "local"} (made by Berth, shared by the replicas, kept across replacements, removed on delete only when retain is false; on a swarm a local volume lives on one node, and only a driver that shares it across nodes lets more than one replica use it) or a bind {"source": "/srv/x", "target": "/x", "read_only": true} of a host path under BERTH_ALLOWED_BIND_PATHS.';
