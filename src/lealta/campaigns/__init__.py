"""Campaigns: a segment, a time window, channels and content, sent throttled to its members."""
