"""Why the engine refuses an event. Raised before anything is decided: nothing applies."""

from __future__ import annotations

from lealta.kit.errors import Conflict, NotFound


class OrderAlreadyRecorded(Conflict):
    code = "order_already_recorded"


class OrderNotFound(NotFound):
    code = "order_not_found"


class RefundExceedsOrder(Conflict):
    code = "refund_exceeds_order"


class RefundBeforeOrder(Conflict):
    code = "refund_before_order"
