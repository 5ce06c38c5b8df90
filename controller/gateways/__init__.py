"""Gateways: one per external system (Postgres, Docker, processes). Only they import the
drivers; they hand out typed values and Berth's typed errors."""
