"""The admin pages under ``/admin``: login, the campaign list, a campaign's report (numbers,
clicks per call to action, who responded and who has not by region, charts, exports) and the
delivery detail search.

Every page but the login form needs a logged-in admin (others are sent to the login form);
every POST carries the session's CSRF token (``auth.csrf_guard`` runs before each route); every
page is sent with a Content-Security-Policy that allows no script at all. The report's numbers
come from SQL aggregates (``store.reports``, ``store.responses``); the charts are SVG drawn here.
"""

from __future__ import annotations

import csv
import io
import json
import re
import secrets
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from outreach.bootstrap import Services
from outreach.campaign_control import pause_campaign, resume_campaign
from outreach.domain.delivery import CampaignState
from outreach.scheduling import SchedulingError
from outreach.store.exports import (
    DELIVERY_COLUMNS,
    RESPONSE_COLUMNS,
    csv_cell,
    iter_delivery_export,
    iter_response_rows,
)
from outreach.store.reports import campaign_lines, campaign_report
from outreach.store.responses import ResponsesReport, responses_report
from outreach.store.search import search_deliveries
from outreach.web.auth import (
    CSRF_FIELD,
    AdminSession,
    check_password,
    clear_session,
    csrf_guard,
    current_admin,
    new_session,
    read_session,
    store_session,
)
from outreach.web.charts import Bar, Series, bar_chart, line_chart
from outreach.web.deps import get_services, templates

router = APIRouter(prefix="/admin", dependencies=[Depends(csrf_guard)], include_in_schema=False)
ServicesDep = Annotated[Services, Depends(get_services)]
_FILENAME = re.compile(r"[^A-Za-z0-9_-]")
EXPORTS: dict[str, tuple[tuple[str, ...], Callable[..., Iterator[dict[str, object]]]]] = {
    "deliveries": (DELIVERY_COLUMNS, iter_delivery_export),
    "responses": (RESPONSE_COLUMNS, iter_response_rows),
}


def _csp(nonce: str) -> str:
    return (
        "default-src 'none'; "
        f"style-src 'self' 'nonce-{nonce}'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "—"


def _page(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    session: AdminSession | None,
    status_code: int = 200,
) -> Response:
    nonce = secrets.token_urlsafe(16)
    response = templates.TemplateResponse(
        request,
        name,
        {**context, "session": session, "csrf_field": CSRF_FIELD, "nonce": nonce, "when": _when},
        status_code=status_code,
    )
    response.headers["Content-Security-Policy"] = _csp(nonce)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/admin/login?{urlencode({'next': target})}", status_code=303)


def _safe_next(value: str | None) -> str:
    """Where to go after logging in: an admin page of this app, never another site."""
    allowed = re.fullmatch(r"/admin(/[A-Za-z0-9._~%/?=&+-]*)?", value or "")
    if value and allowed and "//" not in value and ".." not in value:
        return value
    return "/admin"


PAUSABLE = {CampaignState.SCHEDULED.value, CampaignState.SENDING.value}


# -- login ---------------------------------------------------------------------------------
@router.get("/login")
def login_page(request: Request, services: ServicesDep, next: str = "/admin") -> Response:
    if current_admin(request, services):
        return RedirectResponse(_safe_next(next), status_code=303)
    session = read_session(request, services) or new_session(services, None)
    context = {"next": _safe_next(next), "error": None, "username": ""}
    response = _page(request, "admin/login.html", context, session=session)
    store_session(response, session, services)
    return response


@router.post("/login")
def login(
    request: Request,
    services: ServicesDep,
    username: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/admin",
) -> Response:
    if username and password and check_password(services, username, password):
        response = RedirectResponse(_safe_next(next), status_code=303)
        store_session(response, new_session(services, username), services)
        return response
    session = read_session(request, services)
    context = {
        "next": _safe_next(next),
        "error": "Wrong username or password.",
        "username": username,
    }
    return _page(request, "admin/login.html", context, session=session, status_code=401)


@router.post("/logout")
def logout(services: ServicesDep) -> Response:
    response = RedirectResponse("/admin/login", status_code=303)
    clear_session(response, services)
    return response


# -- campaigns -----------------------------------------------------------------------------
@router.get("")
@router.get("/campaigns")
def campaign_list(request: Request, services: ServicesDep) -> Response:
    session = current_admin(request, services)
    if session is None:
        return _to_login(request)
    lines = campaign_lines(services.engine)
    return _page(request, "admin/campaigns.html", {"campaigns": lines}, session=session)


def _not_found(request: Request, session: AdminSession, campaign_id: str) -> Response:
    context = {"campaign_id": campaign_id}
    return _page(request, "admin/not_found.html", context, session=session, status_code=404)


def _timeline_chart(report: ResponsesReport) -> Any:
    timeline = report.timeline
    pattern = "%d %b" if timeline.step >= timedelta(days=1) else "%d %b %H:%M"
    return line_chart(
        chart_id="timeline",
        title=f"Sends, clicks and signatures per {_step_name(timeline.step)} (UTC)",
        labels=[start.strftime(pattern) for start in timeline.starts],
        series=[
            Series("sends", timeline.sends),
            Series("clicks (people)", timeline.clicks),
            Series("signatures", timeline.signatures),
        ],
    )


def _step_name(step: timedelta) -> str:
    seconds = int(step.total_seconds())
    if seconds % 86400 == 0:
        days = seconds // 86400
        return "week" if days == 7 else ("day" if days == 1 else f"{days} days")
    if seconds % 3600 == 0:
        return "hour" if seconds == 3600 else f"{seconds // 3600} hours"
    return "minute" if seconds == 60 else f"{seconds // 60} minutes"


def _region_chart(report: ResponsesReport) -> Any:
    bars = [
        Bar(
            region.region,
            region.rate,
            f"{len(region.responded)} of {region.organisations} ({region.rate:.0%})",
        )
        for region in report.regions
    ]
    return bar_chart(chart_id="regions", title="Response rate by region", bars=bars)


@router.get("/campaigns/{campaign_id}")
def campaign_page(
    request: Request, services: ServicesDep, campaign_id: str, notice: str = ""
) -> Response:
    session = current_admin(request, services)
    if session is None:
        return _to_login(request)
    report = campaign_report(services.engine, campaign_id)
    if report is None:
        return _not_found(request, session, campaign_id)
    responses = responses_report(services.engine, campaign_id)
    context = {
        "report": report,
        "responses": responses,
        "timeline_chart": _timeline_chart(responses),
        "region_chart": _region_chart(responses),
        "notice": notice[:300],
        "can_pause": report.state in PAUSABLE,
        "can_resume": report.state == CampaignState.PAUSED.value,
    }
    return _page(request, "admin/report.html", context, session=session)


@router.post("/campaigns/{campaign_id}/{action}")
def change_campaign(
    request: Request, services: ServicesDep, campaign_id: str, action: str
) -> Response:
    """The Pause and Resume buttons of the campaign page (CSRF-checked like every admin POST)."""
    session = current_admin(request, services)
    if session is None:
        return _to_login(request)
    change = {"pause": pause_campaign, "resume": resume_campaign}.get(action)
    if change is None or campaign_report(services.engine, campaign_id) is None:
        return _not_found(request, session, campaign_id)
    try:
        message = change(services, campaign_id).message
    except SchedulingError as err:
        message = str(err)
    target = f"/admin/campaigns/{quote(campaign_id)}?{urlencode({'notice': message})}"
    return RedirectResponse(target, status_code=303)


@router.get("/campaigns/{campaign_id}/export/{filename}")
def export(request: Request, services: ServicesDep, campaign_id: str, filename: str) -> Response:
    session = current_admin(request, services)
    if session is None:
        return _to_login(request)
    what, _, fmt = filename.partition(".")
    if what not in EXPORTS or fmt not in ("csv", "json"):
        return _not_found(request, session, campaign_id)
    if campaign_report(services.engine, campaign_id) is None:
        return _not_found(request, session, campaign_id)
    columns, rows = EXPORTS[what]
    body = (_csv if fmt == "csv" else _json)(columns, rows(services.engine, campaign_id))
    media = "text/csv; charset=utf-8" if fmt == "csv" else "application/json"
    name = f"{_FILENAME.sub('_', campaign_id)}-{what}.{fmt}"
    return StreamingResponse(
        body,
        media_type=media,
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


def _csv(columns: tuple[str, ...], rows: Iterator[dict[str, object]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([csv_cell(row[column]) for column in columns])
        if buffer.tell() > 64_000:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _json(columns: tuple[str, ...], rows: Iterator[dict[str, object]]) -> Iterator[str]:
    yield "["
    for index, row in enumerate(rows):
        yield ("," if index else "") + "\n" + json.dumps(row, ensure_ascii=False)
    yield "\n]\n"


# -- delivery detail -----------------------------------------------------------------------
@router.get("/search")
def search(request: Request, services: ServicesDep, q: str = "", campaign: str = "") -> Response:
    session = current_admin(request, services)
    if session is None:
        return _to_login(request)
    text = q.strip()[:200]
    found, truncated = search_deliveries(
        services.engine, text=text, campaign_id=campaign or None, limit=100
    )
    context = {
        "q": text,
        "campaign": campaign,
        "campaigns": campaign_lines(services.engine),
        "deliveries": found,
        "truncated": truncated,
    }
    return _page(request, "admin/search.html", context, session=session)
