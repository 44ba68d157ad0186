"""Background work: the durable job queue (``queue``), its tasks (``tasks``), workers
(``worker``), periodic schedules (``periodic``), the outbox dispatcher (``dispatch``), and the
points-and-tiers catch-up (``service``)."""
