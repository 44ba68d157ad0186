"""The points ledger: append-only entries, FIFO lots, balances kept in the same transaction."""
