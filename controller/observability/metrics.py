"""Prometheus metrics: every `berth_*` series, declared once, with bounded labels only.

Imported by the modules that count things (the controller loop, resync, status writer,
gateways, daemon); served by
`controller.app.http_server`. Deployment names are never labels: they are unbounded.
Every known label combination is created at import so no series is missing at start.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, Info, disable_created_metrics

from controller import __version__
from controller.model.claims import RefusalKind
from controller.model.outcome import FAILURES
from controller.model.phases import Phase
from controller.model.records import MutationAction
from controller.model.replicas import RestartReason

# The *_created series double the output and nobody graphs them (untyped in the library).
disable_created_metrics()  # type: ignore[no-untyped-call]

PHASES = tuple(str(phase) for phase in Phase)
ACTION_KINDS = tuple(str(action) for action in MutationAction)
RESTART_REASONS = tuple(str(reason) for reason in RestartReason)
RESULTS = ("ok", "error")
ERROR_KINDS = tuple(sorted(str(result) for result in FAILURES))

BUILD_INFO = Info("berth_build", "Berth's version")
BUILD_INFO.info({"version": __version__})

RECONCILE_PASSES = Counter("berth_reconcile_passes_total", "Reconcile passes, by scope", ["scope"])
RECONCILE_DURATION = Histogram(
    "berth_reconcile_duration_seconds",
    "Duration of reconcile passes, by scope",
    ["scope"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
RECONCILE_ERRORS = Counter(
    "berth_reconcile_errors_total", "Failed deployment passes, by error kind", ["kind"]
)
ACTIONS = Counter(
    "berth_actions_total", "Docker changes applied, by kind and result", ["kind", "result"]
)
DEPLOYMENTS_BY_PHASE = Gauge(
    "berth_deployments", "Deployments by phase at the last full resync", ["phase"]
)
REPLICAS_DESIRED = Gauge(
    "berth_replicas_desired", "Sum of desired replicas at the last full resync"
)
REPLICAS_READY = Gauge("berth_replicas_ready", "Sum of ready replicas at the last full resync")
DRIFT_DETECTED = Counter(
    "berth_drift_detected_total", "Deployments found needing work by a full resync"
)
LAST_FULL_RESYNC = Gauge(
    "berth_last_full_resync_timestamp_seconds", "Unix time of the last successful full resync"
)
QUEUE_DEPTH = Gauge("berth_workqueue_depth", "Deployments waiting in the work queue")
DATABASE_READ_ONLY = Gauge(
    "berth_database_read_only",
    "1 while the Postgres server this replica reached takes no writes (a standby in "
    "recovery, or read-only): no primary, so nothing converges",
)
DATA_PLANE_REFUSED = Gauge(
    "berth_data_plane_refused",
    "1 while this replica refuses to lead, by why: its engine belongs to another Berth "
    "database, the cluster runs on another engine, or the check could not be made",
    ["reason"],
)
STUCK_DEPLOYMENTS = Gauge(
    "berth_stuck_deployments", "Deployments found stuck in a moving phase at the last full resync"
)
STUCK_DETECTED = Counter(
    "berth_stuck_detected_total", "Times a deployment was found stuck and resumed"
)
CREATION_RECORDS_RESTORED = Counter(
    "berth_creation_records_restored_total",
    "Creation records the database had lost, written again for replicas whose proof holds",
)
CONTAINER_RESTARTS = Counter(
    "berth_container_restarts_total", "Replica restarts by Berth, by reason", ["reason"]
)
REPLICAS_IN_BACKOFF = Gauge(
    "berth_replicas_in_backoff", "Replicas waiting out a restart backoff at the last full resync"
)
DOCKER_CALLS = (
    "connect",
    "ping",
    "list",
    "inspect_image",
    "pull",
    "create",
    "inspect",
    "start",
    "restart",
    "remove",
    "logs",
    "events",
    "list_images",
    "remove_image",
)
DOCKER_DURATION = Histogram(
    "berth_docker_request_duration_seconds",
    "Docker API calls by Berth, by call",
    ["call"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
DOCKER_ERRORS = Counter(
    "berth_docker_errors_total", "Failed Docker API calls, by call and error kind", ["call", "kind"]
)
POSTGRES_DURATION = Histogram(
    "berth_postgres_query_duration_seconds",
    "Postgres statements and transactions by Berth, by operation",
    ["operation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
POSTGRES_ERRORS = Counter(
    "berth_postgres_errors_total",
    "Failed Postgres operations, by operation and error kind",
    ["operation", "kind"],
)
BUILD_STATUSES = ("queued", "succeeded", "failed", "cancelled", "dead")
BUILDS = Counter(
    "berth_builds_total",
    "Build attempts ended by this replica, by what followed (queued = retried)",
    ["status"],
)
BUILD_DURATION = Histogram(
    "berth_build_duration_seconds",
    "Duration of finished builds that ran (not reused), by status",
    ["status"],
    buckets=(1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
)
BUILDS_RUNNING = Gauge("berth_builds_running", "Builds running in this replica")
ROLLBACKS = Counter(
    "berth_rollbacks_total",
    "Start-first rollouts rolled back, by reason (progress_deadline, crash_loop)",
    ["reason"],
)
PROXY_CALLS = ("observe", "apply", "in_flight")
PROXY_DURATION = Histogram(
    "berth_proxy_request_duration_seconds",
    "Calls to the reverse proxy's admin API, by call",
    ["call"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
PROXY_ERRORS = Counter(
    "berth_proxy_errors_total", "Failed calls to the reverse proxy's admin API, by call", ["call"]
)
DRAINS_AT_LIMIT = Counter(
    "berth_drains_at_limit_total",
    "Drains that reached rollout.drain_s with requests still in flight to the leaving replicas",
)
CERTIFICATE_EXPIRY = Gauge(
    "berth_certificate_expiry_timestamp_seconds",
    "When the certificate of a host a `tls` route names expires (Unix time), by host",
    ["host"],
)
CERTIFICATES_ISSUED = Counter(
    "berth_certificates_issued_total",
    "ACME orders for route certificates, by outcome (issued, failed)",
    ["outcome"],
)
IS_LEADER = Gauge("berth_leader", "1 while this replica is the leader, else 0")
LEADER_TERM = Gauge("berth_leader_term", "The term this replica leads, or last led")
LEADER_CHANGES = Counter(
    "berth_leader_changes_total",
    "Times this replica became or stopped being the leader",
    ["change"],
)
API_REQUESTS = Counter(
    "berth_api_requests_total",
    "HTTP API requests answered, by route template, method and status class (2xx, 4xx, 5xx)",
    ["route", "method", "status"],
)
API_DURATION = Histogram(
    "berth_api_request_duration_seconds",
    "HTTP API request durations, by route template",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
STREAM_CLIENTS = Gauge(
    "berth_stream_clients", "Server-sent-event clients connected to this replica"
)
STREAM_DROPPED = Counter(
    "berth_stream_clients_cut_total",
    "Stream clients cut off because they fell too far behind (they resume with Last-Event-ID)",
)
WEBHOOK_STATUSES = ("delivered", "retried", "dead")
WEBHOOK_DELIVERIES = Counter(
    "berth_webhook_deliveries_total",
    "Webhook delivery attempts by this replica, by outcome (delivered, retried, dead)",
    ["outcome"],
)

API_DURATION.labels(route="other")  # unmatched /api paths; the app adds each route's series
for _outcome in WEBHOOK_STATUSES:
    WEBHOOK_DELIVERIES.labels(outcome=_outcome)
for _scope in ("full", "deployment"):
    RECONCILE_PASSES.labels(scope=_scope)
    RECONCILE_DURATION.labels(scope=_scope)
for _kind in ERROR_KINDS:
    RECONCILE_ERRORS.labels(kind=_kind)
for _action in ACTION_KINDS:
    for _result in RESULTS:
        ACTIONS.labels(kind=_action, result=_result)
for _phase in PHASES:
    DEPLOYMENTS_BY_PHASE.labels(phase=_phase)
for _call in DOCKER_CALLS:
    DOCKER_DURATION.labels(call=_call)
    for _kind in ("transient", "permanent"):
        DOCKER_ERRORS.labels(call=_call, kind=_kind)


def declare_postgres_operations(operations: tuple[str, ...]) -> None:
    """Create every operation's series at start (called by the gateway with its query names)."""
    for operation in operations:
        POSTGRES_DURATION.labels(operation=operation)
        for kind in ("transient", "permanent"):
            POSTGRES_ERRORS.labels(operation=operation, kind=kind)


for _reason in ("progress_deadline", "crash_loop"):
    ROLLBACKS.labels(reason=_reason)
for _outcome in ("issued", "failed"):
    CERTIFICATES_ISSUED.labels(outcome=_outcome)
for _call in PROXY_CALLS:
    PROXY_DURATION.labels(call=_call)
    PROXY_ERRORS.labels(call=_call)
for _status in BUILD_STATUSES:
    BUILDS.labels(status=_status)
    BUILD_DURATION.labels(status=_status)
for _reason in RESTART_REASONS:
    CONTAINER_RESTARTS.labels(reason=_reason)
for _refusal in RefusalKind:
    DATA_PLANE_REFUSED.labels(reason=str(_refusal))
for _change in ("elected", "deposed"):
    LEADER_CHANGES.labels(change=_change)
CLEANUP_REMOVED = Counter(
    "berth_cleanup_removed_total",
    "What the leader's clean-up removed, by kind (events, build_log_lines, networks, images)",
    ["kind"],
)
for _kind in ("events", "build_log_lines", "networks", "images"):
    CLEANUP_REMOVED.labels(kind=_kind)
