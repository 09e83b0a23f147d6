"""RabbitMQ virtual hosts of our own, so runs never disturb each other (demo, benchmark, tests).

Managed with `rabbitmqctl` (the management HTTP API may not be enabled): root or
the rabbitmq user runs it directly, anyone else through `sudo -n`.
`SDJ_RABBITMQCTL` may name another command, e.g. `rabbitmqctl -n rabbit@otherhost`.
"""
from __future__ import annotations

import json
import os
import pwd
import shlex
import shutil
import subprocess
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from services.common.amqp import broker_uris

TIMEOUT = 60.0  # seconds for one rabbitmqctl call
HINT = "is RabbitMQ up? run deploy/ensure-rabbitmq.sh (and see SDJ_RABBITMQCTL)"


def _command() -> list[str]:
    configured = os.environ.get("SDJ_RABBITMQCTL") or os.environ.get("SDJ_TEST_RABBITMQCTL")
    if configured:
        return shlex.split(configured)
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])
    ctl = shutil.which("rabbitmqctl", path=search) or "rabbitmqctl"
    if os.geteuid() == 0 or pwd.getpwuid(os.geteuid()).pw_name == "rabbitmq":
        return [ctl]
    sudo = shutil.which("sudo")
    return [sudo, "-n", ctl] if sudo else [ctl]


def rabbitmqctl(*args: str) -> str:
    """Run `rabbitmqctl <args>`; return stdout or raise RuntimeError saying why."""
    command = [*_command(), *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise RuntimeError(f"cannot run {shlex.join(command)}: {exc}; {HINT}") from None
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{shlex.join(command)} did not finish within {TIMEOUT:g}s; {HINT}") from None
    if done.returncode != 0:
        output = "\n".join(part.strip() for part in (done.stdout, done.stderr) if part.strip())
        raise RuntimeError(f"{shlex.join(command)} failed with exit code {done.returncode}; {HINT}\n{output}")
    return done.stdout


def vhost_uri(base: str, vhost: str) -> str:
    """`base` with its vhost replaced (on each broker, when it names several separated by `;`)."""
    return ";".join(_vhost_on(node, vhost) for node in broker_uris(base))


def _vhost_on(base: str, vhost: str) -> str:
    parts = urlsplit(base)
    if not parts.hostname:
        raise RuntimeError(f"{base!r} has no host; expected amqp://user:pass@host:port/")
    return urlunsplit((parts.scheme, parts.netloc, "/" + quote(vhost, safe=""), parts.query, ""))


def fresh_vhost(base: str, vhost: str, replace: bool = True) -> str:
    """(Re)create `vhost` empty, give the URI's user all rights on it, return its URI. `replace=False`: the
    name is new (nothing to delete first). Each rabbitmqctl call starts an Erlang VM (about a second): the
    vhost and the rights are made in one."""
    user = unquote(urlsplit(broker_uris(base)[0]).username or "guest")
    if replace:
        try:
            rabbitmqctl("delete_vhost", vhost)
        except RuntimeError:
            pass  # it did not exist
    v, u, acting = (_binary(x) for x in (vhost, user, "songdaojia"))
    rabbitmqctl("eval", f"ok = rabbit_vhost:add({v}, {acting}), rabbit_auth_backend_internal:set_permissions("
                        f"{u}, {v}, <<\".*\">>, <<\".*\">>, <<\".*\">>, {acting}).")
    return vhost_uri(base, vhost)


def _binary(text: str) -> str:
    """An Erlang binary literal of `text` (UTF-8)."""
    return "<<" + json.dumps(text, ensure_ascii=False) + "/utf8>>"


@contextmanager
def throwaway_vhost(base: str, prefix: str = "sdj-test") -> Iterator[str]:
    """A vhost that exists for the `with` block only; deleting it closes what is still open in it."""
    vhost = f"{prefix}-{uuid.uuid4().hex[:8]}"
    uri = fresh_vhost(base, vhost, replace=False)
    try:
        yield uri
    finally:
        rabbitmqctl("delete_vhost", vhost)


def delete_users(vhost: str, directory: Path) -> None:
    """Remove a throwaway deployment's broker users (made by broker.secure, their logins kept in
    `<directory>/broker/<user>.uri`), after tests: one rabbitmqctl call for all of them."""
    names = sorted(path.stem for path in (Path(directory) / "broker").glob("*.uri"))
    if not names:
        return
    users = ", ".join(_binary(name) for name in names)
    try:
        rabbitmqctl("eval", f"[catch rabbit_auth_backend_internal:delete_user(U, {_binary('songdaojia')}) "
                            f"|| U <- [{users}]].")
    except RuntimeError:
        pass  # the broker is gone already (a test's own node)
