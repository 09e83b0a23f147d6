"""HTTP for staff APIs: JSON in, JSON out, and an error that says which field and why.

`http` is nameko's entrypoint on a server of our own (`ApiServer`): every answer the
server gives by itself (no such path, wrong method, a request line or body too long)
is JSON too, never werkzeug's HTML page or eventlet's empty body. A service may give
paths of its own an error format of their own (intake's Open311 answers
[{code, description}]) with a `http_error(path, status, message)` function on its class.

`api(...)` wraps an endpoint: it records what the endpoint takes and answers (for the
OpenAPI document, see openapi.py) and turns the errors below into their status.
"""
from __future__ import annotations

import functools
import json
import logging

from eventlet.wsgi import HeaderLineTooLong, HeadersTooLarge, HttpProtocol
from marshmallow import EXCLUDE, Schema, ValidationError
from nameko.web.handlers import HttpRequestHandler
from nameko.web.server import HttpOnlyProtocol, WebServer, WsgiApp
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.wrappers import Request, Response

from .staff import Forbidden, Unauthenticated

log = logging.getLogger(__name__)
MAX_BODY = 64 * 1024
MAX_URL = 8 * 1024  # request line: method, path and query
JSON = "application/json; charset=utf-8"


class HttpError(Exception):
    def __init__(self, status: int, message: str, errors: dict | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.errors, self.headers = status, message, errors, headers or {}


def json_response(value, status: int = 200, headers: dict | None = None):
    return status, {"Content-Type": JSON, **(headers or {})}, json.dumps(value, ensure_ascii=False, default=str)


def read_json(request, schema: Schema) -> dict:
    """The body, as `schema` loads it; 415 unless it says it is JSON (a cross-site form post cannot)."""
    if request.mimetype != "application/json":
        raise HttpError(415, f"Content-Type: {request.mimetype or 'none'!r}; send application/json")
    if request.content_length and request.content_length > MAX_BODY:
        raise HttpError(413, f"body: larger than {MAX_BODY} bytes")
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


def read_query(request, schema: Schema) -> dict:
    """The query string, as `schema` loads it (parameters it does not know are ignored)."""
    try:
        return schema.load(request.args.to_dict(), unknown=EXCLUDE)
    except ValidationError as exc:
        raise HttpError(400, "invalid query parameters", exc.messages) from None


def error_answer(status: int, message: str, errors: dict | None = None, headers: dict | None = None):
    body = {"error": message}
    if errors:
        body["fields"] = errors
    return json_response(body, status, headers)


UNAUTHENTICATED = {"WWW-Authenticate": 'Bearer realm="songdaojia", error="invalid_token"'}


def api(summary: str, *, answers: dict[int, type[Schema] | dict | None], body: type[Schema] | None = None,
        query: type[Schema] | None = None, auth: str | None = "bearer", many: bool = False,
        also_as: dict[str, dict] | None = None):
    """Describe an endpoint (summary, body, query, answers by status; `auth`: "bearer" for a staff
    token, "gateway" for a signed gateway call, None for public; `also_as`: other content types of its
    200 answer, e.g. {"text/csv": {"type": "string"}}) and map its errors:
    HttpError to its status, Unauthenticated to 401, Forbidden to 403, unparseable input to 400."""
    def decorate(method):
        @functools.wraps(method)
        def wrapper(*args, **kwargs):
            try:
                return method(*args, **kwargs)
            except HttpError as exc:
                return error_answer(exc.status, exc.message, exc.errors, exc.headers)
            except Unauthenticated as exc:
                return error_answer(401, str(exc), headers=UNAUTHENTICATED)
            except Forbidden as exc:
                return error_answer(403, str(exc))
            except HTTPException as exc:  # e.g. a body over the limit while werkzeug reads it
                return error_answer(exc.code or 400, f"unreadable request: {exc.description}"[:300])
            except UnicodeError as exc:  # input werkzeug could not even decode
                return error_answer(400, f"unreadable request: {exc}"[:300])
            except Exception:  # a bug of ours: logged, and still answered in JSON
                log.exception("%s failed", method.__name__)
                return error_answer(500, "internal error; it has been logged")
        wrapper.api = {"summary": summary, "answers": answers, "body": body, "query": query,
                       "auth": auth, "many": many, "also_as": also_as or {}}
        return wrapper
    return decorate


# --- the server: JSON for what it answers by itself -----------------------------------------

class ApiProtocol(HttpOnlyProtocol):
    """eventlet's protocol, answering what it refuses before any app sees the request in JSON too."""

    def parse_request(self):
        try:
            return super().parse_request()
        except (HeaderLineTooLong, HeadersTooLarge):  # eventlet would answer 400 with an empty body
            self.wfile.write(self.server.app.raw_error(getattr(self, "path", "/")[:200], 431,
                                                       "request headers too large"))
            self.close_connection = 1
            return False

    def _read_request_line(self):
        line = super()._read_request_line()
        if len(line) >= self.server.url_length_limit:  # eventlet would answer 414 with an empty body
            path = line.split(b" ")[1][:200].decode("latin-1") if line.count(b" ") else "/"
            self.wfile.write(self.server.app.raw_error(path, 414, f"request line longer than {MAX_URL} bytes"))
            self.close_connection = 1
            return b""  # nothing more to do for this connection
        return line


class ApiApp(WsgiApp):
    def __call__(self, environ, start_response):
        request = Request(environ, shallow=True)
        request.max_content_length = MAX_BODY
        adapter = self.url_map.bind_to_environ(environ)
        try:
            provider, values = adapter.match()
        except MethodNotAllowed as exc:
            allowed = ", ".join(sorted(exc.valid_methods or ()))
            answer = self.error(request.path, 405, f"{request.method} {request.path}: allowed {allowed}",
                                {"Allow": allowed})
        except HTTPException:  # no such path (404), or a redirect werkzeug would offer
            answer = self.error(request.path, 404, f"no such path: {request.method} {request.path}"[:300])
        else:
            request.path_values = values
            return provider.handle_request(request)(environ, start_response)
        status, headers, body = answer
        return Response(body, status, headers)(environ, start_response)

    def error(self, path: str, status: int, message: str, headers: dict | None = None):
        custom = getattr(self.server.container.service_cls, "http_error", None)
        answer = custom(path, status, message) if custom else None
        status, base, body = answer or error_answer(status, message)
        return status, {**base, **(headers or {})}, body

    def raw_error(self, path: str, status: int, message: str) -> bytes:
        status, headers, body = self.error(path, status, message)
        payload = body.encode("utf-8")
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        return (f"HTTP/1.0 {status} {HttpProtocol.responses.get(status, ('',))[0]}\r\n{head}"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n").encode("latin-1") + payload


class ApiServer(WebServer):
    def get_wsgi_app(self):
        return ApiApp(self)

    def get_wsgi_server(self, sock, wsgi_app, protocol=ApiProtocol, debug=False):
        server = super().get_wsgi_server(sock, wsgi_app, protocol=protocol, debug=debug)
        server.url_length_limit = MAX_URL
        return server


class ApiRequestHandler(HttpRequestHandler):
    server = ApiServer()


http = ApiRequestHandler.decorator  # nameko's `@http(method, url)`, served by ApiServer
