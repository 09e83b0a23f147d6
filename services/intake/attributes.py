"""A category's attributes (its Open311 service definition): the values a request gives, checked.

Both ways in give values as a list per attribute code: Open311 forms as repeated fields
(`attribute[code]`, `attribute[code][]`), AMQP submissions as JSON (`{"code": value}` for a
single value, `{"code": [values]}` for a multi-value list). `label(code)` names the field
in the way the caller wrote it.
"""
from __future__ import annotations

import math
from datetime import datetime
from typing import Callable

from .catalogue import Category
from .errors import InvalidRequest


def checked(values: dict[str, list[str]], category: Category, label: Callable[[str], str]) -> dict:
    known = {a["code"]: a for a in category.attributes}
    for code in values:
        if code not in known:
            raise InvalidRequest(label(code), f"not an attribute of service {category.code}")
    result = {}
    for code, spec in known.items():
        given = [v for v in values.get(code, []) if v != ""]
        if not given:
            if spec.get("required"):
                raise InvalidRequest(label(code), f"required ({spec.get('description') or code})")
            continue
        result[code] = _typed(label(code), spec, given)
    return result


def of_submission(given: dict, category: Category) -> dict:
    """An AMQP submission's attributes: a multi-value list must be a JSON list, anything else must not."""
    values = {}
    for code, value in (given or {}).items():
        spec = next((a for a in category.attributes if a["code"] == code), None)
        label = f"attributes.{code}"
        if spec is not None and (spec["datatype"] == "multivaluelist") != isinstance(value, list):
            raise InvalidRequest(label, "must be a list of values" if spec["datatype"] == "multivaluelist"
                                 else "takes one value, not a list")
        if any(isinstance(item, (dict, list)) for item in (value if isinstance(value, list) else [value])):
            raise InvalidRequest(label, "values must be strings or numbers")
        values[code] = [str(item) for item in (value if isinstance(value, list) else [value])]
    return checked(values, category, lambda code: f"attributes.{code}")


def _typed(field: str, spec: dict, raw: list[str]):
    datatype = spec["datatype"]
    keys = {str(v["key"]) for v in spec.get("values") or []}
    if datatype == "multivaluelist":
        unknown = [v for v in raw if v not in keys]
        if unknown:
            raise InvalidRequest(field, f"{unknown} not among {sorted(keys)}")
        return raw
    if len(raw) > 1:
        raise InvalidRequest(field, "takes one value")
    value = raw[0]
    if datatype == "singlevaluelist" and value not in keys:
        raise InvalidRequest(field, f"{value!r} not among {sorted(keys)}")
    if datatype == "number":
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise InvalidRequest(field, f"{value[:40]!r} is not a number")
        return number
    if datatype == "datetime":
        try:
            return datetime.fromisoformat(value).isoformat()
        except ValueError:
            raise InvalidRequest(field, f"{value!r} is not an ISO 8601 date-time") from None
    return value
