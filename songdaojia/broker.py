"""The broker's side of the trust model: a vhost, one user per service and per outside party,
each allowed only what it needs, and how long dead letters are kept. Idempotent.

Users are named `<vhost>.<who>`:
- `<vhost>.intake`, `.dispatch`, `.volunteer`, `.notify`, `.outreach`: configure, write and read only
  their own exchanges and queues (`<service>.…`), read the event exchanges they consume from, and bind
  there only the events they handle (topic permissions). intake alone may also write to the
  default exchange: it answers outside publishers on their reply_to queues. outreach may also write
  to `intake.submissions`, as `submit.grid_visit` and `submit.night_talk` only: the needs it finds.
- `<vhost>.publisher-<name>`: write only to `intake.submissions`, only as `submit.<channel>`;
  declare and read only server-named queues of its own connection (receipts).
- `<vhost>.console-<name>`: read `dispatch.work`, binding only keys of its area.
- `<vhost>.monitor`: read every service's events (the demo's and the benchmark's observer).
- `<vhost>.admin`: everything on the vhost (set-up: migrations, declaring queues).
guest keeps no rights on the vhost. Dead-letter queues get a policy: a TTL and a length cap.

Applied with `rabbitmqctl import_definitions` (one call) and `clear_permissions` for guest.
Passwords are made once and kept in `<dir>/broker/<user>.uri` (and `<user>.env`, AMQP_URI=… for a
systemd unit); running again changes nothing.
"""
from __future__ import annotations

import base64
import hashlib
import importlib
import json
import os
import re
import secrets
import tempfile
import time
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from services.common.amqp import broker_uris
from services.common.tokens import write_private
from services.intake.tickets import CHANNELS

from .vhosts import rabbitmqctl

SERVICE_CLASSES = {"intake": "IntakeService", "dispatch": "DispatchService", "volunteer": "VolunteerService",
                   "notify": "NotifyService", "outreach": "OutreachService"}
SUBMITS = {"outreach": ("grid_visit", "night_talk")}  # a service that sends requests to intake's front door
ANSWERS_PUBLISHERS = {"intake"}  # writes to the default exchange: receipts on publishers' reply_to queues
SERVER_NAMED = r"amq\.gen-.*"
DEAD_LETTER_DAYS = 14
DEAD_LETTER_MAX = 100_000


def user_name(vhost: str, who: str) -> str:
    return f"{vhost}.{who}"


def _password_hash(password: str) -> str:
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt + sha256(salt + password))."""
    salt = os.urandom(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode("utf-8")).digest()).decode("ascii")


def _any_of(names) -> str:
    return "^(" + "|".join(names) + ")$"


def service_rights(service: str) -> dict:
    from services.common.messaging import consumers_of
    cls = getattr(importlib.import_module(f"services.{service}.service"), SERVICE_CLASSES[service])
    own = re.escape(service) + r"\..*"
    consumed = consumers_of(cls)
    sources: dict[str, set[str]] = {}
    for c in consumed:
        if c.exchange and not c.exchange.startswith(f"{service}."):  # "": a reply queue of its own, nothing bound
            sources.setdefault(c.exchange, set()).update(c.routing_keys)
    write = [own] + (["amq\\.default"] if service in ANSWERS_PUBLISHERS else [])
    topics = {exchange: {"write": "^$", "read": _any_of(re.escape(k) for k in sorted(keys))}
              for exchange, keys in sources.items()}
    if service in SUBMITS:  # as an outside publisher may: only `submit.<its channels>`
        write.append(r"intake\.submissions")
        topics["intake.submissions"] = {"write": _any_of(f"submit\\.{c}" for c in SUBMITS[service]), "read": "^$"}
    return {"configure": _any_of([own]), "write": _any_of(write),
            "read": _any_of([own] + [re.escape(x) for x in sorted(sources)]), "topics": topics}


def publisher_rights() -> dict:
    return {"configure": _any_of([SERVER_NAMED]), "write": _any_of([r"intake\.submissions"]),
            "read": _any_of([SERVER_NAMED]),
            "topics": {"intake.submissions": {"write": _any_of(f"submit\\.{c}" for c in CHANNELS), "read": "^$"}}}


def own_queues(who: str) -> str:
    """Queues a console or the monitor may name itself, `<who>.<anything>` (a quorum queue on a cluster must
    be named), beside server-named ones."""
    return re.escape(who) + r"\..*"


def console_rights(area_path: tuple[str, ...], name: str = "city") -> dict:
    """A console bound to an area's subtree of dispatch.work (e.g. area.3413.341323.#), and to the desks of
    departments in it: a city's console binds dept.#, a county's dept.*.<county> (town consoles none).
    Its queues: server-named, or named `console-<name>.…`."""
    prefix = r"area\." + r"\.".join(re.escape(code) for code in area_path)
    area = area_path[-1]
    departments = (r"dept(\..*)?" if len(area) == 4 else
                   rf"dept\.(\*|[a-z]+)\.{re.escape(area)}" if len(area) == 6 else "$^")
    own = own_queues(f"console-{name}")
    return {"configure": _any_of([SERVER_NAMED, own]), "write": _any_of([SERVER_NAMED, own]),
            "read": _any_of([SERVER_NAMED, own, r"dispatch\.work"]),
            "topics": {"dispatch.work": {"write": "^$", "read": f"^({prefix}(\\..*)?|{departments})$"}}}


def monitor_rights() -> dict:
    events = [re.escape(s) + r"\.events" for s in SERVICE_CLASSES]
    own = own_queues("monitor")
    return {"configure": _any_of([SERVER_NAMED, own]), "write": _any_of([SERVER_NAMED, own]),
            "read": _any_of([SERVER_NAMED, own] + events), "topics": {}}


ADMIN_RIGHTS = {"configure": ".*", "write": ".*", "read": ".*", "topics": {}}


def parties(vhost: str, publishers=("channels",), consoles: dict[str, tuple[str, ...]] | None = None,
            monitor: bool = True) -> dict[str, dict]:
    """Every broker user of a deployment and its rights."""
    users = {user_name(vhost, s): service_rights(s) for s in SERVICE_CLASSES}
    users[user_name(vhost, "admin")] = ADMIN_RIGHTS
    users.update({user_name(vhost, f"publisher-{p}"): publisher_rights() for p in publishers})
    users.update({user_name(vhost, f"console-{name}"): console_rights(path, name)
                  for name, path in (consoles or {}).items()})
    if monitor:
        users[user_name(vhost, "monitor")] = monitor_rights()
    return users


def definitions(vhost: str, users: dict[str, dict], passwords: dict[str, str],
                dead_letter_days: float = DEAD_LETTER_DAYS, dead_letter_max: int = DEAD_LETTER_MAX) -> dict:
    return {
        "vhosts": [{"name": vhost}],
        "users": [{"name": u, "password_hash": _password_hash(passwords[u]),
                   "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": []} for u in users],
        "permissions": [{"user": u, "vhost": vhost, "configure": r["configure"], "write": r["write"],
                         "read": r["read"]} for u, r in users.items()],
        "topic_permissions": [{"user": u, "vhost": vhost, "exchange": exchange, **rights}
                              for u, r in users.items() for exchange, rights in r["topics"].items()],
        "policies": [{"vhost": vhost, "name": "songdaojia-dead-letters", "pattern": r"\.dead-letter$",
                      "apply-to": "queues", "priority": 0,
                      "definition": {"message-ttl": int(dead_letter_days * 86_400_000),
                                     "max-length": int(dead_letter_max), "overflow": "drop-head"}}],
    }


def uri_of(base: str, vhost: str, user: str, password: str) -> str:
    """The user's URI on each broker of `base` (several, `;`-separated, on a cluster)."""
    return ";".join(_uri_on(node, vhost, user, password) for node in broker_uris(base))


def _uri_on(base: str, vhost: str, user: str, password: str) -> str:
    parts = urlsplit(base)
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{parts.hostname or '127.0.0.1'}:{parts.port or 5672}"
    return urlunsplit((parts.scheme or "amqp", netloc, "/" + quote(vhost, safe=""), "", ""))


def read_uri(directory: Path, user: str) -> str:
    return (directory / "broker" / f"{user}.uri").read_text(encoding="utf-8").strip()


def secure(base_uri: str, vhost: str, directory: Path, publishers=("channels",),
           consoles: dict[str, tuple[str, ...]] | None = None, monitor: bool = True,
           dead_letter_days: float = DEAD_LETTER_DAYS, dead_letter_max: int = DEAD_LETTER_MAX) -> dict[str, str]:
    """Create or update the vhost's users, rights and policy; return each user's AMQP URI."""
    users = parties(vhost, publishers, consoles, monitor)
    passwords, uris = {}, {}
    for user in users:  # keep a password once made: running this again changes nothing
        path = directory / "broker" / f"{user}.uri"
        if path.exists():
            passwords[user] = urlsplit(broker_uris(path.read_text(encoding="utf-8"))[0]).password or ""
        if not passwords.get(user):
            passwords[user] = secrets.token_urlsafe(24)
        uris[user] = uri_of(base_uri, vhost, user, passwords[user])
        write_private(path, uris[user] + "\n")
        write_private(path.with_suffix(".env"),  # for a systemd unit's EnvironmentFile
                      f"AMQP_URI={uris[user]}\nSDJ_BROKER_PREFIX={vhost}\n")
    document = definitions(vhost, users, passwords, dead_letter_days, dead_letter_max)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(document, f)
    try:
        os.chmod(f.name, 0o644)  # rabbitmqctl may run as the rabbitmq user
        rabbitmqctl("import_definitions", f.name)
    finally:
        os.unlink(f.name)
    try:
        rabbitmqctl("clear_permissions", "-p", vhost, "guest")
    except RuntimeError:
        pass  # guest had no rights there, or does not exist
    _wait_for_login(uris[user_name(vhost, "admin")])
    return uris


def _wait_for_login(uri: str, timeout: float = 30.0) -> None:
    """import_definitions works in the background: wait until a new user can log in."""
    import pika
    deadline = time.monotonic() + timeout
    while True:
        try:
            pika.BlockingConnection(pika.URLParameters(broker_uris(uri)[0])).close()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the broker users were not usable within {timeout:g}s") from None
            time.sleep(0.2)
