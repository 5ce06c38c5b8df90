"""Observability: Prometheus metrics and structured logs; imported by gateways, loop
and app."""
