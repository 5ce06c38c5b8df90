"""Reading the load tools' reports (controller.gateways.load_tools), from their real output."""

from __future__ import annotations

import pytest

from controller.gateways import load_tools

WRK = """Running 2m test @ http://127.0.0.1:8080/
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     9.31ms    4.86ms  96.01ms   77.53%
  171266 requests in 1.50m, 48.17MB read
  Socket errors: connect 0, read 25, write 0, timeout 4
  Non-2xx or 3xx responses: 13
Requests/sec:   1902.95
"""
HEY = """
Summary:
  Total:	20.0031 secs
  Slowest:	1.2471 secs
  Requests/sec:	1300.1

Status code distribution:
  [200]	26003 responses
  [502]	2 responses

Error distribution:
  [3]	Get "http://a/": read tcp 127.0.0.1:1->127.0.0.1:2: read: connection reset by peer
"""


def test_wrk_and_hey_reports_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(load_tools, "_run", lambda argv, seconds: WRK)
    report = load_tools.wrk("127.0.0.1:8080", "a.test", 16, 90)
    assert (report.requests, report.errors, report.non_2xx, report.failed) == (171266, 29, 13, 42)
    assert report.slowest_s == pytest.approx(0.09601)
    monkeypatch.setattr(load_tools, "_run", lambda argv, seconds: HEY)
    report = load_tools.hey("127.0.0.1:8080", "a.test", 8, 20)
    assert (report.requests, report.errors, report.non_2xx) == (26008, 3, 2)
    assert "connection reset by peer" in report.detail
    assert report.slowest_s == pytest.approx(1.2471)
