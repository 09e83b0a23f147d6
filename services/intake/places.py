"""Where a request comes from: Suzhou's villages by code or by name, the county nearest a point,
and a sanity check on coordinates.

The data places villages by code and name only: no village or town coordinates exist in it, just
each county's centre (cpca). So a point alone is placed in the county whose centre is nearest, and
that county's dispatch centre puts it in a village; it is never guessed into one.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DATA = Path(__file__).with_name("data")
# Suzhou's extent with a margin: a point outside is a typo or a test, not a resident
LAT_RANGE, LONG_RANGE = (33.0, 34.9), (116.0, 118.5)


@dataclass(frozen=True)
class Village:
    code: str
    name: str
    town: str
    county: str

    @property
    def full_name(self) -> str:
        return f"{self.county}{self.town}{self.name}"


@dataclass(frozen=True)
class County:
    code: str
    name: str
    lat: float
    long: float


class Places:
    def __init__(self, villages: dict[str, Village], counties: tuple[County, ...] = ()):
        self.villages = villages
        self.counties = counties
        self._by_short_name: dict[str, list[Village]] = {}
        for v in villages.values():
            self._by_short_name.setdefault(short_name(v.name), []).append(v)

    def village(self, code: str) -> Village | None:
        return self.villages.get(code)

    def county(self, code: str) -> County | None:
        return next((c for c in self.counties if c.code == code), None)

    def find(self, address: str) -> Village | None:
        """The village an address names, when it names exactly one (杨东村, 灵璧县杨疃镇杨东村…)."""
        found = {v.code: v for name, vs in self._by_short_name.items() if name and name in address for v in vs}
        if len(found) > 1:  # the same village name in several towns: the town or county must say which
            found = {c: v for c, v in found.items() if short_name(v.town) in address or v.county in address}
        return next(iter(found.values())) if len(found) == 1 else None

    def nearest_county(self, lat: float, long: float) -> County:
        """The county whose centre is nearest: approximate near a county border, which is why
        such a ticket goes to the county's dispatch centre to be placed, not to a grid."""
        scale = math.cos(math.radians(lat))  # a degree of longitude is shorter than one of latitude
        return min(self.counties, key=lambda c: (c.lat - lat) ** 2 + ((c.long - long) * scale) ** 2)


def short_name(name: str) -> str:
    """杨东村委会 → 杨东村, 城关社区居委会 → 城关社区: what people say and write."""
    for suffix in ("村民委员会", "居民委员会", "村委会", "居委会"):
        if name.endswith(suffix):
            return name[: -len(suffix)] + ("村" if "村" in suffix else "")
    return name


def coordinates_problem(lat: float, long: float) -> str | None:
    if not (-90 <= lat <= 90 and -180 <= long <= 180):
        return f"lat/long: ({lat}, {long}) is not a point on Earth"
    if not (LAT_RANGE[0] <= lat <= LAT_RANGE[1] and LONG_RANGE[0] <= long <= LONG_RANGE[1]):
        return f"lat/long: ({lat}, {long}) is outside Suzhou (宿州市)"
    return None


@lru_cache(maxsize=1)
def load() -> Places:
    rows = list(csv.DictReader(open(DATA / "suzhou_3413_nbs2023.csv", encoding="utf-8", newline="")))
    names = {r["code"]: r["name"] for r in rows}
    parents = {r["code"]: r["parent_code"] for r in rows}
    villages = {r["code"]: Village(r["code"], r["name"], names[r["parent_code"]],
                                   names[parents[r["parent_code"]]])
                for r in rows if r["level"] == "village"}
    centres = csv.DictReader(open(DATA / "suzhou_3413_county_lnglat.csv", encoding="utf-8", newline=""))
    counties = tuple(County(r["adcode"][:6], r["name"], float(r["latitude"]), float(r["longitude"]))
                     for r in centres if r["longitude"] and r["adcode"][:6] in names)
    return Places(villages, counties)
