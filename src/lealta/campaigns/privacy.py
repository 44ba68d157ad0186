"""Campaigns in the GDPR documents: the campaigns a member was in (arm, outcome, when they
were reached, opened, clicked) appear in their data export; erasure deletes their recipient
rows (the campaign's counts lose one member; the ledger entries and coupons stay,
pseudonymised with the member)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete
from sqlalchemy.orm import Session

from lealta.campaigns import service
from lealta.models.campaign import CampaignRecipient
from lealta.privacy import registry


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@registry.eraser("campaigns.recipients")
def erase_recipients(session: Session, member_id: int, now: datetime) -> None:
    session.execute(delete(CampaignRecipient).where(CampaignRecipient.member_id == member_id))


@registry.exporter("campaigns")
def export_campaigns(session: Session, member_id: int) -> list[dict[str, Any]]:
    return [
        {
            "campaign": r.campaign_id,
            "arm": r.arm,
            "status": r.status,
            "assigned_at": _iso(r.assigned_at),
            "reached_at": _iso(r.reached_at),
            "opened_at": _iso(r.opened_at),
            "clicked_at": _iso(r.clicked_at),
            "coupon_code": (r.detail or {}).get("coupon_code"),
        }
        for r in service.of_member(session, member_id)
    ]
