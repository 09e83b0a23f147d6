"""Which grid and which person get a resident's request, and the AMQP key consoles see it under.

Work keys are AMQP topic keys of dot-separated words, `area.<city>.<county>.<town>.<village>.<grid>`,
so a dispatch console binds its queue to its own subtree of the area tree with one binding.
A request known only by its county (a map point, no village) goes to that county's dispatch
centre under `area.<city>.<county>.unplaced`, which the county's consoles see, to be placed.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.dispatch.areas import AreaMap
from services.dispatch.roster import on_duty

WORK_KEY_PREFIX = "area"
UNPLACED = "unplaced"


@dataclass(frozen=True)
class Assignment:
    grid_code: str | None  # None: a county's dispatch centre, not a grid
    assignee_id: str
    assignee_name: str
    area_path: tuple[str, ...]  # codes: city, county, town, village, grid (city, county if unplaced)
    work_key: str


class UnknownCounty(ValueError):
    def __init__(self, county_code: str):
        super().__init__(f"unknown county code {county_code!r}: not a county in the Suzhou division table")


class UnknownVillage(ValueError):
    def __init__(self, village_code: str):
        super().__init__(f"unknown village code {village_code!r}: not a village or community "
                         f"in the Suzhou division table")
        self.village_code = village_code


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
    return Assignment(None, f"centre-{county_code}", f"{county.name}调度中心", area_path,
                      _topic(area_path + (UNPLACED,)))


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
