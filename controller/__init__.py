"""Berth: keeps Docker containers in line with the deployments declared in PostgreSQL.

The package is a set of small flat modules; RECONCILIATION.md explains how they fit.
"""

__version__ = "0.1.0"
