"""The API's OpenAPI document tells the truth: a property-based fuzzer (schemathesis) sends
requests generated from the served document to a real API on a real Postgres, with a write
token, and finds no server error, no status the document does not declare, no answer
outside its declared schema and content type, and a correct `Allow` on 405. Bounded: a few
examples per operation here (the README's figures come from a long run)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.app.api_server import ApiServer
from controller.gateways.docker_engine import DockerGateway
from controller.gateways.docker_runtime import DockerRuntime
from controller.gateways.postgres import Database
from controller.gateways.processes import free_port
from tests.integration.conftest import RUN_ID, fresh_database, settings_for

CHECKED = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "allow_header_conformance",
    "unsupported_method",
)
EXAMPLES = 12


# The stream never ends by itself (the stream tests cover it); every other operation.
@pytest.fixture(scope="module")
def served(postgres_server_url: str) -> Iterator[tuple[int, str]]:
    """An API on its own database (one deployment in it), and a write token."""
    with fresh_database(postgres_server_url, "doc") as url:
        database = Database(url, pool_size=2)
        database.schema.migrate()
        secret, _ = database.api.create_token("fuzzer", "write")
        database.schema.execute_sql(
            "INSERT INTO deployments (name, image) VALUES ('web', 'berth-example/busybox:1')"
        )
        port = free_port()
        gateway = DockerGateway(pool_size=2)
        settings = settings_for(f"doc{RUN_ID}", url, api_addr=f"127.0.0.1:{port}")
        server = ApiServer(settings, url, DockerRuntime(gateway))
        server.start()
        yield port, secret
        server.stop()
        gateway.close()
        database.close()


def test_every_answer_is_declared(served: tuple[int, str], tmp_path: Path) -> None:
    """Schemathesis's own CLI, as an operator would run it: every phase (the schema's
    coverage cases, generated ones, stateful sequences) with these checks."""
    port, secret = served
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("st")),
            "run",
            f"http://127.0.0.1:{port}/api/v1/openapi.json",
            "--header",
            f"Authorization: Bearer {secret}",
            "--checks",
            ",".join(CHECKED),
            "--max-examples",
            str(EXAMPLES),
            "--exclude-path",
            "/api/v1/stream",  # it never ends by itself (the stream tests cover it)
            "--request-timeout",
            "10",
            "--seed",
            "7",
            "--no-color",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false"},
        cwd=tmp_path,  # its example cache stays out of the checkout
    )
    summary = result.stdout[-4000:]
    assert result.returncode == 0, summary
    assert "Tested: 19" in result.stdout, summary
