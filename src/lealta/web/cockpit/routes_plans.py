"""The member's paid plan in the cockpit (``/me/plan``): the plans on offer with their
benefits, the member's subscription, joining (off to the provider's checkout) and cancelling
at the end of the paid period."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from lealta.config import Settings
from lealta.kit.clock import Clock
from lealta.kit.db import Database
from lealta.kit.errors import LealtaError
from lealta.kit.http import ClockDep, DbDep, SettingsDep
from lealta.models import Member
from lealta.plans import service
from lealta.plans.provider import PaymentProvider, provider_for
from lealta.programme import service as programmes
from lealta.programme.schema import Programme
from lealta.web.cockpit.present import Gettext
from lealta.web.cockpit.routes import MemberDep, csrf, flash, gettext, language, page
from lealta.web.cockpit.routes_surveys import FormDep

router = APIRouter(include_in_schema=False)


def _status(_: Gettext, status: str) -> str:
    return {
        "incomplete": _("Waiting for your payment"),
        "trialing": _("Free trial"),
        "active": _("Active"),
        "past_due": _("Payment failed: benefits kept for a few days"),
    }.get(status, status)


def _plans(programme: Programme, lang: str, _: Gettext) -> list[dict[str, Any]]:
    out = []
    for plan in programme.plans:
        benefits = []
        floor = programme.tier(plan.tier_floor)
        if floor is not None:
            benefits.append(_("At least %(tier)s level", tier=floor.name.get(lang)))
        if plan.multiplier != 1:
            benefits.append(_("%(factor)sx points on your purchases", factor=plan.multiplier))
        benefits += [perk.name.get(lang) for perk in plan.perks]
        out.append(
            {
                "id": plan.id,
                "name": plan.name.get(lang),
                "description": plan.description.get(lang) if plan.description else None,
                "fee": plan.fee,
                "period": _("per month") if plan.period == "month" else _("per year"),
                "trial_days": plan.trial_days,
                "benefits": benefits,
                "active": plan.active,
            }
        )
    return out


@router.get("/me/plan")
def plan_page(request: Request, member: MemberDep, db: DbDep, clock: ClockDep) -> Response:
    return _page(request, member, db, clock)


def _page(
    request: Request,
    member: Member,
    db: Database,
    clock: Clock,
    *,
    error: LealtaError | None = None,
) -> Response:
    """The plan page; after a refused join or cancel, with the reason (and its status)."""
    lang = language(request, member)
    _ = gettext(request, member)
    with db.unit_of_work(write=False) as session:
        programme = programmes.current(session, now=clock.now())
        sub = service.live(session, member.id)
    current = None
    if sub is not None:
        plan = programme.plan(sub.plan_id)
        current = {
            "name": plan.name.get(lang) if plan else sub.plan_id,
            "status": _status(_, sub.status),
            "incomplete": sub.status == "incomplete",
            "checkout_url": sub.checkout_url,
            "until": sub.benefits_until,
            "cancelling": sub.cancel_at_period_end,
        }
    context = {
        "here": "plan",
        "plans": _plans(programme, lang, _),
        "current": current,
        "currency": programme.currency,
    }
    if error is None:
        return page(request, "cockpit/plan.html", member, context)
    context["error"] = _error(_, error)
    return page(request, "cockpit/plan.html", member, context, status_code=error.status_code)


PlanAct = Callable[[Session, PaymentProvider, Programme, datetime], str | None]
"""Subscribe or cancel in the request's transaction; the checkout URL to go to, if any."""


def _act(
    request: Request, member: Member, db: Database, clock: Clock, settings: Settings,
    act: PlanAct, done: str,
) -> Response:  # fmt: skip
    """Run ``act`` for the member: to the provider's checkout if it gives one, else back to
    the plan page with ``done``; a refusal shows the page again with the reason."""
    try:
        provider = provider_for(settings)
        with db.unit_of_work() as session:
            now = clock.now()
            checkout = act(session, provider, programmes.current(session, now=now), now)
    except LealtaError as exc:
        return _page(request, member, db, clock, error=exc)
    if checkout:
        return RedirectResponse(checkout, status_code=303)
    flash(request, done)
    return RedirectResponse("/me/plan", status_code=303)


@router.post("/me/plan")
def join(
    request: Request,
    member: MemberDep,
    db: DbDep,
    clock: ClockDep,
    settings: SettingsDep,
    fields: FormDep,
) -> Response:
    csrf(request, fields.get("csrf_token", ""), member)
    _ = gettext(request, member)

    def subscribe(
        session: Session, provider: PaymentProvider, programme: Programme, now: datetime
    ) -> str | None:
        sub = service.subscribe(
            session, provider, programme, external_id=member.external_id,
            plan_id=fields.get("plan", "")[:64], actor=f"member:{member.external_id}", now=now,
        )  # fmt: skip
        return sub.checkout_url if sub.status == "incomplete" else None

    welcome = _("Welcome to your plan! Your benefits start now.")
    return _act(request, member, db, clock, settings, subscribe, welcome)


@router.post("/me/plan/cancel")
def cancel(
    request: Request,
    member: MemberDep,
    db: DbDep,
    clock: ClockDep,
    settings: SettingsDep,
    fields: FormDep,
) -> Response:
    csrf(request, fields.get("csrf_token", ""), member)
    _ = gettext(request, member)

    def cancel_at_period_end(
        session: Session, provider: PaymentProvider, programme: Programme, now: datetime
    ) -> str | None:
        service.cancel(
            session, provider, programme, external_id=member.external_id,
            at_period_end=True, actor=f"member:{member.external_id}", now=now,
        )  # fmt: skip
        return None

    done = _("Your plan is cancelled. You keep its benefits until the period ends.")
    return _act(request, member, db, clock, settings, cancel_at_period_end, done)


def _error(_: Gettext, exc: LealtaError) -> str:
    return {
        "plan_already_active": _("You already have a plan."),
        "unknown_plan": _("That plan does not exist."),
        "plan_closed": _("That plan takes no new members."),
        "no_plan": _("You have no plan to cancel."),
        "payments_not_configured": _("Plans cannot be bought here yet."),
        "payments_unavailable": _("Payments are not available right now. Try again later."),
    }.get(exc.code, _("Something went wrong. Try again later."))
