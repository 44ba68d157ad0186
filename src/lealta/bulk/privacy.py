"""Bulk operations keep one report row per input row (the member's external id, the row as
sent, the outcome): scrubbed on erasure, the counts and outcomes kept."""

from lealta.privacy import registry

registry.scrub_columns(
    "bulk_operation_rows", "external_id", "payload", "message", member_column=None
)
