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
from typing import Iterator, Sequence
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from services.common.amqp import broker_uris

TIMEOUT = 60.0  # seconds for one rabbitmqctl call
HINT = "is RabbitMQ up? run deploy/ensure-rabbitmq.sh (and see SDJ_RABBITMQCTL)"


def ctl_command() -> list[str]:
    """The rabbitmqctl command line as configured now (SDJ_RABBITMQCTL, else rabbitmqctl, through sudo -n
    when needed)."""
    configured = os.environ.get("SDJ_RABBITMQCTL") or os.environ.get("SDJ_TEST_RABBITMQCTL")
    if configured:
        return shlex.split(configured)
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])
    ctl = shutil.which("rabbitmqctl", path=search) or "rabbitmqctl"
    if os.geteuid() == 0 or pwd.getpwuid(os.geteuid()).pw_name == "rabbitmq":
        return [ctl]
    sudo = shutil.which("sudo")
    return [sudo, "-n", ctl] if sudo else [ctl]


def rabbitmqctl(*args: str, ctl: list[str] | None = None) -> str:
    """Run `rabbitmqctl <args>` (`ctl`: the command, else as configured now); return stdout or raise
    RuntimeError saying why."""
    command = [*(ctl or ctl_command()), *args]
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


def _binary(text: str) -> str:
    """An Erlang binary literal of `text` (UTF-8)."""
    return "<<" + json.dumps(text, ensure_ascii=False) + "/utf8>>"


ACTING = _binary("songdaojia")  # the acting user the broker records for what these calls do


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
    name is new (nothing to delete first)."""
    if replace:
        try:
            rabbitmqctl("delete_vhost", vhost)
        except RuntimeError:
            pass  # it did not exist
    return make_vhosts(base, [vhost])[0]


def make_vhosts(base: str, vhosts: Sequence[str], ctl: list[str] | None = None) -> list[str]:
    """Create `vhosts` (new names), give the URI's user all rights on each, return their URIs: one
    rabbitmqctl call for all of them (each call starts an Erlang VM, about a second)."""
    user = _binary(unquote(urlsplit(broker_uris(base)[0]).username or "guest"))
    rabbitmqctl("eval", f"[begin ok = rabbit_vhost:add(V, {ACTING}), rabbit_auth_backend_internal:set_permissions("
                        f"{user}, V, <<\".*\">>, <<\".*\">>, <<\".*\">>, {ACTING}) end "
                        f"|| V <- [{', '.join(map(_binary, vhosts))}]], ok.", ctl=ctl)
    return [vhost_uri(base, vhost) for vhost in vhosts]


def delete_vhosts(vhosts: Sequence[str], ctl: list[str] | None = None) -> None:
    """Delete `vhosts`, closing what is still open in them, in one rabbitmqctl call; one that is gone
    already is passed over."""
    if vhosts:
        rabbitmqctl("eval", f"[catch rabbit_vhost:delete(V, {ACTING}) || V <- [{', '.join(map(_binary, vhosts))}]], "
                            "ok.", ctl=ctl)


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
        rabbitmqctl("eval", f"[catch rabbit_auth_backend_internal:delete_user(U, {ACTING}) "
                            f"|| U <- [{users}]].")
    except RuntimeError:
        pass  # the broker is gone already (a test's own node)
