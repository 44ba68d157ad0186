"""Experiments: variants and a holdout inside a campaign, and their measured lift."""
