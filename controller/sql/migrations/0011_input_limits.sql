-- Berth schema, version 11: limits found by trying hostile specs against version 10.
-- * env keys must be variable names (`{"A=B": "c"}` used to set A to "B=c");
-- * sizes are bounded: one env value 32 KiB, all of env 128 KiB (a 1 MB value used to be
--   accepted, then crash-loop with "argument list too long"), label keys 256 bytes and
--   values 4 KiB;
-- * a fixed host port (and protocol) belongs to one deployment: the second is refused,
--   naming the deployment that holds it (it used to fail at start with Docker's "driver
--   failed programming external connectivity").

CREATE FUNCTION berth_validate_limits() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    entry record;
    total integer := 0;
    port jsonb;
    port_index integer := 0;
    holder text;
BEGIN
    FOR entry IN SELECT e.key, e.value #>> '{}' AS value FROM jsonb_each(NEW.env) e LOOP
        IF entry.key !~ '^[A-Za-z_][A-Za-z0-9_]*$' THEN
            PERFORM berth_refuse(format('env.%s', entry.key),
                'keys must be variable names: letters, digits and _, not starting with a digit');
        END IF;
        IF octet_length(entry.value) > 32768 THEN
            PERFORM berth_refuse(format('env.%s', entry.key),
                format('is %s bytes; one value may have at most 32768', octet_length(entry.value)));
        END IF;
        total := total + octet_length(entry.key) + octet_length(entry.value) + 2;
    END LOOP;
    IF total > 131072 THEN
        PERFORM berth_refuse('env', format('is %s bytes in all; at most 131072', total));
    END IF;
    FOR entry IN SELECT e.key, e.value #>> '{}' AS value FROM jsonb_each(NEW.labels) e LOOP
        IF octet_length(entry.key) > 256 THEN
            PERFORM berth_refuse('labels', format('a key of %s bytes; at most 256', octet_length(entry.key)));
        END IF;
        IF octet_length(entry.value) > 4096 THEN
            PERFORM berth_refuse(format('labels.%s', entry.key),
                format('is %s bytes; a label value may have at most 4096', octet_length(entry.value)));
        END IF;
    END LOOP;
    IF EXISTS (SELECT 1 FROM jsonb_array_elements(NEW.ports) p WHERE p.value ? 'host'
               AND jsonb_typeof(p.value -> 'host') = 'number') THEN
        -- Writes that publish fixed ports take turns, so two cannot both find the port free.
        PERFORM pg_advisory_xact_lock(hashtext('berth_host_ports'));
        FOR port IN SELECT p.value FROM jsonb_array_elements(NEW.ports) p LOOP
            IF jsonb_typeof(port -> 'host') = 'number' THEN
                SELECT d.name INTO holder
                FROM deployments d, jsonb_array_elements(d.ports) other
                WHERE d.name <> NEW.name
                  AND other.value ->> 'host' = port ->> 'host'
                  AND coalesce(other.value ->> 'protocol', 'tcp') = coalesce(port ->> 'protocol', 'tcp')
                LIMIT 1;
                IF holder IS NOT NULL THEN
                    PERFORM berth_refuse(format('ports[%s].host', port_index),
                        format('host port %s/%s is published by deployment %s', port ->> 'host',
                               coalesce(port ->> 'protocol', 'tcp'), holder));
                END IF;
            END IF;
            port_index := port_index + 1;
        END LOOP;
    END IF;
    RETURN NEW;
END
$$;

-- After the shape checks of berth_10_validate (types are known to be right here).
CREATE TRIGGER berth_12_validate_limits BEFORE INSERT OR UPDATE ON deployments
    FOR EACH ROW EXECUTE FUNCTION berth_validate_limits();
