"""Ways to earn, badges and challenges, and the opt-in leaderboard in the cockpit:
``/me/earn``, ``/me/badges`` and ``/me/leaderboard`` (one "Earn" link in the navigation,
the other two reached from the page's tabs)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from babel.numbers import format_currency, format_decimal
from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from lealta.gamification import maths, service
from lealta.kit.errors import LealtaError
from lealta.kit.http import ClockDep, DbDep
from lealta.kit.money import exponent
from lealta.models import Account
from lealta.programme import service as programmes
from lealta.programme.schema import Programme, name_in
from lealta.referrals.service import offer_for
from lealta.surveys import service as surveys
from lealta.web.cockpit.present import Gettext
from lealta.web.cockpit.routes import MemberDep, csrf, flash, gettext, language, page

router = APIRouter(include_in_schema=False)


def _number(value: Decimal | int, lang: str) -> str:
    return format_decimal(value, locale=lang)


def _rule_line(_: Gettext, rule: Any, lang: str) -> str:
    if rule.kind == "multiplier":
        return _("%(factor)s times the points on orders", factor=_number(rule.factor, lang))
    if rule.kind == "per_unit":
        return _("%(points)s points per unit", points=_number(rule.points, lang))
    return _("%(points)s points", points=_number(rule.points, lang))


def _ways(programme: Programme, tier: str | None, lang: str, _: Gettext) -> list[dict[str, Any]]:
    ways: list[dict[str, Any]] = []
    for rule in programme.rules:
        if not rule.active or (rule.tiers and tier not in rule.tiers):
            continue
        ways.append({"name": rule.label(lang), "detail": _rule_line(_, rule, lang)})
    for threshold in programme.thresholds:
        if threshold.active:
            reward = programme.reward(threshold.reward)
            ways.append(
                {
                    "name": threshold.label(lang),
                    "detail": name_in(reward.name, lang) if reward is not None else "",
                }
            )
    return ways


def _tabs(here: str) -> dict[str, Any]:
    return {"here": "earn", "tab": here}


@router.get("/me/earn")
def earn_page(request: Request, member: MemberDep, db: DbDep, clock: ClockDep) -> Response:
    _ = gettext(request, member)
    lang = language(request, member)
    now = clock.now()
    with db.unit_of_work(write=False) as session:
        programme = programmes.current(session, now=now)
        account = session.get(Account, member.id)
        tier = account.tier_id if account is not None else None
        open_surveys = []
        done = surveys.answered_keys(session, member.id)
        for survey in surveys.list_surveys(session, status="open"):
            data = surveys.definition(survey)
            if survey.id not in done and surveys.is_open(survey, data, now):
                open_surveys.append(
                    {"key": survey.key, "name": name_in(data.name, lang), "points": survey.points}
                )
    base = programme.earning.points_per_unit
    level = programme.tier(tier)
    multiplier = level.multiplier if level is not None else Decimal(1)
    challenges = [
        {
            "name": name_in(c.name, lang),
            "description": name_in(c.description, lang) if c.description else "",
            "points": c.points,
        }
        for c in programme.challenges
        if c.live(now)
    ]
    streaks = [
        {
            "name": name_in(s.name, lang),
            "ladder": [(r.months, r.points) for r in s.ladder],
        }
        for s in programme.streaks
    ]
    return page(
        request,
        "cockpit/earn.html",
        member,
        {
            **_tabs("earn"),
            "base": _number(base * multiplier, lang),
            "unit": format_currency(
                1, programme.currency, locale=lang, format="#,##0 ¤", currency_digits=False
            ),
            "ways": _ways(programme, tier, lang, _),
            "challenges": challenges,
            "streaks": streaks,
            "surveys": open_surveys,
            "referral": offer_for(programme, tier, lang),
        },
    )


@router.get("/me/badges")
def badges_page(request: Request, member: MemberDep, db: DbDep, clock: ClockDep) -> Response:
    lang = language(request, member)
    now = clock.now()
    with db.unit_of_work(write=False) as session:
        programme = programmes.current(session, now=now)
        held = service.badges_of(session, member.id)
        progress = service.progress_of(session, member.id)
        states = service.streaks_of(session, member.id)
    badges = [
        {
            "name": name_in(b.name, lang),
            "description": name_in(b.description, lang) if b.description else "",
            "icon": b.icon,
            "earned": b.id in held,
            "awarded_at": held[b.id].awarded_at if b.id in held else None,
            "points": b.points,
        }
        for b in programme.badges
        if b.active or b.id in held
    ]
    badges.sort(key=lambda b: not b["earned"])
    exp = exponent(programme.currency)
    challenges = []
    for c in programme.challenges:
        if not c.live(now):
            continue
        zone = member.timezone if c.clock == "member" else programme.timezone
        period = maths.period_key(c.period, now, zone)
        row = progress.get((c.id, period))
        target = maths.challenge_target(c, exp)
        value = row.value if row is not None else 0
        spend = c.goal.measure == "spend"
        challenges.append(
            {
                "name": name_in(c.name, lang),
                "description": name_in(c.description, lang) if c.description else "",
                "points": c.points,
                "percent": maths.percent(value, row.target if row is not None else target),
                "value": _number(Decimal(value).scaleb(-exp) if spend else value, lang),
                "target": _number(c.goal.target, lang),
                "done": row is not None and row.completed_at is not None,
            }
        )
    now_month = maths.month_index(now, member.timezone)
    streaks = []
    for s in programme.streaks:
        state = service.streak_value(states.get(s.id))
        length = maths.streak_alive(state, now_month)
        nxt = maths.next_rung(s.ladder, length)
        streaks.append(
            {
                "name": name_in(s.name, lang),
                "description": name_in(s.description, lang) if s.description else "",
                "length": length,
                "best": state.best if state is not None else 0,
                "next": nxt,
                "percent": maths.percent(length, nxt.months) if nxt else 100,
                "this_month": state is not None and state.last == now_month,
            }
        )
    return page(
        request,
        "cockpit/badges.html",
        member,
        {**_tabs("badges"), "badges": badges, "challenges": challenges, "streaks": streaks},
    )


def _problem(_: Gettext, exc: LealtaError) -> str:
    if exc.code == "display_name_taken":
        return _("Another member already uses this name. Try another one.")
    problem = (exc.details or {}).get("problem") if isinstance(exc.details, dict) else None
    return {
        "too_long": _("Use at most %(n)s characters.", n=maths.DISPLAY_NAME_MAX),
        "email": _("Do not use an e-mail address as your name."),
        "characters": _("Use letters, numbers, spaces, dots and dashes only."),
    }.get(str(problem), _("Choose a name to show on the leaderboard."))


def _leaderboard_context(
    request: Request, member: MemberDep, db: DbDep, clock: ClockDep
) -> dict[str, Any]:
    lang = language(request, member)
    now = clock.now()
    with db.unit_of_work(write=False) as session:
        programme = programmes.current(session, now=now)
        joined = service.opted_in(session, member.id)
        mine = service.profile(session, member.id)
        boards = []
        for board in programme.leaderboards:
            top, me = service.standings(session, programme, board, now=now, member_id=member.id)
            boards.append(
                {
                    "name": name_in(board.name, lang),
                    "rows": [
                        {
                            "rank": s.rank,
                            "name": s.display_name,
                            "score": _number(s.score, lang),
                            "me": s.member_id == member.id,
                        }
                        for s in top
                    ],
                    "me": me,
                    "me_score": _number(me.score, lang) if me is not None else "",
                    "me_shown": me is not None and any(s.member_id == member.id for s in top),
                }
            )
    return {
        **_tabs("leaderboard"),
        "joined": joined,
        "display_name": mine.display_name if mine is not None else "",
        "boards": boards,
        "max_name": maths.DISPLAY_NAME_MAX,
        "name_error": None,
    }


@router.get("/me/leaderboard")
def leaderboard_page(request: Request, member: MemberDep, db: DbDep, clock: ClockDep) -> Response:
    context = _leaderboard_context(request, member, db, clock)
    return page(request, "cockpit/leaderboard.html", member, context)


@router.post("/me/leaderboard")
def save_leaderboard(
    request: Request,
    member: MemberDep,
    db: DbDep,
    clock: ClockDep,
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    display_name: Annotated[str, Form(max_length=200)] = "",
    join: Annotated[str | None, Form(max_length=10)] = None,
) -> Response:
    """Save the name and the choice; a refused name shows the form again (422)."""
    csrf(request, csrf_token, member)
    _ = gettext(request, member)
    try:
        with db.unit_of_work() as session:
            service.set_leaderboard(
                session, member, display_name=display_name, join=join is not None, now=clock.now()
            )
    except LealtaError as exc:
        context = _leaderboard_context(request, member, db, clock)
        context.update(
            name_error=_problem(_, exc), display_name=display_name[:40], joined=join is not None
        )
        return page(request, "cockpit/leaderboard.html", member, context, status_code=422)
    flash(request, _("Your leaderboard choices were saved."))
    return RedirectResponse("/me/leaderboard", status_code=303)
