"""A short request path for docker-py on a unix socket: its calls sent on its own pool.

Called by `controller.gateways.docker_engine` when its `APIClient` is built. docker-py sends
every call through requests' `Session.request`, whose per-call work (merging the session's
settings, cookies and hooks into a prepared request, adapters, building the response and
reading its cookies) is about half of a call's client CPU and does nothing for a unix
socket: no cookies, proxies, auth or redirects. A py-spy profile of a cold converge of 200
put 42% of the daemon's on-CPU samples in the Docker client, and a plain list costs 0.55 ms
of client CPU through requests against 0.27 ms on the same urllib3 pool directly.

So a call that needs none of that (not streamed, a body of text or bytes, no per-call auth,
files, cookies or proxies) goes straight to the urllib3 pool docker-py's own unix adapter
made, and comes back as a `requests.Response`: docker-py reads it and raises its typed
errors (`create_api_error_from_http_exception`) exactly as before, and a failure to reach the
engine is raised as requests' own `ConnectionError` or `Timeout`, which `translated` turns
into `DockerUnavailable`. Any other call (event streams, logs, attach, a build's context) is
left to requests. A TCP engine keeps requests for everything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import docker
import docker.transport
import requests
import requests.structures
import requests.utils
import urllib3
import urllib3.exceptions

# The keyword arguments the short path handles; any other (given a value) goes to requests.
_HANDLED = frozenset({"params", "data", "headers", "timeout", "stream", "allow_redirects"})


def _query(params: Mapping[str, Any] | None) -> str:
    """As requests encodes `params`: None values left out, lists repeated."""
    if not params:
        return ""
    kept = [(key, value) for key, value in params.items() if value is not None]
    return urlencode(kept, doseq=True)


def _timeout(value: Any) -> urllib3.Timeout:
    if isinstance(value, tuple):
        connect, read = value
        return urllib3.Timeout(connect=connect, read=read)
    return urllib3.Timeout(connect=value, read=value)


def _response(url: str, raw: urllib3.BaseHTTPResponse) -> requests.Response:
    """urllib3's answer as the `requests.Response` docker-py reads (as requests builds it)."""
    response = requests.Response()
    response.status_code = raw.status
    response.headers = requests.structures.CaseInsensitiveDict(raw.headers)
    response.encoding = requests.utils.get_encoding_from_headers(response.headers)
    response.reason = raw.reason or ""
    response.url = url
    response._content = raw.data  # read whole: the connection is back in the pool
    return response


def short_path(api: docker.APIClient) -> bool:
    """Send `api`'s plain calls straight to its unix socket's pool; False (nothing changed)
    when the engine is not on a unix socket."""
    adapter = api.get_adapter(api.base_url)
    if not isinstance(adapter, docker.transport.UnixHTTPAdapter):
        return False
    through_requests: Callable[..., requests.Response] = api.request

    def request(method: str, url: str, **kwargs: Any) -> requests.Response:
        data = kwargs.get("data")
        if (
            kwargs.get("stream")
            or not isinstance(data, str | bytes | None)
            or any(value is not None for key, value in kwargs.items() if key not in _HANDLED)
        ):
            return through_requests(method, url, **kwargs)
        parts = urlsplit(url)
        query = "&".join(q for q in (parts.query, _query(kwargs.get("params"))) if q)
        headers = {str(key): str(value) for key, value in api.headers.items()}
        headers.update(kwargs.get("headers") or {})
        body = data.encode() if isinstance(data, str) else data
        try:
            raw = adapter.get_connection(api.base_url).urlopen(  # the one pool
                method,
                parts.path + (f"?{query}" if query else ""),
                body=body,
                headers=headers,
                timeout=_timeout(kwargs.get("timeout", api.timeout)),
                retries=False,
                redirect=False,
                preload_content=True,
            )
        except urllib3.exceptions.TimeoutError as error:
            raise requests.exceptions.Timeout(error) from error
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise requests.exceptions.ConnectionError(error) from error
        return _response(url, raw)

    api.request = request  # type: ignore[method-assign,assignment]
    return True
