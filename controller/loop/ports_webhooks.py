"""The webhook sender's ports: its outbox in Postgres and the HTTP client that delivers.
Implemented by `controller.gateways.postgres_api.ApiStore` and
`controller.gateways.webhook_client.WebhookClient`; used by `controller.loop.webhooks`.
"""

from __future__ import annotations

from typing import Any, Protocol


class DeliveryStore(Protocol):
    """The webhooks' outbox: claims on a lease, outcomes (`loop/webhooks`)."""

    def claim_deliveries(self, limit: int, lease_s: float) -> list[dict[str, Any]]: ...

    def finish_delivery(
        self,
        delivery_id: int,
        status: str,
        status_code: int | None,
        error: str | None,
        retry_in_s: float = 0.0,
    ) -> None: ...


class WebhookPoster(Protocol):
    """POSTs a signed body; answers the status code (`gateways/webhook_client`)."""

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> int: ...
