"""Rewards catalogue, redemption and threshold rewards."""
