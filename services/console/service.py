"""console: the web page dispatchers, grid workers and supervisors work in (a backend-for-frontend).

Server-rendered HTML (Jinja2) with one small script (static/console.js: the live queue and the
countdowns). It signs staff in with their staff token (sessions.py), follows dispatch.work for its area
and pushes "look again" to the open queue pages (feed.py, Server-Sent Events), and does everything else
through intake's and dispatch's HTTP APIs with the person's own token (backends.py): what someone may see
and do is decided there. What the pages show is views.py; what they say, in zh-CN and en, texts.py.
"""
from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import jwt
from eventlet import GreenPool
from eventlet.queue import Empty
from jinja2 import Environment, FileSystemLoader, select_autoescape
from nameko.dependency_providers import Config
from nameko.timer import timer
from sqlalchemy import delete, select
from werkzeug.wrappers import Response

from services.common.clock import as_utc
from services.common.database import Database
from services.common.http import http
from services.common.operations import Operations
from services.common.staff import STAFF, SUPERVISOR, ADMIN, DISPATCHERS, Principal, Unauthenticated
from services.common.tokens import StaffTokens

from . import sessions, views
from .backends import Backends, Refused
from .feed import WorkFeed
from .models import SignIn
from .texts import DONE, Texts, language

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
STATIC = {"console.css": "text/css; charset=utf-8", "console.js": "text/javascript; charset=utf-8"}
HEARTBEAT_SECONDS = 10  # also how soon a page gone away is noticed (its keys unbound)
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
TEMPLATES = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(("html",)),
                        trim_blocks=True, lstrip_blocks=True)
TEMPLATES.filters["china_time"] = views.china_time
TEMPLATES.filters["as_time"] = views.parse_time
HTML = {**SECURITY_HEADERS, "Content-Type": "text/html; charset=utf-8"}


def render(template: str, **context) -> str:
    """A page: who is signed in and the form token are None unless given (sign-in and error pages)."""
    return TEMPLATES.get_template(template).render(**{"who": None, "csrf": None, "path": "/queue", **context})


class NotSignedIn(Exception):
    """No session, or one that ended: to the sign-in page."""


@dataclass
class Visitor:
    who: Principal | None
    sign_in: SignIn | None
    lang: str
    path: str = "/queue"  # where the language switch comes back to

    @property
    def t(self) -> Texts:
        return Texts(self.lang)


def page(method):
    """An HTML endpoint: errors become pages in the visitor's language (a service's refusal with its status
    and words), a missing session a redirect to sign-in."""
    @functools.wraps(method)
    def wrapper(self, request, *args, **kwargs):
        lang = language(request.cookies.get(sessions.LANG_COOKIE))
        try:
            return method(self, request, *args, **kwargs)
        except NotSignedIn:
            return redirect("/signin")
        except sessions.BadForm:
            return self._error(request, lang, 403, Texts(lang)("csrf"))
        except Refused as exc:
            title = {403: "forbidden", 404: "not_found"}.get(exc.status, "error")
            return self._error(request, lang, exc.status if exc.status < 500 else 502, exc.message, title)
        except Exception:
            log.exception("%s failed", method.__name__)
            return self._error(request, lang, 500, "internal error; it has been logged")
    return wrapper


def redirect(location: str, status: int = 303) -> Response:
    return Response("", status, {"Location": location, **SECURITY_HEADERS})


def local_path(value: str | None) -> str:
    """Where to go back to: a path of this console only (never //elsewhere or http://elsewhere)."""
    return value if value and value.startswith("/") and not value.startswith("//") and "\\" not in value else "/queue"


class ConsoleService(Operations):
    name = "console"

    db = Database()
    staff = StaffTokens()
    config = Config()
    backends = Backends()
    feed = WorkFeed()

    # --- signing in and out ------------------------------------------------------------------

    @http("GET", "/")
    @page
    def home(self, request):
        return redirect("/queue")

    @http("GET", "/signin")
    @page
    def signin_form(self, request):
        if self._visitor(request, required=False).who is not None:
            return redirect("/queue")
        return self._signin_page(request, 200, "signed_out" if request.args.get("bye") else None)

    @http("POST", "/signin")
    @page
    def signin(self, request):
        lang = language(request.cookies.get(sessions.LANG_COOKIE))
        sessions.check_csrf(request.cookies.get(sessions.SIGNIN_COOKIE), request.form.get("csrf"))
        token = (request.form.get("token") or "").strip()
        try:
            who = self.staff.verify(token)
        except Unauthenticated as exc:
            return self._signin_page(request, 401, error=f"{Texts(lang)('bad_token')}: {exc}")
        if who.role not in STAFF:
            return self._signin_page(request, 403, error=Texts(lang)("not_staff"))
        cookie, now = sessions.new_secret(), datetime.now(timezone.utc)
        expires = sessions.expiry(jwt.decode(token, options={"verify_signature": False}).get("exp"), now,
                                  float(self.config.get("SESSION_HOURS", 12)))
        with self.db.transaction() as s:
            s.add(SignIn(id=sessions.key_of(cookie), token=token, subject=who.subject, role=who.role, area=who.area,
                         department=who.department, csrf=sessions.new_secret(), signed_in_at=now, expires_at=expires))
        answer = redirect("/queue")
        answer.set_cookie(sessions.SESSION_COOKIE, cookie, **sessions.cookie_options(
            self._secure(request), int((expires - now).total_seconds())))
        answer.delete_cookie(sessions.SIGNIN_COOKIE, path="/")
        return answer

    @http("POST", "/signout")
    @page
    def signout(self, request):
        visitor = self._visitor(request)
        sessions.check_csrf(visitor.sign_in.csrf, request.form.get("csrf"))
        with self.db.transaction() as s:
            s.execute(delete(SignIn).where(SignIn.id == visitor.sign_in.id))
        answer = redirect("/signin?bye=1")
        answer.delete_cookie(sessions.SESSION_COOKIE, path="/", secure=self._secure(request), httponly=True,
                             samesite="Strict")
        return answer

    @http("GET", "/lang")
    @page
    def choose_language(self, request):
        answer = redirect(local_path(request.args.get("next")))
        answer.set_cookie(sessions.LANG_COOKIE, language(request.args.get("to")), max_age=365 * 86400, path="/",
                          samesite="Strict", secure=self._secure(request))
        return answer

    # --- the work queue ------------------------------------------------------------------------

    @http("GET", "/queue")
    @page
    def queue(self, request):
        visitor = self._visitor(request)
        return self._render(visitor, "queue.html", **self._queue(visitor))

    @http("GET", "/queue/rows")
    @page
    def queue_rows(self, request):
        visitor = self._visitor(request)
        return self._render(visitor, "queue_sections.html", **self._queue(visitor))

    @http("GET", "/events")
    @page
    def events(self, request):
        """Server-Sent Events: `work` when work of the person's area arrives (the page then asks for its rows)."""
        visitor = self._visitor(request)
        page_id, inbox = self.feed.open(visitor.who)
        request.environ["eventlet.minimum_write_chunk_size"] = 0  # each event leaves at once, not in 4 KiB lots
        hub = self.feed

        def stream():
            try:
                yield "retry: 2000\n\n"
                while True:
                    try:
                        news = inbox.get(timeout=HEARTBEAT_SECONDS)
                    except Empty:
                        yield ": still here\n\n"  # a page gone away is noticed when this cannot be written
                        continue
                    yield f"event: work\ndata: {json.dumps(news, ensure_ascii=False)}\n\n"
            finally:
                hub.close(page_id)
        return Response(stream(), 200, {**SECURITY_HEADERS, "Content-Type": "text/event-stream; charset=utf-8",
                                        "X-Accel-Buffering": "no"})

    # --- a ticket --------------------------------------------------------------------------------

    @http("GET", "/tickets/<string:ticket_id>")
    @page
    def ticket(self, request, ticket_id):
        visitor = self._visitor(request)
        done = DONE.get(request.args.get("done", ""))
        return self._ticket_page(visitor, ticket_id, message=visitor.t("done") + visitor.t(done) if done else None)

    @http("POST", "/tickets/<string:ticket_id>/call")
    @page
    def call(self, request, ticket_id):
        """The resident's number, to call them: intake records the read, with the reason, given or refused."""
        visitor = self._form(request)
        reason = (request.form.get("reason") or "").strip()
        calls = self.backends.for_token(visitor.sign_in.token)
        try:
            contact = calls.get("intake", f"/tickets/{quote(ticket_id, safe='')}/contact", params={"reason": reason})
        except Refused as exc:
            return self._ticket_page(visitor, ticket_id, error=exc)
        return self._ticket_page(visitor, ticket_id, contact=contact)

    @http("POST", "/tickets/<string:ticket_id>/<string:action>")
    @page
    def act(self, request, ticket_id, action):
        """accept, start, resolve (note), return (reason), file (note), decide (approved, decision), reassign
        (grid_code or assignee_id, reason), transfer (department, reason), place (village_code), cancel (reason):
        sent to dispatch as the person; its refusal is shown with its status."""
        visitor = self._form(request)
        if action not in views.ACTIONS:
            raise Refused(404, f"no such action: {action[:40]}")
        form = {key: (request.form.get(key) or "").strip() for key in
                ("note", "reason", "grid_code", "assignee_id", "village_code", "department", "approved", "decision")}
        body = {"resolve": {"note": form["note"]}, "return": {"reason": form["reason"]},
                "file": {"note": form["note"]}, "cancel": {"reason": form["reason"]},
                "decide": {"approved": form["approved"], "decision": form["decision"]},
                "reassign": {k: form[k] for k in ("grid_code", "assignee_id", "reason") if form[k]},
                "transfer": {"department": form["department"], "reason": form["reason"]},
                "place": {"village_code": form["village_code"]}}.get(action, {})
        return self._send(visitor, ticket_id, f"/tickets/{quote(ticket_id, safe='')}/{action}", body, done=action)

    @http("POST", "/tickets/<string:ticket_id>/tasks/<int:task_id>")
    @page
    def record_call(self, request, ticket_id, task_id):
        """A call's outcome (the 10-second callback, the 回访, reaching a resident no message reached)."""
        visitor = self._form(request)
        body = {"outcome": request.form.get("outcome") or "", "note": (request.form.get("note") or "").strip()}
        return self._send(visitor, ticket_id, f"/tasks/{task_id}/done", body, done="task")

    # --- supervision -------------------------------------------------------------------------------

    @http("GET", "/supervise")
    @page
    def supervise(self, request):
        visitor = self._visitor(request)
        who, calls = visitor.who, self.backends.for_token(visitor.sign_in.token)
        period, level = request.args.get("period") or None, request.args.get("level") or None
        now = datetime.now(timezone.utc)
        area = f"/queues/{quote(who.area, safe='')}"
        days = views.last_days(views.china_today(now))
        asked = [(area, {"state": "open", "missed": "true"}), (area, {"state": "open", "overdue": "true"}),
                 (area, {"state": "open", "escalated": "true"}),
                 ("/ledger", {k: v for k, v in (("period", period), ("level", level)) if v}),
                 ("/ledger", {k: v for k, v in (("period", period), ("level", views.finer(level, who.area))) if v}),
                 ("/ledger", {"level": "day", "period": views.month_of(days[0])}),
                 ("/ledger", {"level": "day", "period": views.month_of(days[-1])})]
        missed, late, escalated, ledger, finer, *months = GreenPool(len(asked)).starmap(  # side by side: one wait
            lambda path, params: calls.get("dispatch", path, params), asked)
        overdue = {c["ticket_id"]: c for c in missed + late}  # missed a deadline, or late now (not yet fired)
        trend = views.trend(days, [row for month in months for row in month["rows"]])
        return self._render(visitor, "supervise.html", overdue=views.all_rows(list(overdue.values()), now),
                            escalated=views.all_rows(escalated, now),
                            ledger=ledger, finer=finer if finer["level"] != ledger["level"] else None,
                            period=period or "", level=level or "",
                            resolve_bars=views.rate_bars(ledger["rows"], "resolved_on_time_rate", "resolved"),
                            trend=trend, names=self.backends.category_names(visitor.lang), now=now)

    @http("GET", "/supervise/ledger.csv")
    @page
    def ledger_csv(self, request):
        visitor = self._visitor(request)
        params = {"format": "csv", **{k: request.args[k] for k in ("period", "level") if request.args.get(k)}}
        answer = self.backends.for_token(visitor.sign_in.token).get("dispatch", "/ledger", params, raw=True)
        name = f"ledger-{visitor.who.area}-{params.get('period', 'all')}.csv"
        return Response(answer.content, 200, {**SECURITY_HEADERS, "Content-Type": "text/csv; charset=utf-8",
                                              "Content-Disposition": f'attachment; filename="{name}"'})

    # --- the rest ------------------------------------------------------------------------------------

    @http("GET", "/static/<string:name>")
    def static(self, request, name):
        if name not in STATIC:
            return self.http_error(request.path, 404, "no such file")
        return Response((HERE / "static" / name).read_bytes(), 200,
                        {"Content-Type": STATIC[name], "Cache-Control": "public, max-age=3600",
                         "X-Content-Type-Options": "nosniff"})

    @timer(interval=600)
    def forget_ended_sessions(self):
        with self.db.transaction() as s:
            return s.execute(delete(SignIn).where(SignIn.expires_at < datetime.now(timezone.utc))).rowcount

    @staticmethod
    def http_error(path: str, status: int, message: str):
        """What the web server answers by itself (no such path, wrong method): a page, not JSON."""
        return status, HTML, render("error.html", t=Texts("zh-CN"), status=status, message=message, path=path,
                                    title="not_found" if status == 404 else "error")

    # -- helpers --

    def _visitor(self, request, required: bool = True) -> Visitor:
        lang = language(request.cookies.get(sessions.LANG_COOKIE))
        cookie = request.cookies.get(sessions.SESSION_COOKIE)
        sign_in = None
        if cookie:
            with self.db.transaction() as s:
                sign_in = s.scalar(select(SignIn).where(SignIn.id == sessions.key_of(cookie)))
        who = None
        if sign_in is not None and as_utc(sign_in.expires_at) > datetime.now(timezone.utc):
            try:
                who = self.staff.verify(sign_in.token)  # revoked since, or its key removed: the session ends
            except Unauthenticated:
                who = None
        if who is None and required:
            raise NotSignedIn()
        return Visitor(who, sign_in if who else None, lang, request.full_path.rstrip("?"))

    def _form(self, request) -> Visitor:
        visitor = self._visitor(request)
        sessions.check_csrf(visitor.sign_in.csrf, request.form.get("csrf"))
        return visitor

    def _secure(self, request) -> bool:
        return sessions.over_tls(request.scheme, request.headers.get("X-Forwarded-Proto"),
                                 self.config.get("COOKIE_SECURE", "auto"))

    def _queue(self, visitor) -> dict:
        who, calls, now = visitor.who, self.backends.for_token(visitor.sign_in.token), datetime.now(timezone.utc)
        cases = calls.get("dispatch", f"/queues/{quote(who.area, safe='')}", {"state": views.QUEUE_STATES})
        tasks = calls.get("dispatch", "/tasks", {"state": "open"})
        waiting, in_hand = views.queue_rows(cases, now)
        return {"waiting": waiting, "in_hand": in_hand, "tasks": tasks, "now": now,
                "names": self.backends.category_names(visitor.lang)}

    def _ticket_page(self, visitor, ticket_id, message=None, error: Refused | None = None, contact=None):
        calls = self.backends.for_token(visitor.sign_in.token)
        path = visitor.path = f"/tickets/{quote(ticket_id, safe='')}"
        case = calls.get("dispatch", path)  # a refusal here is the page's answer (403: not theirs)
        try:
            asked, asked_error = calls.get("intake", path), None
        except Refused as exc:
            asked, asked_error = None, exc.message
        try:
            tasks = calls.get("dispatch", "/tasks", {"state": "open"})
        except Refused:
            tasks = []
        now = datetime.now(timezone.utc)
        body = self._render(visitor, "ticket.html", case=case, asked=asked, asked_error=asked_error,
                            actions=views.actions_for(visitor.who, case), contact=contact,
                            calls=views.calls_for(visitor.who, tasks, case["ticket_id"]), message=message,
                            error=error, names=self.backends.category_names(visitor.lang), now=now,
                            row=views.queue_rows([case], now))
        if error is not None:
            body.status_code = error.status if error.status < 500 else 502
        return body

    def _send(self, visitor, ticket_id, path, body, done) -> Response:
        """A form's call to dispatch as the person: back to the ticket saying what was done, or its page with
        dispatch's refusal and status."""
        try:
            self.backends.for_token(visitor.sign_in.token).post("dispatch", path, body)
        except Refused as exc:
            return self._ticket_page(visitor, ticket_id, error=exc)
        return redirect(f"/tickets/{quote(ticket_id, safe='')}?done={done}")

    def _render(self, visitor, template, status: int = 200, **context) -> Response:
        who = visitor.who
        return Response(render(template, t=visitor.t, who=who, csrf=visitor.sign_in and visitor.sign_in.csrf,
                               supervisor=who is not None and who.role in {SUPERVISOR, ADMIN} | DISPATCHERS,
                               countdown=views.countdown, path=visitor.path, **context), status, HTML)

    def _signin_page(self, request, status, notice=None, error=None) -> Response:
        lang = language(request.cookies.get(sessions.LANG_COOKIE))
        csrf = sessions.new_secret()
        answer = Response(render("signin.html", t=Texts(lang), csrf=csrf, notice=notice, error=error, path="/signin"),
                          status, HTML)
        answer.set_cookie(sessions.SIGNIN_COOKIE, csrf, **sessions.cookie_options(
            self._secure(request), sessions.SIGNIN_FORM_SECONDS))
        return answer

    def _error(self, request, lang, status, message, title="error") -> Response:
        return Response(render("error.html", t=Texts(lang), status=status, message=message, title=title,
                               path=request.path), status, HTML)
