"""Who reacts to which domain event.

A capability (workflows, notifications, webhooks, segments, badges, …) registers a handler
per event type with :func:`subscribe`. The outbox dispatcher of the jobs worker
(:mod:`lealta.jobs.dispatch`) reads new outbox rows in id order and, for each subscriber that
:func:`subscribers_for` names, enqueues one ``outbox.deliver`` job (at most once per row and
subscriber); that job calls ``handler(ctx, event, message)`` with the job's
:class:`~lealta.jobs.tasks.JobContext`, the typed event and the row's
:class:`~lealta.jobs.dispatch.OutboxInfo`. Delivery is at least once, in no guaranteed order
between rows: a handler whose effect must not repeat keys it on ``ctx.effect_key``. The
handler runs in the job's transaction (``ctx.session``); one that calls the outside world or
needs its own retry policy enqueues a job of its own from there.

A subscriber registered in a module must be imported by the worker: add the module to
:data:`lealta.jobs.worker.TASK_MODULES`. By default a subscriber does not see backfilled
history (imported orders must not send e-mails); ``include_backfill=True`` opts in
(analytics roll-ups, segments). Backfilled rows reach such a subscriber in batches, one job
per dispatched batch (see :mod:`lealta.jobs.dispatch`): its handler is called row by row in
that job, or, if it registered one, its ``many`` handler once with all the batch's rows
(``many(ctx, [(event, message), ...])``, the roll-ups re-sync each member once).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lealta.outbox.events import EVENT_TYPES, DomainEvent, EventProcessed

Handler = Callable[..., Any]


Many = Callable[[Any, list[tuple[DomainEvent, Any]]], None]
"""``(ctx, [(event, message), ...])``: a subscriber's handler for a batch of backfilled rows."""

Wanted = Callable[[Any], bool]
"""``(session) -> bool``: whether a subscriber has anything to do right now (webhooks: is any
endpoint enabled?). Asked once per dispatched batch, so idle capabilities cost no job."""


@dataclass(frozen=True, slots=True)
class Subscriber:
    event_type: str
    name: str
    handler: Handler
    include_backfill: bool
    wanted: Wanted | None = None
    many: Many | None = None


_REGISTRY: dict[str, list[Subscriber]] = {}


def _type_of(event_type: str | type[DomainEvent]) -> str:
    return event_type if isinstance(event_type, str) else event_type.TYPE


def subscribe(
    event_type: str | type[DomainEvent],
    *,
    name: str,
    include_backfill: bool = False,
    wanted: Wanted | None = None,
    many: Many | None = None,
) -> Callable[[Handler], Handler]:
    """Register the decorated function for ``event_type`` under a unique ``name``.

    Registering the same name again for the same type replaces the first (a reloaded
    module does not subscribe twice).
    """
    topic = _type_of(event_type)

    def register(handler: Handler) -> Handler:
        subscribers = [s for s in _REGISTRY.get(topic, []) if s.name != name]
        subscribers.append(Subscriber(topic, name, handler, include_backfill, wanted, many))
        _REGISTRY[topic] = subscribers
        return handler

    return register


def _registered(topic: str) -> list[Subscriber]:
    """Subscribers of ``topic``; a custom event's topic (``review.posted``) also reaches those
    of :class:`~lealta.outbox.events.EventProcessed` (registered under ``*``)."""
    found = _REGISTRY.get(topic, [])
    if topic not in EVENT_TYPES and topic != EventProcessed.TYPE:
        found = found + _REGISTRY.get(EventProcessed.TYPE, [])
    return found


def subscribers_for(event_type: str | type[DomainEvent], backfill: bool) -> list[Subscriber]:
    """The subscribers to run for one event, in registration order."""
    return [s for s in _registered(_type_of(event_type)) if s.include_backfill or not backfill]


def find(event_type: str | type[DomainEvent], name: str) -> Subscriber | None:
    """The subscriber registered for ``event_type`` under ``name``, if any."""
    return next((s for s in _registered(_type_of(event_type)) if s.name == name), None)


def unsubscribe(event_type: str | type[DomainEvent], *, name: str) -> None:
    """Remove a subscriber (tests; a capability switched off)."""
    topic = _type_of(event_type)
    _REGISTRY[topic] = [s for s in _REGISTRY.get(topic, []) if s.name != name]
