"""Campaigns at the database edge: definitions (mirrored from the programme or made over the
API/console), launch (the audience drawn once into ``campaign_recipients`` with experiment
arms), throttled sending, pause/resume/cancel, outcomes, boosts and reads.

Life of a campaign (``campaign_states.status``): ``scheduled`` until its ``starts_at`` (or a
"launch now"), then ``running``: the audience is drawn in id-ordered chunks, each member
with their arm (:func:`lealta.experiments.assign.assign`); the ``campaigns.tick`` job then
processes up to ``throttle.per_minute`` pending recipients a minute, each in a savepoint,
with its status change and its effects (ledger entries, coupons, queued messages) in one
transaction: a retried job repeats nothing. ``completed`` when none are pending;
``ends_at`` passed → the rest are ``cancelled``.

Attribution (read by :mod:`lealta.experiments`): points given by a campaign are ledger
entries with ``source_type = "campaign"`` and ``source_ref = "campaign:<id>:<member id>"``;
coupons have ``source = "campaign"`` and their code in the recipient's
``detail["coupon_code"]``; messages are notify's ``messages`` rows (``message_id``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from itsdangerous import BadSignature, URLSafeSerializer
from pydantic import ValidationError
from sqlalchemy import Table, exists, func, select, text, update
from sqlalchemy.orm import Session, aliased

from lealta.audit import service as audit
from lealta.campaigns.schema import Campaign, check_one
from lealta.config import Settings
from lealta.coupons import service as coupons
from lealta.experiments.assign import assign
from lealta.experiments.schema import HOLDOUT
from lealta.kit.db import Database, insert_ignoring, lock_for_update
from lealta.kit.errors import Conflict, InvalidInput, LealtaError, NotFound
from lealta.kit.logging import get_logger
from lealta.ledger import operations
from lealta.models import Consent, Coupon, Member, Message, Segment, SegmentMember
from lealta.models.campaign import CampaignRecipient, CampaignState
from lealta.models.privacy import MemberErasure
from lealta.notify import service as notify
from lealta.notify.policy import Cap, needs_consent
from lealta.notify.render import OPEN_PIXEL
from lealta.programme.schema import CouponSpec, Programme
from lealta.workflows import runs as workflow_runs
from lealta.workflows.schema import (
    AwardPoints,
    CallWebhook,
    DeductPoints,
    IssueCoupon,
    IssueReward,
    SendMessage,
    SetAttribute,
    Tag,
    Untag,
)

log = get_logger("lealta.campaigns")

CHUNK = 5000
"""Audience members read per statement at launch."""
SEND_CHUNK = 500
"""Recipients processed per transaction when sending."""
SAMPLE_SIZE = 10
LINK_SALT = "lealta-campaign-link"
ACTIVE = ("running", "paused")
"""Campaigns whose audience is drawn and whose window may be open."""
OUTCOME_DAYS = timedelta(days=30)
"""How long after its end a campaign's recipients still learn what notify decided."""
_recipients = cast(Table, CampaignRecipient.__table__)


class CampaignNotFound(NotFound):
    code = "campaign_not_found"


class CampaignReadOnly(Conflict):
    code = "campaign_read_only"


class CampaignExists(Conflict):
    code = "campaign_exists"


class CampaignStatusConflict(Conflict):
    code = "campaign_status"


class CampaignInvalid(InvalidInput):
    code = "campaign_invalid"


# --- definitions ---------------------------------------------------------------------------


def definition(row: CampaignState) -> Campaign:
    return Campaign.model_validate(row.definition)


def _store(data: Campaign) -> dict[str, Any]:
    return data.model_dump(mode="json", exclude_none=True, by_alias=True)


def parse(data: Any) -> Campaign:
    """A definition from JSON/form data; :class:`CampaignInvalid` with the first error's path."""
    try:
        return Campaign.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if "[" not in str(p) and "-" not in str(p))
        message = str(first["msg"]).removeprefix("Value error, ")
        raise CampaignInvalid(
            f"{where}: {message}" if where and not message.startswith(where) else message,
            details=[
                {
                    "loc": list(e["loc"]),
                    "msg": e["msg"],
                    "type": e["type"],
                    **(
                        {"ctx": {str(k): str(v) for k, v in e["ctx"].items()}}
                        if e.get("ctx") and e["type"] != "value_error"
                        else {}
                    ),
                }
                for e in exc.errors()
            ],
        ) from None


def segment_keys(session: Session) -> set[str]:
    return set(session.scalars(select(Segment.key)))


def check_references(session: Session, data: Campaign, *, now: datetime) -> None:
    """Segments (any saved one), rewards and templates of the programme in force;
    :class:`CampaignInvalid` with the path otherwise."""
    _, programme = workflow_runs.in_force(session, now)
    known = segment_keys(session) | {s.id for s in programme.segments}
    try:
        check_one(data, programme, "campaign", segments=known)
    except ValueError as exc:
        raise CampaignInvalid(str(exc).removeprefix("campaign.")) from None


def get(session: Session, campaign_id: str, *, lock: bool = False) -> CampaignState:
    stmt = select(CampaignState).where(CampaignState.campaign_id == campaign_id)
    row: CampaignState | None = session.scalars(lock_for_update(stmt) if lock else stmt).first()
    if row is None:
        raise CampaignNotFound(f"No campaign has the id {campaign_id!r}.")
    return row


def list_campaigns(session: Session) -> Sequence[CampaignState]:
    """Every campaign, the newest window first."""
    rows = session.scalars(select(CampaignState)).all()
    return sorted(rows, key=lambda r: (str(r.definition.get("starts_at", "")), r.campaign_id))[::-1]


def sync_programme(session: Session, programme: Programme, *, version: int, now: datetime) -> None:
    """Mirror the programme's ``campaigns`` (insert; update the definition of a still
    scheduled one; delete a scheduled one no longer shipped). A launched campaign keeps the
    definition it was launched with; an API campaign with the same id wins."""
    shipped = {c.id: c for c in programme.campaigns}
    rows = {r.campaign_id: r for r in session.scalars(select(CampaignState)).all()}
    for key, data in shipped.items():
        row = rows.get(key)
        stored = _store(data)
        if row is None:
            session.add(
                CampaignState(
                    campaign_id=key, source="programme", definition=stored, status="scheduled",
                    programme_version=version, created_at=now, updated_at=now, detail={},
                )
            )  # fmt: skip
        elif row.source == "programme" and row.status == "scheduled" and row.definition != stored:
            row.definition = stored
            row.programme_version = version
            row.updated_at = now
    for key, row in rows.items():
        if row.source == "programme" and key not in shipped and row.status == "scheduled":
            session.delete(row)
    session.flush()


def sync(session: Session, *, now: datetime) -> None:
    """Mirror the campaigns of the programme in force."""
    version, programme = workflow_runs.in_force(session, now)
    sync_programme(session, programme, version=version, now=now)


def create(session: Session, data: Campaign, *, actor: str, now: datetime) -> CampaignState:
    check_references(session, data, now=now)
    if session.get(CampaignState, data.id) is not None:
        raise CampaignExists(f"A campaign with the id {data.id!r} exists.")
    row = CampaignState(
        campaign_id=data.id, source="api", definition=_store(data), status="scheduled",
        created_at=now, updated_at=now, detail={},
    )  # fmt: skip
    session.add(row)
    session.flush()
    audit.record(
        session, actor=actor, action="campaign.create", target_type="campaign",
        target_id=data.id, now=now,
    )  # fmt: skip
    return row


def _editable(row: CampaignState) -> None:
    if row.source == "programme":
        raise CampaignReadOnly(
            f"Campaign {row.campaign_id!r} ships with the programme: change it in the"
            " programme document, or create a campaign of your own."
        )
    if row.status != "scheduled":
        raise CampaignStatusConflict(
            f"Campaign {row.campaign_id!r} is {row.status}: only a scheduled campaign can be"
            " edited or deleted."
        )
    if row.detail.get("launch_requested_at"):
        raise CampaignStatusConflict(f"Campaign {row.campaign_id!r} is launching already.")


def update_campaign(
    session: Session, campaign_id: str, data: Campaign, *, actor: str, now: datetime
) -> CampaignState:
    row = get(session, campaign_id, lock=True)
    _editable(row)
    if data.id != campaign_id:
        raise Conflict("The id of a campaign cannot change.", code="campaign_id_changed")
    check_references(session, data, now=now)
    row.definition = _store(data)
    row.updated_at = now
    audit.record(
        session, actor=actor, action="campaign.update", target_type="campaign",
        target_id=campaign_id, now=now,
    )  # fmt: skip
    return row


def remove(session: Session, campaign_id: str, *, actor: str, now: datetime) -> None:
    row = get(session, campaign_id, lock=True)
    _editable(row)
    session.delete(row)
    audit.record(
        session, actor=actor, action="campaign.delete", target_type="campaign",
        target_id=campaign_id, now=now,
    )  # fmt: skip


# --- audience ------------------------------------------------------------------------------


def _audience(data: Campaign) -> Any:
    """``SELECT member_id`` of the campaign's audience (segment or every member, minus the
    excluded segments and erased members), ordered by id."""
    if data.segment is not None:
        stmt = (
            select(SegmentMember.member_id.label("member_id"))
            .join(Segment, Segment.id == SegmentMember.segment_id)
            .where(Segment.key == data.segment)
        )
        column: Any = SegmentMember.member_id
    else:
        stmt = select(Member.id.label("member_id"))
        column = Member.id
    if data.exclude_segments:
        other = aliased(SegmentMember)
        stmt = stmt.where(
            ~exists().where(
                other.segment_id.in_(
                    select(Segment.id).where(Segment.key.in_(data.exclude_segments))
                ),
                other.member_id == column,
            )
        )
    stmt = stmt.where(~exists().where(MemberErasure.member_id == column))
    return stmt, column


def _ensure_segments(session: Session, data: Campaign, *, now: datetime) -> None:
    """Compute a segment the campaign uses that was never computed (a fresh mirror)."""
    from lealta.segments import service as segments

    keys = [k for k in [data.segment, *data.exclude_segments] if k is not None]
    if not keys:
        return
    segments.sync_programme(session, workflow_runs.in_force(session, now)[1], now=now)
    stale = list(
        session.scalars(
            select(Segment.key).where(
                Segment.key.in_(keys), Segment.kind == "dynamic", Segment.computed_at.is_(None)
            )
        )
    )
    if stale:
        segments.recompute_all(session, now=now, keys=stale)


def audience_ids(session: Session, data: Campaign, *, after: int, limit: int) -> list[int]:
    stmt, column = _audience(data)
    return [
        int(i) for i in session.scalars(stmt.where(column > after).order_by(column).limit(limit))
    ]


@dataclass(slots=True)
class Preview:
    count: int
    arms: dict[str, int]
    sample: list[str]


def preview(session: Session, data: Campaign) -> Preview:
    """How many members the campaign would reach now, the arm split and a sample."""
    arms: dict[str, int] = {}
    count = 0
    after = 0
    while True:
        ids = audience_ids(session, data, after=after, limit=CHUNK)
        if not ids:
            break
        for member_id in ids:
            arm = assign(data.id, member_id, data.experiment)
            arms[arm] = arms.get(arm, 0) + 1
        count += len(ids)
        after = ids[-1]
    stmt, column = _audience(data)
    sample_ids = list(session.scalars(stmt.order_by(column).limit(SAMPLE_SIZE)))
    sample = list(
        session.scalars(
            select(Member.external_id).where(Member.id.in_(sample_ids)).order_by(Member.id)
        )
    )
    return Preview(count=count, arms=arms, sample=sample)


# --- priority ------------------------------------------------------------------------------


def _competitors(session: Session, row: CampaignState, now: datetime) -> dict[str, str]:
    """Other drawn campaigns that win over ``row`` for a shared member, with open windows:
    campaign id → reason. Higher priority wins; equal priority, the earlier launched."""
    mine = definition(row)
    found: dict[str, str] = {}
    for other in session.scalars(
        select(CampaignState).where(
            CampaignState.status.in_((*ACTIVE, "completed")),
            CampaignState.campaign_id != row.campaign_id,
        )
    ):
        theirs = definition(other)
        if theirs.ends_at is not None and theirs.ends_at <= now:
            continue
        if other.status == "completed" and theirs.ends_at is None:
            continue  # sent, and no window left open: it claims no one any more
        launched = other.launched_at
        earlier = (
            launched is not None
            and row.launched_at is not None
            and (launched, other.campaign_id) < (row.launched_at, row.campaign_id)
        )
        if theirs.priority > mine.priority or (theirs.priority == mine.priority and earlier):
            found[other.campaign_id] = (
                f"in campaign '{other.campaign_id}' (priority {theirs.priority})"
            )
    return found


def _taken(
    session: Session,
    competitors: dict[str, str],
    member_ids: list[int],
    *,
    span: tuple[int, int] | None = None,
) -> dict[int, str]:
    """Members of ``member_ids`` in one of the winning campaigns → the reason. ``span``
    (first, last) reads an id-ordered chunk by range instead of a long ``IN`` list."""
    if not competitors or not member_ids:
        return {}
    stmt = select(CampaignRecipient.member_id, CampaignRecipient.campaign_id).where(
        CampaignRecipient.campaign_id.in_(list(competitors)),
        CampaignRecipient.status.not_in(("suppressed", "cancelled")),
    )
    if span is not None:
        stmt = stmt.where(CampaignRecipient.member_id.between(span[0], span[1]))
    else:
        stmt = stmt.where(CampaignRecipient.member_id.in_(member_ids))
    return {int(m): competitors[c] for m, c in session.execute(stmt)}


# --- launch --------------------------------------------------------------------------------


def due_for_launch(session: Session, *, now: datetime) -> list[str]:
    """Scheduled campaigns to launch now: enabled ones whose start has come (and not ended),
    and any asked to launch now."""
    found: list[str] = []
    for row in session.scalars(
        select(CampaignState)
        .where(CampaignState.status == "scheduled")
        .order_by(CampaignState.campaign_id)
    ):
        data = definition(row)
        if row.detail.get("launch_requested_at") or (
            data.enabled and data.starts_at <= now and (data.ends_at is None or data.ends_at > now)
        ):
            found.append(row.campaign_id)
    return found


def request_launch(
    session: Session, campaign_id: str, *, actor: str, now: datetime
) -> CampaignState:
    """ "Launch now": the next tick (or the job enqueued here) draws the audience."""
    from lealta.jobs import queue

    row = get(session, campaign_id, lock=True)
    if row.status != "scheduled":
        raise CampaignStatusConflict(f"Campaign {campaign_id!r} is {row.status}: it was launched.")
    if row.detail.get("launch_requested_at"):
        raise CampaignStatusConflict(f"Campaign {campaign_id!r} is launching already.")
    data = definition(row)
    if data.ends_at is not None and data.ends_at <= now:
        raise CampaignStatusConflict(
            f"Campaign {campaign_id!r} ended on {data.ends_at.isoformat()}."
        )
    row.detail = {**row.detail, "launch_requested_at": now.isoformat(), "launched_by": actor}
    row.updated_at = now
    queue.enqueue(session, "campaigns.launch", {"campaign_id": campaign_id}, now=now,
                  dedupe_key=f"campaign-launch:{campaign_id}")  # fmt: skip
    audit.record(
        session, actor=actor, action="campaign.launch", target_type="campaign",
        target_id=campaign_id, now=now,
    )  # fmt: skip
    return row


_PG_INSERT = text(
    "INSERT INTO campaign_recipients (campaign_id, member_id, arm, status, reason, assigned_at,"
    " detail) SELECT :campaign_id, m, a, CASE WHEN r IS NULL THEN 'pending' ELSE 'suppressed'"
    " END, r, :now, CAST('{}' AS JSONB) FROM unnest(CAST(:ids AS BIGINT[]), CAST(:arms AS TEXT[]),"
    " CAST(:reasons AS TEXT[])) AS t(m, a, r) ON CONFLICT DO NOTHING"
)


def _insert_recipients(
    session: Session,
    campaign_id: str,
    ids: list[int],
    arms: list[str],
    reasons: list[str | None],
    now: datetime,
) -> None:
    """One chunk of drawn recipients: on PostgreSQL one ``INSERT … SELECT FROM unnest`` of
    three arrays (a handful of parameters, whatever the chunk size); elsewhere an
    ``executemany``."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            _PG_INSERT,
            {"campaign_id": campaign_id, "now": now, "ids": ids, "arms": arms,
             "reasons": reasons},
        )  # fmt: skip
        return
    session.execute(
        insert_ignoring(session, _recipients),
        [
            {
                "campaign_id": campaign_id,
                "member_id": member_id,
                "arm": arm,
                "status": "suppressed" if reason else "pending",
                "reason": reason,
                "assigned_at": now,
                "detail": {},
            }
            for member_id, arm, reason in zip(ids, arms, reasons, strict=True)
        ],
    )


def launch(session: Session, campaign_id: str, *, now: datetime) -> int:
    """Draw the audience of a scheduled campaign into its recipients (id-ordered chunks,
    one ``executemany`` each) and mark it running; returns the audience size. Does nothing
    (returns -1) when the campaign is not scheduled any more: a repeated launch is a no-op."""
    row = get(session, campaign_id, lock=True)
    if row.status != "scheduled":
        return -1
    data = definition(row)
    version, _ = workflow_runs.in_force(session, now)
    _ensure_segments(session, data, now=now)
    row.status = "running"
    row.launched_at = now
    if row.source == "programme" or row.programme_version is None:
        row.programme_version = version
    session.flush()
    competitors = _competitors(session, row, now)
    total = 0
    after = 0
    while True:
        ids = audience_ids(session, data, after=after, limit=CHUNK)
        if not ids:
            break
        taken = _taken(session, competitors, ids, span=(ids[0], ids[-1]))
        arms = [assign(campaign_id, member_id, data.experiment) for member_id in ids]
        reasons = [taken.get(member_id) for member_id in ids]
        _insert_recipients(session, campaign_id, ids, arms, reasons, now)
        total += len(ids)
        after = ids[-1]
    row.audience_size = total
    row.updated_at = now
    if total == 0:
        row.status = "completed"
        row.finished_at = now
    log.info("campaign_launched", campaign=campaign_id, audience=total)
    return total


# --- sending -------------------------------------------------------------------------------


def steps_for(data: Campaign, arm: str) -> list[Any]:
    """The content of an arm: the variant's steps, else the campaign's."""
    if data.experiment is not None:
        for variant in data.experiment.variants:
            if variant.id == arm and variant.steps is not None:
                return list(variant.steps)
    return list(data.steps)


def link_token(settings: Settings, recipient_id: int) -> str:
    return str(URLSafeSerializer(settings.secret_key, salt=LINK_SALT).dumps(recipient_id))


def link_url(settings: Settings, recipient_id: int) -> str:
    """The signed tracking link of a recipient: records the click, then opens the cockpit."""
    return f"{settings.public_url.rstrip('/')}/c/{link_token(settings, recipient_id)}"


def read_link(settings: Settings, token: str) -> int | None:
    """The recipient id of a signed link, or None for anything else."""
    if len(token) > 200:
        return None
    try:
        value = URLSafeSerializer(settings.secret_key, salt=LINK_SALT).loads(token)
    except BadSignature:
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def open_pixel_url(settings: Settings, recipient_id: int) -> str:
    """The address of a recipient's open-tracking image (the link's signed token)."""
    return f"{link_url(settings, recipient_id)}/open.gif"


def record_click(session: Session, settings: Settings, token: str, *, now: datetime) -> bool:
    """Record the first click of a tracking link, and an open if none was recorded (the
    image may have been blocked); False for an invalid or unknown link."""
    found = _recipient_of(session, settings, token)
    if found is None:
        return False
    if found.clicked_at is None:
        found.clicked_at = now
    if found.opened_at is None:
        found.opened_at = now
    return True


def record_open(session: Session, settings: Settings, token: str, *, now: datetime) -> bool:
    """Record the first opening of a campaign e-mail (its image was loaded); False for an
    invalid or unknown token."""
    found = _recipient_of(session, settings, token)
    if found is None:
        return False
    if found.opened_at is None:
        found.opened_at = now
    return True


def _recipient_of(session: Session, settings: Settings, token: str) -> CampaignRecipient | None:
    recipient_id = read_link(settings, token)
    return None if recipient_id is None else session.get(CampaignRecipient, recipient_id)


@dataclass(slots=True)
class _Plan:
    """Channels chosen for the message steps (step index → channel), or why none can go."""

    channels: dict[int, str] = field(default_factory=dict)
    blocked: str | None = None
    reason: str | None = None


def _has_address(member: Member, channel: str) -> bool:
    if channel == "email":
        return bool(member.email)
    if channel == "sms":
        return bool(member.phone)
    if channel == "push":
        return bool((member.attributes or {}).get("push_token"))
    return True


def _plan_messages(
    session: Session,
    settings: Settings,
    data: Campaign,
    member: Member,
    consents: dict[str, bool],
    steps: list[Any],
    now: datetime,
) -> _Plan:
    """Pick each message's channel in the campaign's order: consented to, with an address,
    under the frequency cap. None consented → ``no_consent``; all capped → ``capped``."""
    cap = Cap(settings.notify_cap_messages, settings.notify_cap_hours)
    plan = _Plan()
    for i, step in enumerate(steps):
        if not isinstance(step, SendMessage):
            continue
        candidates = list(data.channels) if step.channel == "best" else [step.channel]
        consented = [
            c for c in candidates
            if (needs_consent(c) is None or consents.get(needs_consent(c) or ""))
            and _has_address(member, c)
        ]  # fmt: skip
        if not consented:
            return _Plan(blocked="no_consent", reason=f"no consent for {', '.join(candidates)}")
        free = [
            c for c in consented
            if c == "inapp"
            or cap.allows(notify.sent_in_window(session, member.id, c, cap.window_start(now)))
        ]  # fmt: skip
        if not free:
            return _Plan(
                blocked="capped",
                reason=f"over {cap.messages} per {cap.hours} h on {', '.join(consented)}",
            )
        plan.channels[i] = free[0]
    return plan


def _message_context(
    session: Session,
    settings: Settings,
    member: Member,
    programme: Programme,
    recipient: CampaignRecipient,
    found: dict[str, Any],
    channel: str,
    now: datetime,
) -> dict[str, Any]:
    values = {k: v for k, v in found.items() if k in ("points", "coupon", "reward_id")}
    context = workflow_runs.effect_context(session, member, programme, values, now=now)
    if channel != "inapp":
        url = link_url(settings, recipient.id)
        # The tracked link stands in for the cockpit link every template already carries.
        context["campaign_url"] = url
        context["cockpit_url"] = url
    if channel == "email" and settings.email_open_tracking:
        context[OPEN_PIXEL] = open_pixel_url(settings, recipient.id)
    return context


def _execute(
    session: Session,
    settings: Settings,
    row: CampaignState,
    data: Campaign,
    programme: Programme,
    recipient: CampaignRecipient,
    member: Member,
    steps: list[Any],
    plan: _Plan,
    now: datetime,
) -> None:
    """Run the content for one member (in the caller's savepoint)."""
    cid = row.campaign_id
    ref = f"campaign:{cid}:{member.id}"
    found: dict[str, Any] = {}
    detail = dict(recipient.detail or {})
    actor = f"campaign:{cid}"
    for i, step in enumerate(steps):
        key = f"{ref}:{i}"
        if isinstance(step, AwardPoints):
            operations.award(
                session, member.external_id, points=step.points, reason=step.reason,
                actor=actor, source_type="campaign", source_ref=ref[:128], now=now,
                programme=programme,
            )  # fmt: skip
            found["points"] = step.points
            detail["points"] = int(detail.get("points", 0)) + step.points
        elif isinstance(step, DeductPoints):
            from lealta.ledger.schemas import SpendIn

            try:
                with session.begin_nested():
                    operations.spend(
                        session, member.external_id,
                        SpendIn(points=step.points, reason=step.reason, order_id=key[:128]),
                        actor=actor, now=now, programme=programme,
                    )  # fmt: skip
            except LealtaError:
                continue
        elif isinstance(step, IssueCoupon | IssueReward):
            found["reward_id"] = step.reward
            reward = programme.reward(step.reward)
            if reward is None or (reward.coupon is None and reward.type != "free_shipping"):
                continue
            coupon = coupons.issue(
                session, reward.coupon or CouponSpec(free_shipping=True), reward_id=step.reward,
                member_id=member.id, source="campaign", currency=programme.currency,
                valid_from=now, now=now,
            )  # fmt: skip
            found["coupon"] = {
                "code": coupon.code,
                "expires_at": coupon.valid_until.isoformat(),
                "reward_id": step.reward,
            }
            detail["coupon_code"] = coupon.code
        elif isinstance(step, SendMessage):
            channel = plan.channels[i]
            context = _message_context(
                session, settings, member, programme, recipient, found, channel, now
            )
            message = notify.send_template(
                session, member.id, step.template, channel, context, key, now
            )
            if recipient.message_id is None:
                recipient.message_id = message.id
                detail["channel"] = channel
        elif isinstance(step, CallWebhook):
            from lealta.outbox.events import EventProcessed
            from lealta.outbox.service import emit

            emit(
                session,
                EventProcessed(event_type=step.event, event_id=key[:128],
                               customer_id=member.external_id, points_delta=0),
                member_id=member.id, now=now, backfill=False,
            )  # fmt: skip
        elif isinstance(step, Tag | Untag):
            tags = [t for t in (member.tags or []) if t != step.tag]
            if isinstance(step, Tag):
                tags.append(step.tag)
            member.tags = tags
            member.updated_at = now
        elif isinstance(step, SetAttribute):
            member.attributes = {**(member.attributes or {}), step.name: step.value}
            member.updated_at = now
    if data.multiplier is not None:
        until = now + timedelta(days=data.multiplier.days)
        if data.ends_at is not None:
            until = min(until, data.ends_at)
        detail["multiplier"] = {"factor": str(data.multiplier.factor), "until": until.isoformat()}
        # The engine reads these two with the member's state (``member.boosts``).
        recipient.boost_factor = str(data.multiplier.factor)
        recipient.boost_until = until
    recipient.detail = detail
    recipient.status = "sent"


def _consents(session: Session, member_ids: list[int]) -> dict[int, dict[str, bool]]:
    """Each member's latest choice per consent purpose, for a chunk in one query."""
    found: dict[int, dict[str, bool]] = {}
    if not member_ids:
        return found
    for member_id, purpose, granted in session.execute(
        select(Consent.member_id, Consent.purpose, Consent.granted)
        .where(Consent.member_id.in_(member_ids))
        .order_by(Consent.id)
    ):
        found.setdefault(int(member_id), {})[purpose] = bool(granted)
    return found


def process(
    session: Session, settings: Settings, campaign_id: str, *, now: datetime, limit: int
) -> int:
    """Process up to ``limit`` pending recipients of a running campaign (each member in a
    savepoint); returns how many. Completes the campaign when none remain, cancels the
    rest when its window has ended."""
    row = get(session, campaign_id, lock=True)
    if row.status != "running":
        return 0
    data = definition(row)
    if data.ends_at is not None and data.ends_at <= now:
        finish(session, row, "completed", now=now, reason="ended")
        return 0
    pending = list(
        session.scalars(
            lock_for_update(
                select(CampaignRecipient)
                .where(
                    CampaignRecipient.campaign_id == campaign_id,
                    CampaignRecipient.status == "pending",
                )
                .order_by(CampaignRecipient.id)
                .limit(limit)
            )
        )
    )
    if not pending:
        finish(session, row, "completed", now=now, reason=None)
        return 0
    _, programme = workflow_runs.in_force(session, now)
    taken = _taken(session, _competitors(session, row, now), [r.member_id for r in pending])
    people = {
        m.id: m
        for m in session.scalars(
            select(Member).where(Member.id.in_([r.member_id for r in pending]))
        )
    }
    consents = _consents(session, list(people))
    for recipient in pending:
        member = people.get(recipient.member_id)
        if recipient.member_id in taken or member is None:
            recipient.status = "suppressed"
            recipient.reason = taken.get(recipient.member_id, "member gone")[:200]
            continue
        recipient.reached_at = now
        if recipient.arm == HOLDOUT:
            recipient.status = "held_out"
            continue
        steps = steps_for(data, recipient.arm)
        plan = _plan_messages(
            session, settings, data, member, consents.get(member.id, {}), steps, now
        )
        if plan.blocked is not None:
            recipient.status = plan.blocked
            recipient.reason = (plan.reason or "")[:200]
            continue
        try:
            with session.begin_nested():
                _execute(
                    session, settings, row, data, programme, recipient, member, steps, plan, now
                )
        except LealtaError as exc:
            recipient.status = "failed"
            recipient.reason = f"{exc.code}: {exc.message}"[:200]
    session.flush()
    left = session.scalar(
        select(CampaignRecipient.id)
        .where(CampaignRecipient.campaign_id == campaign_id, CampaignRecipient.status == "pending")
        .limit(1)
    )
    if left is None:
        finish(session, row, "completed", now=now, reason=None)
    row.updated_at = now
    return len(pending)


def finish(
    session: Session, row: CampaignState, status: str, *, now: datetime, reason: str | None
) -> int:
    """End a campaign: every pending recipient becomes ``cancelled``; returns how many."""
    result = session.execute(
        update(_recipients)
        .where(_recipients.c.campaign_id == row.campaign_id, _recipients.c.status == "pending")
        .values(status="cancelled", reason=reason or status)
    )
    row.status = status
    row.finished_at = now
    row.updated_at = now
    return int(getattr(result, "rowcount", 0) or 0)


def sync_outcomes(session: Session, campaign_id: str) -> None:
    """Carry what notify decided back to the recipients: a message refused for consent or
    the cap, or failed; in-app messages read (``opened_at``)."""
    for status in ("no_consent", "capped", "failed"):
        session.execute(
            update(_recipients)
            .where(
                _recipients.c.campaign_id == campaign_id,
                _recipients.c.status == "sent",
                _recipients.c.message_id.in_(select(Message.id).where(Message.status == status)),
            )
            .values(status=status, reason=f"message {status}")
        )
    opened = session.execute(
        select(CampaignRecipient.id, Message.read_at)
        .join(Message, Message.id == CampaignRecipient.message_id)
        .where(
            CampaignRecipient.campaign_id == campaign_id,
            CampaignRecipient.opened_at.is_(None),
            Message.read_at.is_not(None),
        )
    ).all()
    for rid, at in opened:
        session.execute(update(_recipients).where(_recipients.c.id == rid).values(opened_at=at))


# --- controls ------------------------------------------------------------------------------


def _control(
    session: Session, campaign_id: str, action: str, *, actor: str, now: datetime
) -> CampaignState:
    row = get(session, campaign_id, lock=True)
    allowed = {
        "pause": ("running",),
        "resume": ("paused",),
        # A completed campaign may still be cancelled: that ends the multipliers it gave.
        "cancel": ("scheduled", "running", "paused", "completed"),
    }
    if row.status not in allowed[action]:
        raise CampaignStatusConflict(
            f"Campaign {campaign_id!r} is {row.status}: it cannot be {action}d now."
            if action != "cancel"
            else f"Campaign {campaign_id!r} is {row.status}: it cannot be cancelled now."
        )
    cancelled = 0
    if action == "pause":
        row.status = "paused"
    elif action == "resume":
        row.status = "running"
    else:
        cancelled = finish(session, row, "cancelled", now=now, reason="cancelled")
        # A cancelled campaign's earning multipliers stop now.
        session.execute(
            update(_recipients)
            .where(_recipients.c.campaign_id == campaign_id, _recipients.c.boost_until > now)
            .values(boost_until=now)
        )
    row.updated_at = now
    audit.record(
        session, actor=actor, action=f"campaign.{action}", target_type="campaign",
        target_id=campaign_id, now=now, details={"cancelled": cancelled} if cancelled else None,
    )  # fmt: skip
    return row


def pause(session: Session, campaign_id: str, *, actor: str, now: datetime) -> CampaignState:
    return _control(session, campaign_id, "pause", actor=actor, now=now)


def resume(session: Session, campaign_id: str, *, actor: str, now: datetime) -> CampaignState:
    return _control(session, campaign_id, "resume", actor=actor, now=now)


def cancel(session: Session, campaign_id: str, *, actor: str, now: datetime) -> CampaignState:
    return _control(session, campaign_id, "cancel", actor=actor, now=now)


# --- the periodic tick ---------------------------------------------------------------------


def tick(db: Database, settings: Settings, *, now: datetime) -> dict[str, int]:
    """Mirror the programme's campaigns, launch the due ones, send the next throttled slice
    of every running one (each transaction a chunk). Campaign id → processed."""
    with db.unit_of_work() as session:
        sync(session, now=now)
        due = due_for_launch(session, now=now)
    for campaign_id in due:
        with db.unit_of_work() as session:
            launch(session, campaign_id, now=now)
    with db.unit_of_work() as session:
        running = [
            (r.campaign_id, definition(r).throttle.per_minute)
            for r in session.scalars(select(CampaignState).where(CampaignState.status.in_(ACTIVE)))
        ]
        # Notify decides (and members read) after a campaign's last slice: keep carrying
        # outcomes back for a while after it ends.
        ended = list(
            session.scalars(
                select(CampaignState.campaign_id).where(
                    CampaignState.status.in_(("completed", "cancelled")),
                    CampaignState.finished_at >= now - OUTCOME_DAYS,
                )
            )
        )
    for campaign_id in ended:
        with db.unit_of_work() as session:
            sync_outcomes(session, campaign_id)
    done: dict[str, int] = {}
    for campaign_id, per_minute in running:
        with db.unit_of_work() as session:
            sync_outcomes(session, campaign_id)
        budget = per_minute
        total = 0
        while budget > 0:
            with db.unit_of_work() as session:
                n = process(session, settings, campaign_id, now=now, limit=min(budget, SEND_CHUNK))
            total += n
            budget -= n
            if n == 0:
                break
        done[campaign_id] = total
    return done


# --- boosts --------------------------------------------------------------------------------


def boosts_for(
    session: Session, member_ids: Sequence[int], now: datetime
) -> dict[int, list[tuple[str, Decimal, datetime]]]:
    """Active earning multipliers of members: member id → [(campaign id, factor, until)],
    from campaigns that reached them and whose boost has not run out (cancelling a campaign
    ends its boosts)."""
    found: dict[int, list[tuple[str, Decimal, datetime]]] = {}
    if not member_ids:
        return found
    rows = session.execute(
        select(
            CampaignRecipient.member_id,
            CampaignRecipient.campaign_id,
            CampaignRecipient.boost_factor,
            CampaignRecipient.boost_until,
        )
        .where(
            CampaignRecipient.member_id.in_(list(member_ids)),
            CampaignRecipient.boost_until > now,
            CampaignRecipient.reached_at <= now,
        )
        .order_by(CampaignRecipient.member_id, CampaignRecipient.campaign_id)
    )
    for member_id, campaign_id, factor, until in rows:
        if until is not None:
            found.setdefault(int(member_id), []).append((campaign_id, Decimal(str(factor)), until))
    return found


# --- reads ---------------------------------------------------------------------------------


def counts(session: Session, campaign_ids: Sequence[str]) -> dict[str, dict[str, dict[str, int]]]:
    """Per campaign: recipients by ``status`` and by ``arm`` → status → count."""
    found: dict[str, dict[str, dict[str, int]]] = {
        c: {"status": {}, "arms": {}} for c in campaign_ids
    }
    if not campaign_ids:
        return found
    rows = session.execute(
        select(
            CampaignRecipient.campaign_id,
            CampaignRecipient.arm,
            CampaignRecipient.status,
            func.count(),
        )
        .where(CampaignRecipient.campaign_id.in_(list(campaign_ids)))
        .group_by(CampaignRecipient.campaign_id, CampaignRecipient.arm, CampaignRecipient.status)
    )
    for cid, arm, status, n in rows:
        entry = found[cid]
        entry["status"][status] = entry["status"].get(status, 0) + int(n)
        arms = cast(dict[str, Any], entry["arms"])
        arms.setdefault(arm, {})[status] = int(n)
    return found


def recipients_page(
    session: Session, campaign_id: str, *, after: int | None, limit: int, status: str | None = None
) -> list[tuple[CampaignRecipient, str]]:
    """Recipients in id order, ``limit`` after id ``after``, with the member's customer id."""
    stmt = (
        select(CampaignRecipient, Member.external_id)
        .join(Member, Member.id == CampaignRecipient.member_id)
        .where(CampaignRecipient.campaign_id == campaign_id)
        .order_by(CampaignRecipient.id)
        .limit(limit)
    )
    if after is not None:
        stmt = stmt.where(CampaignRecipient.id > after)
    if status is not None:
        stmt = stmt.where(CampaignRecipient.status == status)
    return [(r, str(e)) for r, e in session.execute(stmt)]


EXPORT_COLUMNS = (
    "customer_id", "arm", "status", "reason", "assigned_at", "reached_at", "message_id",
    "opened_at", "clicked_at", "coupon_code",
)  # fmt: skip


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else ""


def _cell(value: str) -> str:
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def export_csv(db: Database, campaign_id: str) -> Iterator[bytes]:
    """Every recipient as CSV, a page per statement."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_COLUMNS)
    after: int | None = None
    while True:
        with db.unit_of_work(write=False) as session:
            page = recipients_page(session, campaign_id, after=after, limit=CHUNK)
            lines = [
                (
                    _cell(ext),
                    r.arm,
                    r.status,
                    _cell(r.reason or ""),
                    _iso(r.assigned_at),
                    _iso(r.reached_at),
                    str(r.message_id or ""),
                    _iso(r.opened_at),
                    _iso(r.clicked_at),
                    str((r.detail or {}).get("coupon_code", "")),
                )
                for r, ext in page
            ]
        for line in lines:
            writer.writerow(line)
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
        if len(page) < CHUNK:
            return
        after = page[-1][0].id


def of_member(session: Session, member_id: int) -> list[CampaignRecipient]:
    return list(
        session.scalars(
            select(CampaignRecipient)
            .where(CampaignRecipient.member_id == member_id)
            .order_by(CampaignRecipient.id)
        )
    )


def coupons_of(session: Session, campaign_id: str) -> int:
    """Coupons issued by the campaign (their codes are on the recipients)."""
    codes = [
        (d or {}).get("coupon_code")
        for d in session.scalars(
            select(CampaignRecipient.detail).where(CampaignRecipient.campaign_id == campaign_id)
        )
    ]
    wanted = [c for c in codes if c]
    if not wanted:
        return 0
    return int(
        session.scalar(
            select(func.count())
            .select_from(Coupon)
            .where(Coupon.code.in_(wanted), Coupon.source == "campaign")
        )
        or 0
    )
