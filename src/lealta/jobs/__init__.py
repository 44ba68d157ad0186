"""Scheduled work: pending releases, expiries and tier reviews."""
