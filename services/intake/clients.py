"""Open311 clients: one api key per client, what it may see, and how fast it may ask.

Config OPEN311_CLIENTS names a YAML file:

    clients:
      - name: county-wechat          # who it is (tickets it posts are scoped by it)
        key_sha256: 5e8f…            # sha256 (hex) of the key: the key itself is given to the client, not stored
        sees_more: false             # true: descriptions and exact locations in GET answers (staff tools)
        rate_per_minute: 600         # a token bucket: this many calls a minute …
        burst: 60                    # … in bursts of at most this many
    public: {rate_per_minute: 120, burst: 30}   # callers without a key, per address

Reading (GET) needs no key; posting needs one. Over its rate a caller gets 429 with
Retry-After. The demo key `songdaojia-demo-key` exists only with OPEN311_DEMO: true;
intake refuses to start with it otherwise. `songdaojia open311-client NAME` makes a key.
Buckets are kept per intake instance: N instances let a client through N times as fast.
"""
from __future__ import annotations

import hashlib
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from nameko.extensions import DependencyProvider

from .open311 import Open311Error

log = logging.getLogger(__name__)
DEMO_KEY = "songdaojia-demo-key"
PUBLIC = {"rate_per_minute": 120, "burst": 30}
MAX_TRACKED_ADDRESSES = 10_000


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh api key and the hash that goes into the clients file."""
    key = secrets.token_urlsafe(24)
    return key, key_hash(key)


@dataclass(frozen=True)
class Client:
    name: str
    sees_more: bool
    rate_per_minute: float
    burst: int


class TokenBucket:
    def __init__(self, rate_per_minute: float, burst: int):
        self.rate, self.burst = rate_per_minute / 60.0, max(1, int(burst))
        self.tokens, self.at = float(self.burst), time.monotonic()

    def take(self) -> float | None:
        """None when a call may go ahead now; else the seconds until it may."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return None
        return (1 - self.tokens) / self.rate if self.rate > 0 else 60.0

    def full(self) -> bool:
        return self.tokens + (time.monotonic() - self.at) * self.rate >= self.burst


class Clients:
    def __init__(self, clients: dict[str, Client], public: dict):
        self.by_hash = clients
        self.public = public
        self._buckets: dict[str, TokenBucket] = {}

    @classmethod
    def from_config(cls, config: dict) -> Clients:
        path, demo = config.get("OPEN311_CLIENTS") or None, bool(config.get("OPEN311_DEMO"))
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8")) if path else {}
        clients = {}
        for raw in (document or {}).get("clients") or []:
            clients[str(raw["key_sha256"]).lower()] = Client(
                str(raw["name"]), bool(raw.get("sees_more", False)), float(raw.get("rate_per_minute", 600)),
                int(raw.get("burst", 60)))
        if key_hash(DEMO_KEY) in clients and not demo:
            raise ValueError(f"OPEN311_CLIENTS: {path} holds the demo key {DEMO_KEY!r}, which anyone can read "
                             "in the README; give clients keys of their own, or set OPEN311_DEMO for a demo")
        if demo:
            clients[key_hash(DEMO_KEY)] = Client("demo", False, 60_000, 1_000)
        if not clients:
            log.warning("Open311: no clients configured (OPEN311_CLIENTS): posting requests is refused")
        return cls(clients, {**PUBLIC, **((document or {}).get("public") or {})})

    def admit(self, address: str | None, api_key: str | None, required: bool = False) -> Client | None:
        """The client an api_key belongs to (None: the public); 403 for a wrong key, 429 over the rate."""
        client = None
        if api_key:
            client = self.by_hash.get(key_hash(api_key))
            if client is None:
                raise Open311Error(403, "api_key: not a valid key")
        elif required:
            raise Open311Error(403, "api_key: missing; ask the county data bureau for one")
        key = f"client:{client.name}" if client else f"public:{address or '?'}"
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) > MAX_TRACKED_ADDRESSES:  # forget callers who have been quiet
                self._buckets = {k: b for k, b in self._buckets.items() if not b.full()}
            rate = (client.rate_per_minute, client.burst) if client else (
                float(self.public["rate_per_minute"]), int(self.public["burst"]))
            bucket = self._buckets[key] = TokenBucket(*rate)
        wait = bucket.take()
        if wait is not None:
            raise Open311Error(429, f"too many requests from {client.name if client else 'this address'}; "
                                    f"try again in {wait:.0f} s", {"Retry-After": str(max(1, round(wait + 0.5)))})
        return client


class Open311Clients(DependencyProvider):
    def setup(self) -> None:
        self.clients = Clients.from_config(self.container.config)

    def get_dependency(self, worker_ctx) -> Clients:
        return self.clients
