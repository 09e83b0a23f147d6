"""Which grid and which person get a resident's request, and the AMQP key consoles see it under.

Work keys are AMQP topic keys of dot-separated words, `area.<city>.<county>.<town>.<village>.<grid>`,
so a dispatch console binds its queue to its own subtree of the area tree with one binding.
A request known only by its county (a map point, no village) goes to that county's dispatch
centre under `area.<city>.<county>.unplaced`, which the county's consoles see, to be placed.

The escalation ladder (LEVELS) has a person or desk and a key at each level:
grid worker on duty (`…<village>.<grid>`), the village's duty cadre (`…<village>.duty`), the town's
dispatch desk (`…<town>.desk`), the county's dispatch centre (`…<county>.centre`). A village's
proxy clerk works under `…<village>.proxy`; a department's desk in a county under
`dept.<department>.<county>`, which department consoles bind.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.dispatch.areas import AreaMap
from services.dispatch.roster import desk_id, on_duty, proxy_clerk, staff_of, village_duty

WORK_KEY_PREFIX = "area"
DEPARTMENT_KEY_PREFIX = "dept"
UNPLACED = "unplaced"
LEVELS = ("grid", "village", "town", "county")  # the ladder: index = level
TOP = len(LEVELS) - 1


@dataclass(frozen=True)
class Assignment:
    grid_code: str | None  # None: a county's dispatch centre, not a grid
    assignee_id: str
    assignee_name: str
    area_path: tuple[str, ...]  # codes: city, county, town, village, grid (city, county if unplaced)
    work_key: str
    level: int = 0  # on the ladder (LEVELS)


class UnknownCounty(ValueError):
    def __init__(self, county_code: str):
        super().__init__(f"unknown county code {county_code!r}: not a county in the Suzhou division table")


class UnknownVillage(ValueError):
    def __init__(self, village_code: str):
        super().__init__(f"unknown village code {village_code!r}: not a village or community "
                         f"in the Suzhou division table")
        self.village_code = village_code
        self.field = "village_code"


class UnknownGrid(ValueError):
    def __init__(self, field: str, code: str, why: str = "no such grid in the area map"):
        super().__init__(f"{code!r}: {why}")
        self.field = field


def route(village_code: str, address_key: str, areas: AreaMap, at: datetime) -> Assignment:
    """Assign a request to the grid serving the address and to that grid's worker on duty at `at`."""
    if not areas.is_village(village_code):
        raise UnknownVillage(village_code)
    grid = areas.grid_for(village_code, address_key)
    worker = on_duty(grid, at)
    area_path = tuple(area.code for area in areas.path(village_code)) + (grid.code,)
    return Assignment(grid.code, worker.id, worker.name, area_path, _topic(area_path))


def route_to_county_centre(county_code: str, areas: AreaMap) -> Assignment:
    """A request with no village yet: the county's dispatch centre (县调度中心) places it."""
    try:
        county = areas.area(county_code)
    except KeyError:
        raise UnknownCounty(county_code) from None
    if county.level != "county":
        raise UnknownCounty(county_code)
    area_path = tuple(area.code for area in areas.path(county_code))
    return Assignment(None, desk_id("centre", county_code), f"{county.name}调度中心", area_path,
                      _topic(area_path + (UNPLACED,)), level=TOP)


def up_to(level: int, village_code: str | None, county_code: str, areas: AreaMap, at: datetime) -> Assignment:
    """Who answers at `level` of the ladder for a case in this village (or only this county)."""
    if level >= TOP or village_code is None:
        county = areas.area(county_code)
        path = tuple(a.code for a in areas.path(county_code))
        return Assignment(None, desk_id("centre", county_code), f"{county.name}调度中心", path,
                          _topic(path + ("centre",)), level=TOP)
    path = tuple(a.code for a in areas.path(village_code))
    if level == 1:
        cadre = village_duty(village_code, at)
        return Assignment(None, cadre.id, cadre.name, path, _topic(path + ("duty",)), level=1)
    town = areas.area(village_code[:9])
    return Assignment(None, desk_id("town", town.code), f"{town.name}调度", path[:3], _topic(path[:3] + ("desk",)),
                      level=2)


def to_worker(grid_code: str | None, worker_id: str | None, areas: AreaMap, at: datetime) -> Assignment:
    """A grid's worker on duty (grid_code), or a named worker of a grid (worker_id `W-<grid>-<n>`)."""
    field, code = ("grid_code", grid_code) if grid_code else ("assignee_id", worker_id)
    grid_part = grid_code or worker_id[2:].rpartition("-")[0]
    try:
        grid = areas.grid(grid_part)
    except KeyError:
        raise UnknownGrid(field, code) from None
    if worker_id:
        worker = next((w for w in staff_of(grid) if w.id == worker_id), None)
        if worker is None:
            raise UnknownGrid(field, code, "no such worker on that grid's roster")
    else:
        worker = on_duty(grid, at)
    area_path = tuple(area.code for area in areas.path(grid.village_code)) + (grid.code,)
    return Assignment(grid.code, worker.id, worker.name, area_path, _topic(area_path))


def to_proxy_clerk(village_code: str, areas: AreaMap) -> Assignment:
    """A 代办 item: the village service centre's proxy clerk files it with the department."""
    if not areas.is_village(village_code):
        raise UnknownVillage(village_code)
    clerk = proxy_clerk(village_code)
    path = tuple(a.code for a in areas.path(village_code))
    return Assignment(None, clerk.id, clerk.name, path, _topic(path + ("proxy",)), level=0)


def to_department(department: str, county_code: str, areas: AreaMap) -> Assignment:
    """A department's desk in the county: its staff take transferred cases and decide filed ones."""
    path = tuple(a.code for a in areas.path(county_code))
    return Assignment(None, desk_id("dept", county_code, department), f"{department} ({county_code})", path,
                      department_key(department, county_code), level=0)


def department_key(department: str, county_code: str) -> str:
    return f"{DEPARTMENT_KEY_PREFIX}.{department}.{county_code}"


def console_binding(area_code: str, areas: AreaMap) -> str:
    """The topic binding of a console serving an area (city, county, town, village) or one grid."""
    try:
        grid = areas.grid(area_code)
    except KeyError:
        area = areas.area(area_code)  # KeyError names the unknown code
        prefix = _topic(tuple(a.code for a in areas.path(area.code)))
        # A village's work keys always end in exactly one grid word; higher areas span several levels.
        return prefix + (".*" if area.level == "village" else ".#")
    return _topic(tuple(a.code for a in areas.path(grid.village_code)) + (grid.code,))


def _topic(codes: tuple[str, ...]) -> str:
    return ".".join((WORK_KEY_PREFIX,) + codes)
