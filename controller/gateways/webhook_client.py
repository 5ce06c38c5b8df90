"""The webhook gateway: POSTs a signed body to an endpoint, with a hard timeout.

Called by the webhook sender (`controller.loop.webhooks`); the only module that imports
httpx. Answers the status code; a connection failure or timeout is
`WebhookUnreachable` (transient: the sender retries the delivery later, it never retries
here, so one dead endpoint holds a sender for at most the timeout).
"""

from __future__ import annotations

import httpx

from controller.model.errors import WebhookUnreachable


class WebhookClient:
    def __init__(self, timeout_s: float) -> None:
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout_s), follow_redirects=False, trust_env=False
        )

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        try:
            response = self._client.post(
                url, content=body, headers={"Content-Type": "application/json", **headers}
            )
        except httpx.HTTPError as error:
            raise WebhookUnreachable(f"{type(error).__name__}: {error}") from error
        return response.status_code

    def close(self) -> None:
        self._client.close()
