"""Referrals: codes and links, two-sided rewards, fraud checks and the review queue."""
