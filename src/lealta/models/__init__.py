"""All tables, a module each; importing this package registers them on ``Base.metadata``."""

from lealta.models.account import Account
from lealta.models.admin_user import ROLES, AdminUser
from lealta.models.analytics_rollup import (
    AnalyticsApplied,
    AnalyticsCohort,
    AnalyticsDaily,
    AnalyticsMember,
    AnalyticsMemberDay,
    AnalyticsMonthly,
)
from lealta.models.api_key import ApiKey
from lealta.models.audit import AuditLog
from lealta.models.bulk import BulkOperation, BulkOperationRow
from lealta.models.campaign import (
    CAMPAIGN_STATUSES,
    RECIPIENT_STATUSES,
    CampaignRecipient,
    CampaignState,
)
from lealta.models.clv import CLV_FIT_STATUSES, ClvFit, ClvPrediction
from lealta.models.coupon import Coupon, CouponUse
from lealta.models.event import Event
from lealta.models.gamification import (
    ChallengeProgress,
    GamificationApplied,
    LeaderboardProfile,
    MemberBadge,
    StreakRung,
    StreakState,
)
from lealta.models.idempotency import IdempotencyRecord
from lealta.models.inbound import AnonymousEvent, ApiKeyOrigin, InboundDelivery
from lealta.models.job import JOB_STATUSES, Job
from lealta.models.ledger_entry import ENTRY_TYPES, LedgerEntry
from lealta.models.member import Consent, Member
from lealta.models.member_login_token import MemberLoginToken
from lealta.models.nonmember import NonMemberEvent
from lealta.models.notification import CHANNELS, MESSAGE_STATUSES, Message, NotificationTemplate
from lealta.models.order import Order, OrderItem
from lealta.models.outbox import OutboxMessage
from lealta.models.plan import PlanPayment, PlanSubscription
from lealta.models.point_lot import LotAllocation, PointLot
from lealta.models.privacy import ERASURE_MODES, MemberErasure
from lealta.models.programme_version import ProgrammeVersion
from lealta.models.redemption import Redemption
from lealta.models.referral import REFERRAL_STATUSES, Referral, ReferralCode, ReferralReward
from lealta.models.reward_counter import RewardCounter
from lealta.models.segment import Segment, SegmentCount, SegmentMember
from lealta.models.simulator_run import SIMULATOR_RUN_STATUSES, SimulatorRun
from lealta.models.survey import SURVEY_STATUSES, Survey, SurveyAnswer, SurveyResponse
from lealta.models.tier_change import TierChange
from lealta.models.webhook import (
    WEBHOOK_DELIVERY_STATUSES,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from lealta.models.workflow import RUN_STATUSES, WorkflowRun, WorkflowStep, WorkflowSwitch

__all__ = [
    "CAMPAIGN_STATUSES",
    "CHANNELS",
    "CLV_FIT_STATUSES",
    "ENTRY_TYPES",
    "ERASURE_MODES",
    "JOB_STATUSES",
    "MESSAGE_STATUSES",
    "RECIPIENT_STATUSES",
    "REFERRAL_STATUSES",
    "ROLES",
    "RUN_STATUSES",
    "SIMULATOR_RUN_STATUSES",
    "SURVEY_STATUSES",
    "WEBHOOK_DELIVERY_STATUSES",
    "Account",
    "AdminUser",
    "AnalyticsApplied",
    "AnalyticsCohort",
    "AnalyticsDaily",
    "AnalyticsMember",
    "AnalyticsMemberDay",
    "AnalyticsMonthly",
    "AnonymousEvent",
    "ApiKey",
    "ApiKeyOrigin",
    "AuditLog",
    "BulkOperation",
    "BulkOperationRow",
    "CampaignRecipient",
    "CampaignState",
    "ChallengeProgress",
    "ClvFit",
    "ClvPrediction",
    "Consent",
    "Coupon",
    "CouponUse",
    "Event",
    "GamificationApplied",
    "IdempotencyRecord",
    "InboundDelivery",
    "Job",
    "LeaderboardProfile",
    "LedgerEntry",
    "LotAllocation",
    "Member",
    "MemberBadge",
    "MemberErasure",
    "MemberLoginToken",
    "Message",
    "NonMemberEvent",
    "NotificationTemplate",
    "Order",
    "OrderItem",
    "OutboxMessage",
    "PlanPayment",
    "PlanSubscription",
    "PointLot",
    "ProgrammeVersion",
    "Redemption",
    "Referral",
    "ReferralCode",
    "ReferralReward",
    "RewardCounter",
    "Segment",
    "SegmentCount",
    "SegmentMember",
    "SimulatorRun",
    "StreakRung",
    "StreakState",
    "Survey",
    "SurveyAnswer",
    "SurveyResponse",
    "TierChange",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WorkflowRun",
    "WorkflowStep",
    "WorkflowSwitch",
]
