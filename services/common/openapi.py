"""Each service's OpenAPI 3.1 document, generated from its endpoints' `api(...)` descriptions
and their marshmallow schemas (apispec): what a staff API takes, answers and requires.

Served by every service at `/openapi.json`; the suite fuzzes every operation against it
(schemathesis), so the document is what the service does, not what someone meant it to do.
"""
from __future__ import annotations

import inspect
import re

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema, fields

from .http import ApiRequestHandler

_PATH_PARAMETER = re.compile(r"<(?:[a-z]+:)?([a-zA-Z_]+)>")
BEARER = "bearer"
PATH_EXAMPLES = {"ticket_id": "SDJ-261127-7KQ2M4XA", "ticket_no": "SDJ-261127-7KQ2M4XA", "area_code": "341323",
                 "volunteer_id": "V000001"}
GATEWAY_HEADERS = (("X-Sdj-Gateway", "the gateway's name"),
                   ("X-Sdj-Timestamp", "seconds since 1970 (UTC), within 5 minutes of the service's clock"),
                   ("X-Sdj-Signature", "hex HMAC-SHA256 of '<timestamp>.<body>' with the gateway's secret"))


class Error(Schema):
    error = fields.String(required=True, metadata={"description": "what is wrong, and with which field"})
    fields_ = fields.Dict(data_key="fields", keys=fields.String(),
                          metadata={"description": "per field: why it was refused"})


def _status_words(status: int) -> str:
    return {200: "OK", 202: "accepted: it will be done", 400: "bad input: the field and why", 401: "no token, or one that proves nothing",
            403: "outside the caller's role or area", 404: "not found", 405: "method not allowed",
            409: "not in a state that allows it", 413: "body too large",
            415: "the body must be application/json", 429: "too many requests"}.get(status, str(status))


def document(service_cls, title: str, description: str = "", version: str = "1") -> dict:
    spec = APISpec(title=title, version=version, openapi_version="3.1.0", plugins=[MarshmallowPlugin()],
                   info={"description": description})
    spec.components.security_scheme(BEARER, {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    spec.components.schema("Error", schema=Error)
    for name, method in sorted(inspect.getmembers(service_cls, inspect.isfunction)):
        described = getattr(method, "api", None)
        for entrypoint in getattr(method, "nameko_entrypoints", ()):
            if isinstance(entrypoint, ApiRequestHandler) and described:
                _add_operation(spec, name, entrypoint, described, method.__doc__)
    return spec.to_dict()


def _add_operation(spec: APISpec, name: str, entrypoint, described: dict, doc: str | None) -> None:
    path = _PATH_PARAMETER.sub(r"{\1}", entrypoint.url)
    parameters = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"},
                   **({"example": PATH_EXAMPLES[name]} if name in PATH_EXAMPLES else {})}
                  for name in _PATH_PARAMETER.findall(entrypoint.url)]
    if described["query"] is not None:
        parameters.append({"in": "query", "schema": described["query"]})
    answers = dict(described["answers"])
    if parameters:
        answers.setdefault(404, None)  # a path parameter naming nothing
    if described["body"] is not None:
        for status in (400, 413, 415):
            answers.setdefault(status, None)
    if described["query"] is not None:
        answers.setdefault(400, None)
    if described["auth"]:
        answers.setdefault(401, None)
        answers.setdefault(403, None)
    if described["auth"] == "gateway":
        parameters += [{"name": name, "in": "header", "required": True, "schema": {"type": "string"},
                        "description": why} for name, why in GATEWAY_HEADERS]
    operation = {
        "summary": described["summary"],
        "description": inspect.cleandoc(doc or ""),
        "operationId": name,
        "parameters": parameters,
        "responses": {str(status): _response(status, schema, described["many"], described.get("also_as"))
                      for status, schema in sorted(answers.items())},
    }
    if described["body"] is not None:
        operation["requestBody"] = {"required": True,
                                    "content": {"application/json": {"schema": described["body"]}}}
    if described["auth"] == "bearer":
        operation["security"] = [{BEARER: []}]
    spec.path(path=path, operations={entrypoint.method.lower(): operation})


def _response(status: int, schema, many: bool, also_as: dict | None = None) -> dict:
    if schema is None:
        schema = "Error"
    elif 200 <= status < 300 and many:
        schema = {"type": "array", "items": schema}
    answer = {"description": _status_words(status), "content": {"application/json": {"schema": schema}}}
    if status == 200:
        answer["content"].update({kind: {"schema": other} for kind, other in (also_as or {}).items()})
    if status == 401:
        answer["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
    return answer
