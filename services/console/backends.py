"""The services the console works through, over their HTTP APIs, always with the signed-in person's own
staff token: what they may see and do is decided there (a 403 from dispatch is shown as it is), never here.
The console reads no service's database."""
from __future__ import annotations

import time
from urllib.parse import quote

import requests
from nameko.extensions import DependencyProvider

TIMEOUT = (3.05, 10)  # connect, read: seconds
CATALOGUE_SECONDS = 600  # category names change with the catalogue, which changes rarely


class Refused(Exception):
    """A service said no (4xx) or could not answer (5xx, unreachable): its status and its words."""

    def __init__(self, status: int, message: str, fields: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.fields = status, message, fields or {}


class Calls:
    """One person's calls: `dispatch.get("/tickets/…")`-style helpers around a shared HTTP session."""

    def __init__(self, http: requests.Session, urls: dict[str, str], token: str | None):
        self.http, self.urls, self.token = http, urls, token

    def get(self, service: str, path: str, params: dict | None = None, raw: bool = False):
        return self._call("GET", service, path, params=params, raw=raw)

    def post(self, service: str, path: str, body: dict | None = None):
        return self._call("POST", service, path, json=body or {})

    def _call(self, method, service, path, raw=False, **kwargs):
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            answer = self.http.request(method, self.urls[service] + path, headers=headers, timeout=TIMEOUT, **kwargs)
        except requests.RequestException as exc:
            raise Refused(503, f"{service} did not answer ({type(exc).__name__})") from None
        if answer.status_code >= 400:
            try:
                body = answer.json()
                message, fields = body.get("error") or answer.reason, body.get("fields")
            except ValueError:
                message, fields = answer.reason, None
            raise Refused(answer.status_code, str(message), fields if isinstance(fields, dict) else None)
        return answer if raw else answer.json()


class Backends(DependencyProvider):
    """Injects `for_token(token) -> Calls` and the catalogue's category names (public, cached)."""

    def setup(self) -> None:
        config = self.container.config
        self.urls = {name: "http://" + str(config[f"{name.upper()}_HTTP"]).removeprefix("http://")
                     for name in ("intake", "dispatch")}
        self.http = requests.Session()
        self.http.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=int(config.get("max_workers", 20))))
        self._names: dict[str, tuple[float, dict]] = {}

    def stop(self) -> None:
        self.http.close()

    def get_dependency(self, worker_ctx) -> "Backends":
        return self

    def for_token(self, token: str | None) -> Calls:
        return Calls(self.http, self.urls, token)

    def category_names(self, lang: str) -> dict[str, str]:
        """code → name in `lang` (zh-CN or en), from intake's public Open311 list; {} while intake is away."""
        locale = "en" if lang == "en" else "zh-CN"
        cached = self._names.get(locale)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        try:
            services = self.for_token(None).get("intake", f"/open311/v2/services.json?locale={quote(locale)}")
            names = {s["service_code"]: s["service_name"] for s in services}
        except (Refused, KeyError, TypeError, ValueError):
            return cached[1] if cached else {}
        self._names[locale] = (time.monotonic() + CATALOGUE_SECONDS, names)
        return names
