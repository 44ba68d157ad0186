"""Tiers: qualification, upgrades, period-end reviews and progress toward the next tier."""
