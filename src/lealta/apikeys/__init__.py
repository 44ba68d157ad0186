"""API keys: scoped (``server`` writes and reads, ``read`` only reads), stored as digests."""
