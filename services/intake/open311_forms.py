"""POST requests.{fmt} of Open311 GeoReport v2: the form, checked field by field.

Every problem is an InvalidRequest naming the field and why (answered 400), a bad or
missing api_key (403), or an unknown service_code (404). Lengths are checked here
against what the database holds, so an over-long value is a 400 naming it, on every database.
"""
from __future__ import annotations

import re
from urllib.parse import parse_qsl

from werkzeug.datastructures import MultiDict

from . import attributes as attribute_rules
from .catalogue import Catalogue
from services.common.contacts import email_problem, normalise_phone, phone_problem
from .errors import InvalidRequest
from .open311 import Open311Error
from .places import Places, coordinates_problem

MAX_FIELD = 4000
LIMITS = {"address_string": 200, "media_url": 500, "first_name": 50, "last_name": 50, "description": 2000}
MAX_NAME = 50
URL = re.compile(r"^https?://\S+$")
FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


def read_form(request) -> MultiDict:
    """The posted form, which must be UTF-8 throughout (werkzeug would quietly drop what is not)."""
    if request.mimetype not in FORMS:
        raise InvalidRequest("content type", f"{request.mimetype or 'none'!r}; send application/x-www-form-urlencoded")
    if request.mimetype == "multipart/form-data":
        form = request.form
        if any("\ufffd" in v for values in form.listvalues() for v in values):
            raise InvalidRequest("body", "not valid UTF-8")
        return form
    raw = request.get_data(cache=False)
    try:
        return MultiDict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True, encoding="utf-8", errors="strict"))
    except UnicodeDecodeError as exc:
        raise InvalidRequest("body", f"not valid UTF-8 ({exc.reason} at byte {exc.start})") from None


def parse_request_form(form, catalogue: Catalogue, places: Places) -> dict:
    """The checked request; the api_key is checked before (see clients.py)."""
    for key in form.keys():
        limit = LIMITS.get(key, MAX_FIELD)
        if any(len(v) > limit for v in form.getlist(key)):
            raise InvalidRequest(key[:60], f"longer than {limit} characters")
    code = form.get("service_code", "").strip()
    if not code:
        raise InvalidRequest("service_code", "missing")
    category = catalogue.get(code)
    if category is None:
        raise Open311Error(404, f"service_code: {code!r} is not in the service catalogue")
    lat, long = _coordinates(form)
    village, county = _place(form, places, lat, long)
    phone = form.get("phone") or None
    if phone and phone_problem(phone):
        raise InvalidRequest("phone", phone_problem(phone))
    email = form.get("email") or None
    if email and email_problem(email):
        raise InvalidRequest("email", email_problem(email))
    media_url = form.get("media_url") or None
    if media_url and not URL.match(media_url):
        raise InvalidRequest("media_url", "not an http(s) URL")
    name = " ".join(p for p in (form.get("last_name", ""), form.get("first_name", "")) if p).strip()
    if len(name) > MAX_NAME:
        raise InvalidRequest("last_name/first_name", f"together longer than {MAX_NAME} characters")
    return {
        "category": category, "village_code": village and village.code,
        "county_code": village.code[:6] if village else county.code,
        "address": form.get("address_string") or (village.full_name if village else
                                                   f"{county.name} ({lat:.5f}, {long:.5f}) 待定位"),
        "description": form.get("description") or category.name_zh,
        "lat": lat, "long": long, "media_url": media_url,
        "attributes": attributes(form, category),
        "resident": {"name": name or None, "phone": normalise_phone(phone), "email": email, "locale": "zh-CN",
                     "vulnerable": False},
    }


def _coordinates(form) -> tuple[float | None, float | None]:
    given = [form.get("lat"), form.get("long")]
    if not any(given):
        return None, None
    if not all(given):
        raise InvalidRequest("lat/long", "give both or neither")
    try:
        lat, long = float(given[0]), float(given[1])
    except ValueError:
        raise InvalidRequest("lat/long", "not numbers") from None
    problem = coordinates_problem(lat, long)
    if problem:
        raise Open311Error(400, problem)
    return lat, long


def _place(form, places: Places, lat: float | None, long: float | None):
    """The village a request is in, by address_id or address_string; a point alone (or with an address
    naming no village) leaves the village to the nearest county's dispatch centre: (None, county)."""
    address_id = form.get("address_id", "").strip()
    if address_id:
        village = places.village(address_id)
        if village is None:
            raise InvalidRequest("address_id", f"{address_id!r} is not a village or community code of Suzhou (NBS 2023)")
        return village, None
    address = form.get("address_string", "").strip()
    village = places.find(address) if address else None
    if village is not None:
        return village, None
    if lat is not None:
        return None, places.nearest_county(lat, long)
    if address:
        raise InvalidRequest("address_string", "names no single village of Suzhou; give the village "
                                    "(e.g. 灵璧县杨疃镇杨东村), address_id, or lat/long")
    raise InvalidRequest("address_id", "a location is required: address_id, address_string, or lat/long")


def attributes(form, category) -> dict:
    """attribute[code] (and attribute[code][] for multi-value lists), checked against the definition."""
    values: dict[str, list[str]] = {}
    for key in form.keys():
        m = re.fullmatch(r"attribute\[([^\]]+)\](\[\])?", key)
        if m:
            values.setdefault(m.group(1), []).extend(form.getlist(key))
    return attribute_rules.checked(values, category, lambda code: f"attribute[{code}]")
