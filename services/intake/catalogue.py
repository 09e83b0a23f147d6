"""The service catalogue: versioned data (catalogue.yaml), not code."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

BUNDLED = Path(__file__).with_name("catalogue.yaml")


@dataclass(frozen=True)
class Category:
    code: str
    name_zh: str
    name_en: str
    department: str
    group: str
    priority: int
    accept_minutes: int
    resolve_hours: int
    follow_up_hours: int
    volunteer_skill: str | None
    proxy: bool
    attributes: tuple[dict, ...] = ()
    keywords: tuple[str, ...] = ()
    description_zh: str = ""
    description_en: str = ""
    resolve_minutes: int | None = None  # the resolve deadline; when the catalogue gives none: resolve_hours

    def __post_init__(self):
        if self.resolve_minutes is None:
            object.__setattr__(self, "resolve_minutes", self.resolve_hours * 60)


class Catalogue:
    def __init__(self, version: str, departments: dict[str, dict], categories: dict[str, Category]):
        self.version = version
        self.departments = departments
        self.categories = categories

    @classmethod
    def load(cls, path: str | Path | None = None) -> "Catalogue":
        return cls.from_document(read_document(path))

    @classmethod
    def from_document(cls, raw: dict) -> "Catalogue":
        departments = {d["code"]: d for d in raw["departments"]}
        categories = {}
        for c in raw["categories"]:
            deadlines = c["deadlines"]
            categories[str(c["code"])] = Category(
                code=str(c["code"]), name_zh=c["name_zh"], name_en=c["name_en"],
                department=c["department"], group=c["group"], priority=int(c["priority"]),
                accept_minutes=int(deadlines["accept_minutes"]),
                resolve_hours=int(deadlines["resolve_hours"]),
                resolve_minutes=int(deadlines["resolve_minutes"]) if "resolve_minutes" in deadlines else None,
                follow_up_hours=int(deadlines["follow_up_hours"]),
                volunteer_skill=c.get("volunteer_skill"), proxy=bool(c.get("proxy", False)),
                attributes=tuple(c.get("attributes") or ()), keywords=tuple(c.get("keywords") or ()),
                description_zh=c.get("description_zh", ""), description_en=c.get("description_en", ""))
        return cls(str(raw["version"]), departments, categories)

    def get(self, code: str) -> Category | None:
        return self.categories.get(code)

    def department_name(self, code: str, lang: str = "zh") -> str:
        return self.departments[code][f"name_{lang}"]


def read_document(path: str | Path | None = None) -> dict:
    with open(path or BUNDLED, encoding="utf-8") as f:
        return yaml.safe_load(f)
