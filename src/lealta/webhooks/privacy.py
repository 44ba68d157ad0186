"""Webhook deliveries keep the event payload (with the customer id) and the receiver's
answer: on erasure they are scrubbed of the member's data like the outbox they come from."""

from lealta.privacy import registry

registry.scrub_columns(
    "webhook_deliveries", "payload", "last_response", "last_error", member_column=None
)
registry.scrub_columns("webhook_attempts", "response_excerpt", "error", member_column=None)
