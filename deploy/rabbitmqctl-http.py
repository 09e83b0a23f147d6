#!/usr/bin/env python3
"""`rabbitmqctl`, for the calls Songdaojia makes, over RabbitMQ's management HTTP API.

`songdaojia secure` (deploy/secure.sh) sets the broker up with `rabbitmqctl`, which must run where the
broker runs. In a container deployment (deploy/compose.yaml) it runs in the app image instead, next
to the broker, with

    SDJ_RABBITMQCTL="python /opt/songdaojia/deploy/rabbitmqctl-http.py"
    SDJ_RABBITMQ_API=http://rabbitmq:15672/api  SDJ_RABBITMQ_USER=admin  SDJ_RABBITMQ_PASSWORD=…

(an administrator of the broker; the rabbitmq:*-management images serve the API). Understood:

    import_definitions FILE              POST   /api/definitions           (the file's JSON)
    clear_permissions -p VHOST USER      DELETE /api/permissions/VHOST/USER
    delete_user USER                     DELETE /api/users/USER
    add_vhost VHOST                      PUT    /api/vhosts/VHOST
    delete_vhost VHOST                   DELETE /api/vhosts/VHOST
    set_permissions -p VHOST USER C W R  PUT    /api/permissions/VHOST/USER

Exit status 0 on success; 1, with the API's answer on stderr, otherwise (as rabbitmqctl does). The API
is waited for up to SDJ_RABBITMQ_WAIT seconds (default 60): the management listener opens after AMQP's.
Standard library only.
"""
from __future__ import annotations

import base64
import json
import os
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import quote


def _path(*parts: str) -> str:
    return "/".join(quote(p, safe="") for p in parts)


def _vhost_and_rest(args: list[str]) -> tuple[str, list[str]]:
    vhost, rest, i = "/", [], 0
    while i < len(args):
        if args[i] in ("-p", "--vhost") and i + 1 < len(args):
            vhost, i = args[i + 1], i + 2
        else:
            rest.append(args[i])
            i += 1
    return vhost, rest


def request_for(args: list[str]) -> tuple[str, str, dict | None]:
    """(method, path under the API, JSON body) for a rabbitmqctl command line; ValueError if unknown."""
    if not args:
        raise ValueError("no command")
    command, vhost_args = args[0], args[1:]
    vhost, rest = _vhost_and_rest(vhost_args)
    if command == "import_definitions" and len(rest) == 1:
        with open(rest[0], encoding="utf-8") as f:
            return "POST", "definitions", json.load(f)
    if command == "clear_permissions" and len(rest) == 1:
        return "DELETE", _path("permissions", vhost, rest[0]), None
    if command == "set_permissions" and len(rest) == 4:
        user, configure, write, read = rest
        return "PUT", _path("permissions", vhost, user), {"configure": configure, "write": write, "read": read}
    if command == "delete_user" and len(rest) == 1:
        return "DELETE", _path("users", rest[0]), None
    if command == "add_vhost" and len(rest) == 1:
        return "PUT", _path("vhosts", rest[0]), {}
    if command == "delete_vhost" and len(rest) == 1:
        return "DELETE", _path("vhosts", rest[0]), None
    raise ValueError(f"not understood: {' '.join(args)} (see {__file__})")


def call(method: str, path: str, body: dict | None, env=os.environ) -> None:
    base = env.get("SDJ_RABBITMQ_API", "http://127.0.0.1:15672/api").rstrip("/")
    login = f"{env.get('SDJ_RABBITMQ_USER', 'guest')}:{env.get('SDJ_RABBITMQ_PASSWORD', 'guest')}"
    headers = {"Authorization": "Basic " + base64.b64encode(login.encode()).decode("ascii"),
               "Content-Type": "application/json"}
    data = None if body is None else json.dumps(body).encode("utf-8")
    deadline = time.monotonic() + float(env.get("SDJ_RABBITMQ_WAIT", "60"))
    while True:
        req = urllib.request.Request(f"{base}/{path}", data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=60) as answer:
                answer.read()
                return
        except urllib.error.HTTPError as exc:  # the API answered: no point in asking again
            raise RuntimeError(f"{method} {base}/{path}: {exc.code} {exc.read()[:500].decode('utf-8', 'replace')}")
        except (urllib.error.URLError, OSError) as exc:  # not listening (yet)
            if time.monotonic() > deadline:
                raise RuntimeError(f"{method} {base}/{path}: {exc}") from None
            time.sleep(1)


def main(argv: list[str]) -> int:
    try:
        call(*request_for(argv))
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"rabbitmqctl-http: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
