"""Typed domain events: what happened, written with one :func:`~lealta.outbox.service.emit`
in the transaction that made it happen, and the registry of subscribers that react to them.
"""
