"""The webhook sender: the leader delivers the outbox, at least once, never in the loop.

Started by the daemon in a thread of its own. Deliveries are rows of `webhook_deliveries`,
written by triggers in the same transaction as the status or build change that causes
them, so none is lost if the daemon dies, and a new leader carries on where the old one
stopped (a claim is a lease of `timeout + LEASE_MARGIN_S`: an unfinished one is claimed
again when it expires). The thread wakes on `berth_webhooks` notifications and every
`POLL_S` (for retries coming due); as the leader it claims due deliveries and POSTs them
from a small pool of senders, so a dead endpoint holds one sender for at most
BERTH_WEBHOOK_TIMEOUT_S and never slows reconciliation or the other endpoints.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import structlog

from controller.loop.ports import FenceSource, Listen
from controller.loop.ports_webhooks import DeliveryStore, WebhookPoster
from controller.loop.watchers import follow_notifications
from controller.model.errors import BerthError, Deposed, WebhookUnreachable
from controller.model.settings_jobs import ApiSettings
from controller.observability.metrics import WEBHOOK_DELIVERIES
from controller.policy.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    after_attempt,
    signature,
)

log = structlog.get_logger("berth.webhooks")
POLL_S = 1.0
SENDERS = 4
LEASE_MARGIN_S = 30.0


class WebhookSender:
    def __init__(
        self,
        settings: ApiSettings,
        store: DeliveryStore,
        poster: WebhookPoster,
        leadership: FenceSource,
        stopping: threading.Event,
        listen: Listen,
    ) -> None:
        self.settings = settings
        self.store = store
        self.poster = poster
        self.leadership = leadership
        self.stopping = stopping
        self.listen = listen
        self._pool = ThreadPoolExecutor(SENDERS, thread_name_prefix="webhook")
        self._busy = threading.Semaphore(SENDERS)

    def run(self) -> None:
        """Wake on `berth_webhooks` and every POLL_S (retries coming due) until stopped."""
        follow_notifications(
            self.listen,
            "listen_webhooks",
            self.stopping,
            lambda _payload: self.dispatch(),
            self.dispatch,
            POLL_S,
        )
        self._pool.shutdown(wait=False, cancel_futures=True)

    def dispatch(self) -> int:
        """As the leader, claim as many due deliveries as there are free senders and hand
        them out; the number handed out."""
        try:
            self.leadership.fence()
        except Deposed:
            return 0
        free = 0
        while self._busy.acquire(blocking=False):
            free += 1
        if free == 0:
            return 0
        lease_s = self.settings.webhook_timeout_s + LEASE_MARGIN_S
        claimed: list[dict[str, Any]] = []
        try:
            claimed = self.store.claim_deliveries(free, lease_s)
        except BerthError as error:
            log.warning("could not claim webhook deliveries", error=str(error))
        finally:
            for _ in range(free - len(claimed)):
                self._busy.release()
        for delivery in claimed:
            self._pool.submit(self._deliver_and_release, delivery)
        return len(claimed)

    def _deliver_and_release(self, delivery: dict[str, Any]) -> None:
        try:
            self.deliver(delivery)
        except BerthError as error:  # the lease expires; the delivery is claimed again
            log.warning("webhook delivery not recorded", delivery=delivery["id"], error=str(error))
        finally:
            self._busy.release()

    def deliver(self, delivery: dict[str, Any]) -> None:
        """POST one delivery and record what came of it."""
        body = json.dumps(
            {"delivery": delivery["id"], **delivery["payload"]}, separators=(",", ":")
        ).encode()
        headers = {
            SIGNATURE_HEADER: signature(delivery["secret"], body),
            DELIVERY_HEADER: str(delivery["id"]),
            EVENT_HEADER: delivery["event"],
        }
        status_code: int | None = None
        error: str | None = None
        if not delivery["enabled"]:
            error = "webhook disabled"
        else:
            try:
                status_code = self.poster.post(delivery["url"], body, headers)
            except WebhookUnreachable as unreachable:
                error = str(unreachable)
        if status_code is not None and not 200 <= status_code < 300:
            error = f"answered {status_code}"
        settings = self.settings
        decision = after_attempt(
            status_code,
            int(delivery["attempts"]),
            settings.webhook_max_attempts,
            settings.webhook_retry_base_s,
            settings.webhook_retry_max_s,
        )
        self.store.finish_delivery(
            delivery["id"], decision.status, status_code, error, decision.retry_in_s
        )
        outcome = "retried" if decision.status == "pending" else decision.status
        WEBHOOK_DELIVERIES.labels(outcome=outcome).inc()
        log.info(
            "webhook delivery",
            delivery=delivery["id"],
            deployment=delivery["deployment"],
            webhook_event=delivery["event"],
            outcome=outcome,
            status_code=status_code,
            attempt=delivery["attempts"],
        )
