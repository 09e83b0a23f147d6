"""Demo sign-ins for the web console: a staff token per role, for people of one village of the demo, written
where `./sdj run --keep-running` says (owner-only). A county's identity provider issues these in production.

The grid worker and the village cadre are whoever the demo roster (services/dispatch/roster.py) has on duty
today for the demo's village, so what the demo routes there reaches them."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

DEMO_VILLAGE = "341323104214"  # a village of 灵璧县 (the README's example request comes from there)
DEMO_ADDRESS = "杨东村三组"


@dataclass(frozen=True)
class SignIn:
    role: str
    subject: str
    area: str
    department: str | None = None


def grid_worker_on_duty(village: str, address: str, at: datetime) -> SignIn:
    """Who a request from `address` in `village` is offered to at `at`: its grid's worker on duty."""
    from services.dispatch.areas import AreaMap
    from services.dispatch.roster import on_duty
    grid = AreaMap.load().grid_for(village, address)
    return SignIn("grid_worker", on_duty(grid, at).id, grid.code)


def demo_people(at: datetime | None = None, village: str = DEMO_VILLAGE, address: str = DEMO_ADDRESS) -> list[SignIn]:
    from services.dispatch.roster import village_duty
    at = at or datetime.now(timezone.utc)
    town, county, city = village[:9], village[:6], village[:4]
    return [grid_worker_on_duty(village, address, at),
            SignIn("village_cadre", village_duty(village, at).id, village),
            SignIn("town_dispatcher", f"D-{town}-1", town),
            SignIn("county_dispatcher", f"D-{county}-1", county),
            SignIn("supervisor", f"S-{city}-1", city)]


def write_demo_tokens(secrets, directory: Path, ttl: timedelta = timedelta(hours=8)) -> list[tuple[SignIn, Path]]:
    """A token file per role of demo_people(), signed with the run's key (security.Secrets)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    written = []
    for person in demo_people():
        path = directory / f"{person.role}.jwt"
        path.touch(mode=0o600)
        claims = {"department": person.department} if person.department else {}
        path.write_text(secrets.token(person.subject, person.role, person.area, ttl=ttl, **claims) + "\n",
                        encoding="utf-8")
        written.append((person, path))
    return written


CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


def sign_in_over_http(console_url: str, token: str):
    """Sign in to the web console as its form does, without a browser (the benchmark, a second person in the
    tests): the HTTP session holding the cookie, and the CSRF token its forms carry. Raises for a refusal."""
    import requests
    http = requests.Session()
    form = http.get(f"{console_url}/signin", timeout=10)
    answer = http.post(f"{console_url}/signin", data={"token": token, "csrf": CSRF_FIELD.search(form.text)[1]},
                       timeout=10)
    answer.raise_for_status()
    if not answer.url.endswith("/queue"):
        raise RuntimeError(f"signing in to {console_url} ended on {answer.url}, not the queue")
    return http, CSRF_FIELD.search(answer.text)[1]
