"""Inbound deliveries (Shopify webhooks) keep the customer id and the stored answer: scrubbed
on erasure. Anonymous events attached to the member carry ``member_id`` and are swept with
the member's other rows."""

from lealta.privacy import registry

registry.scrub_columns("inbound_deliveries", "customer_id", "response", member_column=None)
