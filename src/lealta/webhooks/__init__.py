"""Outbound webhooks: signed ``POST`` requests to registered endpoints for domain events.

- :mod:`lealta.webhooks.signing`: the pure parts (payload shape, HMAC signature, filters).
- :mod:`lealta.webhooks.service`: endpoints, deliveries, replay, failure tracking.
- :mod:`lealta.webhooks.tasks`: the outbox subscriber that fans an event out to one
  ``webhooks.deliver`` job per matching endpoint, and that job (the HTTP request).
- :mod:`lealta.webhooks.api`, :mod:`lealta.webhooks.cli`: the edges; the console page lives in
  ``lealta.web.admin.routes_webhooks``.
"""
