"""Suzhou's areas (city → county → town → village) and the service grids laid over its villages.

Pure and deterministic: the same CSV always yields the same grids, so a grid code stored in a
ticket today still names the same grid after a restart or on another dispatch worker.
"""
from __future__ import annotations

import csv
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable

BUNDLED_CSV = Path(__file__).resolve().parent / "data" / "suzhou_3413_nbs2023.csv"
TOTAL_GRIDS = 15_000  # SEED: "1.5万个服务网格" for the whole city
ROUTED_LEVELS = ("city", "county", "town", "village")


@dataclass(frozen=True)
class Area:
    code: str
    name: str
    level: str  # one of ROUTED_LEVELS
    parent_code: str | None


@dataclass(frozen=True)
class Grid:
    code: str
    village_code: str
    number: int  # 1-based within its village


def grid_code(village_code: str, number: int) -> str:
    return f"{village_code}-G{number:02d}"


class AreaMap:
    """One city's division tree plus its grids; read-only once built."""

    def __init__(self, areas: Iterable[Area], total_grids: int = TOTAL_GRIDS):
        self._areas = {area.code: area for area in areas}
        villages = sorted((a for a in self._areas.values() if a.level == "village"), key=lambda a: a.code)
        self._villages = tuple(villages)
        self._grids_by_village = _spread_grids(self._villages, total_grids)
        self._grids = {g.code: g for grids in self._grids_by_village.values() for g in grids}

    @classmethod
    def load(cls, path: str | Path | None = None) -> AreaMap:
        """Read a division CSV; without a path, the bundled NBS 2023 table (parsed once per process)."""
        if path is None:
            return _bundled_area_map()
        return cls(_read_areas(Path(path)))

    def area(self, code: str) -> Area:
        try:
            return self._areas[code]
        except KeyError:
            raise KeyError(f"unknown area code {code!r}: not a city, county, town or village "
                           f"in this division table") from None

    def is_village(self, code: str) -> bool:
        area = self._areas.get(code)
        return area is not None and area.level == "village"

    def path(self, code: str) -> list[Area]:
        """The chain from the city down to `code`, e.g. [city, county, town, village]."""
        chain = [self.area(code)]
        while chain[-1].level != "city" and chain[-1].parent_code in self._areas:
            chain.append(self._areas[chain[-1].parent_code])
        return chain[::-1]

    def villages(self) -> list[Area]:
        return list(self._villages)

    def grids_of(self, village_code: str) -> list[Grid]:
        return list(self._village_grids(village_code))

    def grid(self, code: str) -> Grid:
        try:
            return self._grids[code]
        except KeyError:
            raise KeyError(f"unknown grid code {code!r}") from None

    def total_grids(self) -> int:
        return len(self._grids)

    def grid_for(self, village_code: str, address_key: str) -> Grid:
        """The grid serving an address (or resident) inside a village.

        crc32 rather than hash(): Python salts str hashes per process, and the same address must
        land on the same grid in every worker and after every restart.
        """
        grids = self._village_grids(village_code)
        return grids[zlib.crc32(address_key.encode("utf-8")) % len(grids)]

    def _village_grids(self, village_code: str) -> tuple[Grid, ...]:
        area = self.area(village_code)
        if area.level != "village":
            raise KeyError(f"area {village_code!r} ({area.name}) is a {area.level}, not a village")
        return self._grids_by_village[village_code]


def _spread_grids(villages: tuple[Area, ...], total: int) -> dict[str, tuple[Grid, ...]]:
    """Every village gets total // n grids; the first total % n villages in code order get one more."""
    if villages and total < len(villages):
        raise ValueError(f"{total} grids cannot cover {len(villages)} villages (every village needs one)")
    if not villages:
        return {}
    base, extra = divmod(total, len(villages))
    spread = {}
    for index, village in enumerate(villages):
        count = base + (1 if index < extra else 0)
        spread[village.code] = tuple(Grid(grid_code(village.code, n), village.code, n)
                                     for n in range(1, count + 1))
    return spread


def _read_areas(path: Path) -> list[Area]:
    # The province row only names the city's parent; the service covers the city and below.
    with path.open(encoding="utf-8", newline="") as f:
        return [Area(row["code"], row["name"], row["level"], row["parent_code"] or None)
                for row in csv.DictReader(f) if row["level"] in ROUTED_LEVELS]


@lru_cache(maxsize=1)
def _bundled_area_map() -> AreaMap:
    return AreaMap(_read_areas(BUNDLED_CSV))
