"""All tables, a module each; importing this package registers them on ``Base.metadata``."""

from lealta.models.account import Account
from lealta.models.admin_user import ROLES, AdminUser
from lealta.models.api_key import ApiKey
from lealta.models.audit import AuditLog
from lealta.models.coupon import Coupon, CouponUse
from lealta.models.event import Event
from lealta.models.idempotency import IdempotencyRecord
from lealta.models.job import JOB_STATUSES, Job
from lealta.models.ledger_entry import ENTRY_TYPES, LedgerEntry
from lealta.models.member import Consent, Member
from lealta.models.member_login_token import MemberLoginToken
from lealta.models.order import Order, OrderItem
from lealta.models.outbox import OutboxMessage
from lealta.models.point_lot import LotAllocation, PointLot
from lealta.models.programme_version import ProgrammeVersion
from lealta.models.redemption import Redemption
from lealta.models.reward_counter import RewardCounter
from lealta.models.tier_change import TierChange

__all__ = [
    "ENTRY_TYPES",
    "JOB_STATUSES",
    "ROLES",
    "Account",
    "AdminUser",
    "ApiKey",
    "AuditLog",
    "Consent",
    "Coupon",
    "CouponUse",
    "Event",
    "IdempotencyRecord",
    "Job",
    "LedgerEntry",
    "LotAllocation",
    "Member",
    "MemberLoginToken",
    "Order",
    "OrderItem",
    "OutboxMessage",
    "PointLot",
    "ProgrammeVersion",
    "Redemption",
    "RewardCounter",
    "TierChange",
]
