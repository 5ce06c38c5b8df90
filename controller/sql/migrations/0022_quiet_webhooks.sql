-- Berth schema, version 22: webhooks cost nothing while no webhook listens. Schema 10's
-- trigger notified `berth_webhooks` after every INSERT statement into webhook_deliveries,
-- whether it queued a row or none, so every phase change of every deployment woke the
-- webhook sender, which then claimed nothing: four round trips per deployment of a cold
-- converge, for no webhook at all. Now the notification goes with a queued delivery only,
-- and a phase change builds its payload only when an enabled webhook exists.

CREATE OR REPLACE FUNCTION berth_webhooks_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM queued) THEN
        PERFORM pg_notify('berth_webhooks', '');
    END IF;
    RETURN NULL;
END
$$;
DROP TRIGGER berth_30_notify ON webhook_deliveries;
CREATE TRIGGER berth_30_notify AFTER INSERT ON webhook_deliveries
    REFERENCING NEW TABLE AS queued
    FOR EACH STATEMENT EXECUTE FUNCTION berth_webhooks_notify();

CREATE OR REPLACE FUNCTION berth_status_webhooks() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhooks WHERE enabled) THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' OR NEW.phase IS DISTINCT FROM OLD.phase THEN
        PERFORM berth_queue_deliveries(NEW.phase, NEW.name, jsonb_build_object(
            'event', NEW.phase,
            'deployment', NEW.name,
            'phase', NEW.phase,
            'previous_phase', CASE WHEN TG_OP = 'UPDATE' THEN OLD.phase END,
            'message', NEW.message,
            'generation', NEW.observed_generation,
            'ready_replicas', NEW.ready_replicas,
            'desired_replicas', NEW.desired_replicas,
            'serving_revision', NEW.serving_revision,
            'at', clock_timestamp()));
    END IF;
    RETURN NULL;
END
$$;
