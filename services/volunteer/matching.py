"""Pure volunteer matching: who should get the offer for a ticket that needs a volunteer.

No framework, database or network here, so the service can rebuild the index from
its own tables at start-up and the rules can be tested (and benchmarked) in isolation.

Rule: among volunteers with the skill who are not excluded, not at `max_load` and available at the
request's time (their availability windows, China time; none given: any time), prefer the ticket's own
village, else its town; pick the lowest load/max_load ratio, ties broken by volunteer id so the same
state always gives the same answer.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

CHINA = timezone(timedelta(hours=8), "CST")  # availability windows are local times

SKILLS: tuple[str, ...] = (
    "errand",      # 跑腿代办: errands for elderly people living alone
    "delivery",    # 生活物资配送: delivering daily goods
    "elder_care",  # 助老: visits and care for the elderly
    "medical",     # 义诊: free clinics
    "legal",       # 法律援助: legal aid
    "repair",      # 维修: household repairs
    "farm_sales",  # 农产品代销: selling farm produce on villagers' behalf
    "tutoring",    # 助学: help for school children
    "mediation",   # 调解: neighbourhood dispute mediation
    "policy",      # 政策宣讲: explaining policies
)
_KNOWN_SKILLS = frozenset(SKILLS)

DISTANCE_VILLAGE = "village"
DISTANCE_TOWN = "town"


@dataclass(frozen=True)
class Window:
    """When a volunteer can be asked: on `days` (1 Monday … 7 Sunday), from `start` to `end` minutes after local
    midnight (0 … 1440; end after start)."""
    days: frozenset[int]
    start: int
    end: int

    def __post_init__(self):
        if not self.days or not self.days <= set(range(1, 8)):
            raise ValueError("days: 1 (Monday) to 7 (Sunday), at least one")
        if not 0 <= self.start < self.end <= 1440:
            raise ValueError("from and to: times of one day, from before to")

    def covers(self, local: datetime) -> bool:
        minute = local.hour * 60 + local.minute
        return local.isoweekday() in self.days and self.start <= minute < self.end


def available(windows: tuple[Window, ...], at: datetime | None) -> bool:
    """Can someone with these windows be asked at `at`? No windows, or no time given: yes."""
    if not windows or at is None:
        return True
    local = at.astimezone(CHINA)
    return any(w.covers(local) for w in windows)


@dataclass(frozen=True)
class Volunteer:
    id: str
    name: str
    team_id: str
    village_code: str
    town_code: str
    skills: frozenset[str]
    max_load: int  # tickets this volunteer can hold at once
    windows: tuple[Window, ...] = field(default=(), compare=False)  # when they can be asked; none: any time


@dataclass(frozen=True)
class MatchRequest:
    ticket_id: str
    village_code: str
    town_code: str
    skill: str
    # Volunteers who already declined, or let an offer expire, for this ticket.
    exclude: frozenset[str] = frozenset()
    at: datetime | None = None  # when the offer is made: volunteers not available then are passed over


@dataclass(frozen=True)
class Match:
    volunteer_id: str
    team_id: str
    distance: str  # DISTANCE_VILLAGE or DISTANCE_TOWN


class VolunteerIndex:
    """Volunteers bucketed by (village, skill) and (town, skill), plus their loads.

    A match scans at most one village bucket and one town bucket (tens to a few
    hundred volunteers in Suzhou), never the whole city. `match` does not change
    loads. On its own (the tests, the benchmark) the caller `take`s when it makes an
    offer (an open offer holds a place, so nobody is offered more tickets at once
    than they can carry) and `release`s when that offer is declined or expires, or
    its ticket is closed or cancelled. In the service the loads that count are in
    the database: the index only proposes, and is told each volunteer's load as
    the database has it (`set_load`), so it is a cache that is corrected, never
    trusted (services/volunteer/service.py).
    """

    def __init__(self) -> None:
        self._volunteers: dict[str, Volunteer] = {}
        self._load: dict[str, int] = {}
        self._by_village: dict[tuple[str, str], list[Volunteer]] = {}
        self._by_town: dict[tuple[str, str], list[Volunteer]] = {}
        # How many bucket entries the last `match` looked at; lets tests prove
        # the search stays local without relying on timing.
        self.last_candidates_examined = 0

    def __len__(self) -> int:
        return len(self._volunteers)

    def __contains__(self, volunteer_id: str) -> bool:
        return volunteer_id in self._volunteers

    def add(self, volunteer: Volunteer, load: int = 0) -> None:
        """A new volunteer, holding `load` tickets already."""
        if volunteer.id in self._volunteers:
            raise ValueError(f"duplicate volunteer id {volunteer.id}")
        if volunteer.max_load < 1:
            raise ValueError(f"{volunteer.id}: max_load must be at least 1")
        unknown = volunteer.skills - _KNOWN_SKILLS
        if unknown:
            raise ValueError(f"{volunteer.id}: unknown skills {sorted(unknown)}")
        if load < 0:
            raise ValueError(f"{volunteer.id}: load cannot be negative")
        self._volunteers[volunteer.id] = volunteer
        self._load[volunteer.id] = load
        for skill in volunteer.skills:
            self._by_village.setdefault((volunteer.village_code, skill), []).append(volunteer)
            self._by_town.setdefault((volunteer.town_code, skill), []).append(volunteer)

    def load_of(self, volunteer_id: str) -> int:
        return self._load[volunteer_id]

    def take(self, volunteer_id: str) -> None:
        """Count one more ticket against the volunteer; refuses to go past max_load."""
        if self._load[volunteer_id] >= self._volunteers[volunteer_id].max_load:
            raise ValueError(f"{volunteer_id} is already at max_load")
        self._load[volunteer_id] += 1

    def release(self, volunteer_id: str) -> None:
        """One ticket fewer; a duplicate release (e.g. a redelivered event) stays at 0, and one of a
        volunteer no longer in the registry (an offer older than a re-seed) changes nothing."""
        if self._load.get(volunteer_id, 0) > 0:
            self._load[volunteer_id] -= 1

    def set_load(self, volunteer_id: str, load: int) -> None:
        """The volunteer holds `load` tickets (as the database says): may be at or even past max_load when
        max_load was lowered; such a volunteer is simply not proposed. Unknown volunteers are ignored (the
        registry is read once, at start)."""
        if volunteer_id in self._load:
            self._load[volunteer_id] = max(0, load)

    def forget(self, volunteer_id: str) -> None:
        """The volunteer is gone from the registry: never proposed again."""
        volunteer = self._volunteers.pop(volunteer_id, None)
        if volunteer is None:
            return
        del self._load[volunteer_id]
        for skill in volunteer.skills:
            for buckets, place in ((self._by_village, volunteer.village_code), (self._by_town, volunteer.town_code)):
                bucket = buckets[(place, skill)]
                bucket.remove(volunteer)
                if not bucket:
                    del buckets[(place, skill)]

    def set_loads(self, busy: dict[str, int]) -> None:
        """Every volunteer's load at once: those in `busy` hold what it says, everyone else none."""
        for volunteer_id, load in self._load.items():
            if load and volunteer_id not in busy:
                self._load[volunteer_id] = 0
        for volunteer_id, load in busy.items():
            self.set_load(volunteer_id, load)

    def match(self, request: MatchRequest) -> Match | None:
        self.last_candidates_examined = 0
        village_bucket = self._by_village.get((request.village_code, request.skill), ())
        best = self._least_loaded(village_bucket, request.exclude, request.at)
        if best is not None:
            return Match(best.id, best.team_id, DISTANCE_VILLAGE)
        # Same-village volunteers in the town bucket were all just found unavailable,
        # so whoever wins here lives in another village of the town.
        town_bucket = self._by_town.get((request.town_code, request.skill), ())
        best = self._least_loaded(town_bucket, request.exclude, request.at)
        if best is not None:
            return Match(best.id, best.team_id, DISTANCE_TOWN)
        return None

    def _least_loaded(self, bucket, exclude: frozenset[str], at: datetime | None) -> Volunteer | None:
        self.last_candidates_examined += len(bucket)
        best: Volunteer | None = None
        best_key: tuple[float, str] | None = None
        for volunteer in bucket:
            load = self._load[volunteer.id]
            if load >= volunteer.max_load or volunteer.id in exclude:
                continue
            if volunteer.windows and not available(volunteer.windows, at):
                continue
            # Equal fractions give equal floats (division is correctly rounded),
            # so ties really fall through to the id.
            key = (load / volunteer.max_load, volunteer.id)
            if best_key is None or key < best_key:
                best, best_key = volunteer, key
        return best


# --- reproducible demo data -------------------------------------------------

_SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧"
_GIVEN_CHARS = "秀英华玉兰桂芳明建国军伟强磊洋勇杰娟霞敏静丽红梅海平德志忠文"


def _spread(slots: int, items: int, rng: random.Random) -> list[int]:
    """How many items each slot gets: everyone ⌊items/slots⌋, the rest to random slots."""
    base, extra = divmod(items, slots)
    counts = [base] * slots
    for slot in rng.sample(range(slots), extra):
        counts[slot] += 1
    return counts


def _chinese_name(rng: random.Random) -> str:
    given_length = rng.choice((1, 2, 2))  # two-character given names are the more common
    return rng.choice(_SURNAMES) + "".join(rng.choice(_GIVEN_CHARS) for _ in range(given_length))


def generate_volunteers(
    villages: list[tuple[str, str]],
    seed: int = 3413,
    teams: int = 6228,
    volunteers: int = 100_000,
) -> list[Volunteer]:
    """Demo volunteers for (village_code, town_code) pairs; same arguments → same list."""
    if not villages or teams < 1 or volunteers < 0:
        raise ValueError("need at least one village, one team and a non-negative volunteer count")
    rng = random.Random(seed)

    team_homes: list[tuple[str, str]] = []  # (village_code, town_code) per team, in team-id order
    for village, team_count in zip(villages, _spread(len(villages), teams, rng)):
        team_homes.extend([village] * team_count)
    team_width = max(4, len(str(teams)))
    volunteer_width = max(6, len(str(volunteers)))

    result: list[Volunteer] = []
    members_per_team = _spread(teams, volunteers, rng)
    for team_number, ((village_code, town_code), members) in enumerate(
        zip(team_homes, members_per_team), start=1
    ):
        team_id = f"T{team_number:0{team_width}d}"
        for _ in range(members):
            result.append(Volunteer(
                id=f"V{len(result) + 1:0{volunteer_width}d}",
                name=_chinese_name(rng),
                team_id=team_id,
                village_code=village_code,
                town_code=town_code,
                skills=frozenset(rng.sample(SKILLS, rng.randint(1, 3))),
                max_load=rng.randint(2, 5),
            ))
    return result
