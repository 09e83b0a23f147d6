"""The service catalogue data file: shape, counts and cross-references (no service code involved)."""
from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from services.volunteer.matching import SKILLS

CATALOGUE_PATH = Path(__file__).parents[2] / "services/intake/catalogue.yaml"

GROUPS = {
    "employment", "social_security", "medical", "education", "transport", "environment",
    "civil_affairs", "disability", "household", "justice", "health", "agriculture", "housing",
    "utilities", "veterans", "daily_life", "market",
}
VOLUNTEER_SKILLS = {
    "errand", "delivery", "elder_care", "medical", "legal", "repair", "farm_sales", "tutoring",
    "mediation", "policy",
}
DATATYPES = {"string", "number", "datetime", "text", "singlevaluelist", "multivaluelist"}
LIST_DATATYPES = {"singlevaluelist", "multivaluelist"}
DEADLINE_KEYS = {"accept_minutes", "resolve_hours", "follow_up_hours"}
OPTIONAL_DEADLINE_KEYS = {"resolve_minutes"}
HAN = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(scope="module")
def catalogue() -> dict:
    with CATALOGUE_PATH.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def departments(catalogue) -> list[dict]:
    return catalogue["departments"]


@pytest.fixture(scope="module")
def categories(catalogue) -> list[dict]:
    return catalogue["categories"]


def _duplicates(values) -> list:
    return sorted(v for v, n in Counter(values).items() if n > 1)


def test_header(catalogue):
    assert catalogue["catalogue"] == "songdaojia-village-services"
    assert isinstance(catalogue["version"], str) and re.fullmatch(r"\d{4}\.\d+\.\d+", catalogue["version"])
    assert isinstance(catalogue["note"], str) and catalogue["note"].strip()
    assert set(catalogue["groups"]) == GROUPS and len(catalogue["groups"]) == len(GROUPS)


def test_volunteer_skills_match_the_matching_service():
    assert VOLUNTEER_SKILLS == set(SKILLS)


def test_33_departments_with_unique_codes_and_names(departments):
    assert len(departments) == 33
    codes = [d["code"] for d in departments]
    assert not _duplicates(codes)
    assert not _duplicates(d["name_zh"] for d in departments)
    assert not _duplicates(d["name_en"] for d in departments)
    for d in departments:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", d["code"]), d["code"]
        assert isinstance(d["name_zh"], str) and HAN.search(d["name_zh"]), d["code"]
        assert isinstance(d["name_en"], str) and d["name_en"].strip(), d["code"]


def test_93_categories_with_unique_three_digit_codes(categories):
    assert len(categories) == 93
    codes = [c["code"] for c in categories]
    assert all(isinstance(code, str) and re.fullmatch(r"\d{3}", code) for code in codes), codes
    assert not _duplicates(codes)
    assert not _duplicates(c["name_zh"] for c in categories)
    assert not _duplicates(c["name_en"] for c in categories)


def test_category_texts_are_non_empty(categories):
    for c in categories:
        for key in ("name_zh", "description_zh"):
            assert isinstance(c[key], str) and HAN.search(c[key]), (c["code"], key)
        for key in ("name_en", "description_en"):
            assert isinstance(c[key], str) and c[key].strip(), (c["code"], key)
        assert c["keywords"] and all(isinstance(k, str) and k.strip() for k in c["keywords"]), c["code"]
        assert not _duplicates(c["keywords"]), c["code"]


def test_departments_and_categories_reference_each_other(departments, categories):
    department_codes = {d["code"] for d in departments}
    referenced = {c["department"] for c in categories}
    assert referenced - department_codes == set(), "categories name unknown departments"
    assert department_codes - referenced == set(), "departments without any category"


def test_groups_are_valid(categories):
    for c in categories:
        assert c["group"] in GROUPS, (c["code"], c["group"])


def test_priorities_deadlines_and_flags(categories):
    for c in categories:
        assert type(c["priority"]) is int and 1 <= c["priority"] <= 3, c["code"]
        deadlines = c["deadlines"]
        assert DEADLINE_KEYS <= set(deadlines) <= DEADLINE_KEYS | OPTIONAL_DEADLINE_KEYS, c["code"]
        for key, value in deadlines.items():
            assert type(value) is int and value > 0, (c["code"], key, value)
        assert type(c["proxy"]) is bool, c["code"]
        assert c["volunteer_skill"] is None or c["volunteer_skill"] in VOLUNTEER_SKILLS, c["code"]


def test_urgent_categories_are_accepted_quickly(categories):
    for c in categories:
        if c["priority"] == 1:
            assert c["deadlines"]["accept_minutes"] <= 15, c["code"]
            assert c["deadlines"]["resolve_hours"] <= 24, c["code"]


def test_resolve_minutes_where_given_is_the_deadline_and_resolve_hours_it_rounded_up(categories):
    given = {c["code"]: c["deadlines"] for c in categories if "resolve_minutes" in c["deadlines"]}
    for code, deadlines in given.items():
        assert deadlines["resolve_hours"] == math.ceil(deadlines["resolve_minutes"] / 60), code


def test_goods_are_bought_and_delivered_within_30_minutes(categories):
    goods = next(c for c in categories if c["code"] == "801")
    assert goods["deadlines"]["resolve_minutes"] == 30  # the seed's promise


def test_volunteers_serve_a_minority_of_categories(categories):
    served = [c for c in categories if c["volunteer_skill"]]
    assert 15 <= len(served) <= 25
    assert {c["volunteer_skill"] for c in served} == VOLUNTEER_SKILLS  # every skill has work


def test_attributes_are_valid_open311_definitions(categories):
    for c in categories:
        attributes = c["attributes"]
        assert isinstance(attributes, list) and len(attributes) <= 4, c["code"]
        assert not _duplicates(a["code"] for a in attributes), c["code"]
        assert [a["order"] for a in attributes] == list(range(1, len(attributes) + 1)), c["code"]
        for a in attributes:
            where = (c["code"], a["code"])
            assert re.fullmatch(r"[a-z][a-z0-9_]*", a["code"]), where
            assert a["datatype"] in DATATYPES, where
            assert type(a["required"]) is bool, where
            assert isinstance(a["datatype_description"], str) and a["datatype_description"].strip(), where
            assert isinstance(a["description"], str) and a["description"].strip(), where
            values = a["values"]
            if a["datatype"] in LIST_DATATYPES:
                assert len(values) >= 2, where
                keys = [v["key"] for v in values]
                assert all(isinstance(k, str) and k for k in keys), where
                assert not _duplicates(keys), where
                assert all(isinstance(v["name"], str) and v["name"].strip() for v in values), where
            else:
                assert values == [], where


def test_enough_required_and_list_attributes(categories):
    with_required = [c["code"] for c in categories if any(a["required"] for a in c["attributes"])]
    with_lists = [c["code"] for c in categories
                  if any(a["datatype"] in LIST_DATATYPES for a in c["attributes"])]
    assert len(with_required) >= 10
    assert len(with_lists) >= 8


def test_attributes_ask_for_no_personal_identifiers(categories):
    forbidden = ("name", "phone", "mobile", "id_number", "id_card", "address")
    for c in categories:
        for a in c["attributes"]:
            assert not any(word in a["code"] for word in forbidden), (c["code"], a["code"])


def test_catch_all_other_request_exists(departments, categories):
    by_code = {c["code"]: c for c in categories}
    assert "999" in by_code
    other = by_code["999"]
    assert other["department"] in {d["code"] for d in departments}
    assert other["name_zh"] == "其他诉求"
