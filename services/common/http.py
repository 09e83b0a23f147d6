"""JSON over HTTP for staff APIs: clear errors (which field, why), never a 500 for bad input."""
from __future__ import annotations

import functools
import json
import logging

from marshmallow import Schema, ValidationError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)
MAX_BODY = 64 * 1024


class HttpError(Exception):
    def __init__(self, status: int, message: str, errors: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.errors = status, message, errors


def json_response(value, status: int = 200):
    return status, {"Content-Type": "application/json; charset=utf-8"}, json.dumps(
        value, ensure_ascii=False, default=str)


def read_json(request, schema: Schema) -> dict:
    if request.content_length and request.content_length > MAX_BODY:
        raise HttpError(413, f"body larger than {MAX_BODY} bytes")
    raw = request.get_data(cache=False) or b"{}"
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HttpError(400, f"body is not UTF-8 JSON: {exc}") from None
    if not isinstance(value, dict):
        raise HttpError(400, "body must be a JSON object")
    try:
        return schema.load(value)
    except ValidationError as exc:
        raise HttpError(400, "invalid fields", exc.messages) from None


def json_api(method):
    """Turn HttpError into its status with a JSON body naming the problem."""
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except HttpError as exc:
            body = {"error": exc.message}
            if exc.errors:
                body["fields"] = exc.errors
            return json_response(body, exc.status)
        except (HTTPException, UnicodeError) as exc:  # input werkzeug could not even parse
            return json_response({"error": f"unreadable request: {exc}"[:300]}, 400)
    return wrapper
