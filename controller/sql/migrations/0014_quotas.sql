-- Berth schema, version 14: quotas. An administrator caps what the deployments carrying a
-- label value (e.g. team=payments) may ask for in all: replicas, memory and CPUs. The
-- database refuses the write that would pass a cap, naming the field, the label and the
-- figures. A quota lowered below what is already declared refuses the next write that
-- does not come back under it; it removes nothing. (A deployment declared before its
-- quota without a memory or CPU limit counts as 0 until it is written again.)

CREATE TABLE quotas (
    label            text NOT NULL CONSTRAINT quotas_label_not_empty CHECK (label <> ''),
    value            text NOT NULL,
    max_replicas     integer CONSTRAINT quotas_max_replicas_range CHECK (max_replicas >= 0),
    max_memory_bytes bigint CONSTRAINT quotas_max_memory_range CHECK (max_memory_bytes >= 0),
    max_cpus         numeric CONSTRAINT quotas_max_cpus_range CHECK (max_cpus >= 0),
    note             text NOT NULL DEFAULT '',
    PRIMARY KEY (label, value)
);

COMMENT ON TABLE quotas IS
    'Caps on the sum over deployments whose labels have label=value: replicas, replicas x resources.memory, replicas x resources.cpus. Null: no cap. Writable only by the administrator role.';

CREATE FUNCTION berth_enforce_quotas() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    quota quotas%ROWTYPE;
    total_replicas bigint;
    total_memory numeric;
    total_cpus numeric;
BEGIN
    FOR quota IN SELECT q.* FROM quotas q WHERE NEW.labels ->> q.label = q.value ORDER BY q.label LOOP
        -- Writes under one quota take turns, so two cannot both fit in the last room.
        PERFORM pg_advisory_xact_lock(hashtext('berth_quota:' || quota.label || '=' || quota.value));
        SELECT coalesce(sum(d.replicas), 0),
               coalesce(sum(d.replicas * berth_memory_bytes(d.resources -> 'memory')), 0),
               coalesce(sum(d.replicas * (d.resources ->> 'cpus')::numeric), 0)
        INTO total_replicas, total_memory, total_cpus
        FROM deployments d
        WHERE d.name <> NEW.name AND d.labels ->> quota.label = quota.value;
        total_replicas := total_replicas + NEW.replicas;
        total_memory := total_memory + NEW.replicas * coalesce(berth_memory_bytes(NEW.resources -> 'memory'), 0);
        total_cpus := total_cpus + NEW.replicas * coalesce((NEW.resources ->> 'cpus')::numeric, 0);
        IF quota.max_replicas IS NOT NULL AND total_replicas > quota.max_replicas THEN
            PERFORM berth_refuse('replicas', format('%s=%s would run %s replicas in all; its quota is %s',
                quota.label, quota.value, total_replicas, quota.max_replicas));
        END IF;
        IF quota.max_memory_bytes IS NOT NULL AND NEW.replicas > 0 AND NOT NEW.resources ? 'memory' THEN
            PERFORM berth_refuse('resources.memory', format('is required: %s=%s has a memory quota (%s bytes)',
                quota.label, quota.value, quota.max_memory_bytes));
        END IF;
        IF quota.max_cpus IS NOT NULL AND NEW.replicas > 0 AND NOT NEW.resources ? 'cpus' THEN
            PERFORM berth_refuse('resources.cpus', format('is required: %s=%s has a CPU quota (%s)',
                quota.label, quota.value, quota.max_cpus));
        END IF;
        IF quota.max_memory_bytes IS NOT NULL AND total_memory > quota.max_memory_bytes THEN
            PERFORM berth_refuse('resources.memory', format('%s=%s would use %s bytes of memory in all; its quota is %s',
                quota.label, quota.value, total_memory, quota.max_memory_bytes));
        END IF;
        IF quota.max_cpus IS NOT NULL AND total_cpus > quota.max_cpus THEN
            PERFORM berth_refuse('resources.cpus', format('%s=%s would use %s CPUs in all; its quota is %s',
                quota.label, quota.value, total_cpus, quota.max_cpus));
        END IF;
    END LOOP;
    RETURN NEW;
END
$$;

-- Last of the checks: the values it sums are known to be well formed.
CREATE TRIGGER berth_19_quotas BEFORE INSERT OR UPDATE ON deployments
    FOR EACH ROW EXECUTE FUNCTION berth_enforce_quotas();
