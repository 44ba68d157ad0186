"""Event ingestion: orders, refunds and custom events, idempotent and processed in event time."""
