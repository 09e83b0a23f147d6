"""POST requests.{fmt} of Open311 GeoReport v2: the form, checked field by field.

Every problem is an Open311Error naming the field and why (400), a bad or
missing api_key (403), or an unknown service_code (404).
"""
from __future__ import annotations

import re
from datetime import datetime

from werkzeug.datastructures import MultiDict

from services.common.envelope import MalformedEvent

from .catalogue import Catalogue, Category
from .intake import normalise_phone
from .open311 import Open311Error
from .places import Places, coordinates_problem

MAX_FIELD = 4000
EMAIL = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")
URL = re.compile(r"^https?://\S+$")


def bad(field: str, why: str) -> Open311Error:
    return Open311Error(400, f"{field}: {why}")


def parse_request_form(form, catalogue: Catalogue, places: Places, api_keys: set[str]) -> dict:
    for key in form.keys():
        if any(len(v) > MAX_FIELD for v in form.getlist(key)):
            raise bad(key, f"longer than {MAX_FIELD} characters")
    if not form.get("api_key"):
        raise Open311Error(403, "api_key: missing; ask the county data bureau for one")
    if form["api_key"] not in api_keys:
        raise Open311Error(403, "api_key: not a valid key")
    code = form.get("service_code", "").strip()
    if not code:
        raise bad("service_code", "missing")
    category = catalogue.get(code)
    if category is None:
        raise Open311Error(404, f"service_code: {code!r} is not in the service catalogue")
    lat, long = _coordinates(form)
    village, county = _place(form, places, lat, long)
    phone = normalise_phone(form.get("phone"))
    if phone and not 7 <= len(phone) <= 15:
        raise bad("phone", "not a phone number")
    email = form.get("email") or None
    if email and not EMAIL.match(email):
        raise bad("email", "not an email address")
    media_url = form.get("media_url") or None
    if media_url and not URL.match(media_url):
        raise bad("media_url", "not an http(s) URL")
    name = " ".join(p for p in (form.get("last_name", ""), form.get("first_name", "")) if p).strip()
    return {
        "category": category, "village_code": village and village.code,
        "county_code": village.code[:6] if village else county.code,
        "address": form.get("address_string") or (village.full_name if village else
                                                   f"{county.name} ({lat:.5f}, {long:.5f}) 待定位"),
        "description": form.get("description") or category.name_zh,
        "lat": lat, "long": long, "media_url": media_url,
        "attributes": attributes(form, category),
        "resident": {"name": name or None, "phone": phone, "email": email, "locale": "zh-CN",
                     "vulnerable": False},
    }


def _coordinates(form) -> tuple[float | None, float | None]:
    given = [form.get("lat"), form.get("long")]
    if not any(given):
        return None, None
    if not all(given):
        raise bad("lat/long", "give both or neither")
    try:
        lat, long = float(given[0]), float(given[1])
    except ValueError:
        raise bad("lat/long", "not numbers") from None
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
            raise bad("address_id", f"{address_id!r} is not a village or community code of Suzhou (NBS 2023)")
        return village, None
    address = form.get("address_string", "").strip()
    village = places.find(address) if address else None
    if village is not None:
        return village, None
    if lat is not None:
        return None, places.nearest_county(lat, long)
    if address:
        raise bad("address_string", "names no single village of Suzhou; give the village "
                                    "(e.g. 灵璧县杨疃镇杨东村), address_id, or lat/long")
    raise bad("address_id", "a location is required: address_id, address_string, or lat/long")


def attributes(form, category: Category) -> dict:
    """attribute[code] (and attribute[code][] for multi-value lists), checked against the definition."""
    known = {a["code"]: a for a in category.attributes}
    for key in form.keys():
        m = re.fullmatch(r"attribute\[([^\]]+)\](\[\])?", key)
        if m and m.group(1) not in known:
            raise bad(key, f"not an attribute of service {category.code}")
    values = {}
    for code, spec in known.items():
        raw = form.getlist(f"attribute[{code}]") + form.getlist(f"attribute[{code}][]")
        raw = [v for v in raw if v != ""]
        if not raw:
            if spec.get("required"):
                raise bad(f"attribute[{code}]", f"required ({spec.get('description') or code})")
            continue
        values[code] = _typed(f"attribute[{code}]", spec, raw)
    return values


def _typed(field: str, spec: dict, raw: list[str]):
    datatype = spec["datatype"]
    keys = {str(v["key"]) for v in spec.get("values") or []}
    if datatype == "multivaluelist":
        unknown = [v for v in raw if v not in keys]
        if unknown:
            raise bad(field, f"{unknown} not among {sorted(keys)}")
        return raw
    if len(raw) > 1:
        raise bad(field, "takes one value")
    value = raw[0]
    if datatype == "singlevaluelist" and value not in keys:
        raise bad(field, f"{value!r} not among {sorted(keys)}")
    if datatype == "number":
        try:
            return float(value)
        except ValueError:
            raise bad(field, f"{value!r} is not a number") from None
    if datatype == "datetime":
        try:
            return datetime.fromisoformat(value).isoformat()
        except ValueError:
            raise bad(field, f"{value!r} is not an ISO 8601 date-time") from None
    return value


def attributes_of_submission(given: dict, category: Category) -> dict:
    """The same checks for a submission arriving over AMQP: `{"code": value or [values]}`."""
    form = MultiDict()
    for code, value in (given or {}).items():
        for item in value if isinstance(value, list) else [value]:
            form.add(f"attribute[{code}]", str(item))
    try:
        return attributes(form, category)
    except Open311Error as exc:
        raise MalformedEvent(exc.description) from None
