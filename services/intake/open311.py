"""Open311 GeoReport v2 documents built from the service catalogue: pure functions, JSON or XML.

Specification: http://wiki.open311.org/GeoReport_v2 . Names are given in the
resident's language (`zh-CN` by default, `en` on request). Personal data never
appears in any Open311 document; a public answer does not carry the resident's own
words or where exactly they live either: no description, the village for the
address, coordinates rounded to the village (0.01°, about a kilometre). A client
whose api key may see more (staff tools) gets the description and exact location.
"""
from __future__ import annotations

import functools
import json
import logging
import re
from datetime import datetime, timedelta, timezone
from typing import Any
from xml.sax.saxutils import escape

from werkzeug.exceptions import HTTPException

from services.common.http import MAX_BODY

from .catalogue import Catalogue, Category
from .errors import InvalidRequest
from .status import ENDED

log = logging.getLogger(__name__)
SPEC = "http://wiki.open311.org/GeoReport_v2"
FORMATS = {"json": "application/json; charset=utf-8", "xml": "text/xml; charset=utf-8"}
LOCALES = ("zh-CN", "en")


class Open311Error(Exception):
    """An answer of the form [{code, description}] with its HTTP status."""

    def __init__(self, status: int, description: str, headers: dict | None = None):
        super().__init__(description)
        self.status, self.description, self.headers = status, description, headers or {}

    def document(self) -> list[dict]:
        return [{"code": self.status, "description": self.description}]


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise Open311Error(400, f"format: {fmt!r} is not supported; use .json or .xml")
    return fmt


def check_locale(locale: str | None) -> str:
    locale = locale or "zh-CN"
    if locale not in LOCALES:
        raise Open311Error(400, f"locale: {locale!r} is not supported; use zh-CN or en")
    return locale


def discovery(base_url: str, catalogue: Catalogue) -> dict:
    return {
        "changeset": catalogue.version,
        "contact": "送到家 Songdaojia service desk, via the county 12345 hotline",
        "key_service": "api keys are issued by the county data bureau (县数据资源管理局)",
        "endpoints": [{"specification": SPEC, "url": base_url, "changeset": catalogue.version,
                       "type": "production", "formats": ["text/xml", "application/json"]}],
    }


def service_list(catalogue: Catalogue, locale: str) -> list[dict]:
    return [service(c, locale) for c in sorted(catalogue.categories.values(), key=lambda c: c.code)]


def service(category: Category, locale: str) -> dict:
    en = locale == "en"
    return {
        "service_code": category.code,
        "service_name": category.name_en if en else category.name_zh,
        "description": (category.description_en if en else category.description_zh) or None,
        "metadata": bool(category.attributes),
        "type": "realtime",
        "keywords": ",".join(category.keywords) or None,
        "group": category.group,
    }


def service_definition(catalogue: Catalogue, code: str) -> dict:
    category = catalogue.get(code)
    if category is None:
        raise Open311Error(404, f"service_code: {code!r} is not in the service catalogue")
    return {"service_code": category.code, "attributes": [
        {"variable": True, "code": a["code"], "datatype": a["datatype"], "required": bool(a["required"]),
         "datatype_description": a.get("datatype_description") or None, "order": int(a.get("order", i + 1)),
         "description": a.get("description") or None,
         "values": [{"key": str(v["key"]), "name": str(v["name"])} for v in a.get("values") or []]}
        for i, a in enumerate(category.attributes)]}


# --- service requests ------------------------------------------------------------------------

STATUS_NOTES = {"received": "已受理", "routed": "已分派至网格", "offered": "已派给网格员，待签收",
                "accepted": "已签收，正在办理", "in_progress": "工作人员已上门办理",
                "escalated": "已督办，上级正在跟进", "returned": "已退回，正在重新分派",
                "filed": "已由代办员报送主管部门", "decided": "主管部门已作出决定",
                "resolved": "已办结，待回访", "followed_up": "已回访", "closed": "已回访，办结",
                "reopened": "群众不满意，正在重办", "cancelled": "已撤销（撤单），不再办理"}
UNPLACED_NOTE = "已转县调度中心，正在确定所在村（社区）"  # posted with lat/long alone
MAX_RESULTS = 1000
DEFAULT_WINDOW = timedelta(days=90)


def status_note(ticket) -> str:
    """Where the ticket stands, in the words residents read (Open311's status_notes, the staff view)."""
    if ticket.village_code is None and ticket.status in ("received", "routed"):
        return UNPLACED_NOTE
    return STATUS_NOTES.get(ticket.status, ticket.status)


VILLAGE_PRECISION = 2  # decimal places of a degree: about 1 km, no closer than the village


def request_document(ticket, category: Category | None, locale: str, place: str | None,
                     sees_more: bool = False) -> dict:
    """A ticket as Open311 shows it: where it stands, never who asked (no name, no phone); to the public
    not their words or home either (`place`: the village's or county's name stands for the address)."""
    name = (category.name_en if locale == "en" else category.name_zh) if category else None
    exact = sees_more
    return {
        "service_request_id": ticket.id,
        "status": "closed" if ticket.status in ENDED else "open",  # a cancelled request is closed too
        "status_notes": status_note(ticket),
        "service_name": name, "service_code": ticket.category,
        "description": (ticket.description or "")[:4000] if exact else None,
        "agency_responsible": _agency(ticket),
        "service_notice": None,
        "requested_datetime": _iso(ticket.submitted_at),
        "updated_datetime": _iso(ticket.updated_at or ticket.received_at),
        "expected_datetime": _iso(ticket.expected_at),
        "address": (ticket.address or None) if exact else place, "address_id": ticket.village_code,
        "zipcode": None, "lat": _coordinate(ticket.lat, exact), "long": _coordinate(ticket.long, exact),
        "media_url": ticket.media_url if exact else None,
    }


def _coordinate(value: float | None, exact: bool) -> float | None:
    return value if value is None or exact else round(value, VILLAGE_PRECISION)


def _agency(ticket) -> str | None:
    """Who has it: the grid worker, or (no village yet) the county's dispatch centre by its name."""
    if not ticket.assignee_name:
        return None
    return ticket.assignee_name if ticket.village_code is None else f"网格员 {ticket.assignee_name}"


def request_filters(args, now: datetime) -> dict:
    """The spec's filters for GET requests, checked: ids, service codes, dates, status."""
    ids = [i for i in args.get("service_request_id", "").split(",") if i]
    codes = [c for c in args.get("service_code", "").split(",") if c]
    statuses = [x for x in args.get("status", "").split(",") if x]
    for status in statuses:
        if status not in ("open", "closed"):
            raise Open311Error(400, f"status: {status!r} is neither open nor closed")
    end = _date_arg(args, "end_date") or now
    start = _date_arg(args, "start_date") or end - DEFAULT_WINDOW
    if start > end:
        raise Open311Error(400, "start_date: after end_date")
    if end - start > DEFAULT_WINDOW:
        raise Open311Error(400, "start_date: the range may not span more than 90 days")
    return {"ids": ids, "codes": codes, "statuses": statuses, "start": start, "end": end}


def _date_arg(args, name: str) -> datetime | None:
    raw = args.get(name)
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise Open311Error(400, f"{name}: {raw!r} is not a W3C date-time (2026-11-27T09:00:00+08:00)") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).isoformat()


# --- XML: the element names of the GeoReport v2 specification ------------------------------

_LIST_ITEM = {"services": "service", "attributes": "attribute", "values": "value",
              "endpoints": "endpoint", "formats": "format", "errors": "error",
              "service_requests": "request"}


def to_xml(root: str, value: Any) -> str:
    return '<?xml version="1.0" encoding="utf-8"?>\n' + _element(root, value)


_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff\ud800-\udfff]")


def xml_text(value: str) -> str:
    """Text as XML 1.0 can carry it: control characters (which no XML parser accepts) dropped, escaped."""
    return escape(_NOT_XML.sub("", value))


def _element(name: str, value: Any) -> str:
    if isinstance(value, dict):
        inner = "".join(_element(k, v) for k, v in value.items())
    elif isinstance(value, list):
        inner = "".join(_element(_LIST_ITEM.get(name, "item"), v) for v in value)
    elif value is None:
        inner = ""
    elif isinstance(value, bool):
        inner = "true" if value else "false"
    else:
        inner = xml_text(str(value))
    return f"<{name}>{inner}</{name}>"


def answer(fmt: str, root: str, document: Any, status: int = 200, headers: dict | None = None):
    """A nameko http answer: (status, headers, body) in the asked format."""
    body = to_xml(root, document) if fmt == "xml" else json.dumps(document, ensure_ascii=False)
    return status, {"Content-Type": FORMATS.get(fmt, FORMATS["json"]), **(headers or {})}, body


def error_for_path(path: str, status: int, description: str):
    """The answer the server gives by itself (no such path, 405, 414) under /open311: [{code, description}],
    in XML when the path asks for .xml; None elsewhere (the usual JSON error)."""
    if not path.startswith("/open311"):
        return None
    fmt = "xml" if path.rstrip("/").endswith(".xml") else "json"
    return answer(fmt, "errors", [{"code": status, "description": description}], status)


def open311_api(method):
    """Every Open311 failure answers [{code, description}] in the asked format, never a 500.

    A read is first admitted by the service's `clients` (clients.py): a known api_key, or the
    public, each within its rate; `request.client` is the caller's client (None: the public).
    A post admits its caller itself, by the api_key in its form.
    """
    @functools.wraps(method)
    def wrapper(self, request, *args, **kwargs):
        fmt = kwargs.get("fmt") if kwargs.get("fmt") in FORMATS else "json"
        try:
            if request.method != "POST":
                request.client = self.clients.admit(request.remote_addr, request.args.get("api_key"))
            return method(self, request, *args, **kwargs)
        except Open311Error as exc:
            return answer(fmt, "errors", exc.document(), exc.status, exc.headers)
        except InvalidRequest as exc:
            return answer(fmt, "errors", [{"code": 400, "description": str(exc)}], 400)
        except HTTPException as exc:  # input werkzeug could not read, e.g. a body over the limit (413)
            status = exc.code or 400
            why = f"body: larger than {MAX_BODY} bytes" if status == 413 else f"request: {exc.description}"[:300]
            return answer(fmt, "errors", [{"code": status, "description": why}], status)
        except UnicodeError as exc:
            return answer(fmt, "errors", [{"code": 400, "description": f"request: unreadable ({exc})"[:300]}], 400)
        except Exception:  # a bug of ours: logged, and still answered in the caller's format
            log.exception("Open311 %s %s failed", request.method, request.path)
            return answer(fmt, "errors", [{"code": 500, "description": "internal error; it has been logged"}], 500)
    return wrapper
