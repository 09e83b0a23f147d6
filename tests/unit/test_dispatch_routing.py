from datetime import datetime, timedelta, timezone

import pytest

from services.dispatch.areas import AreaMap
from services.dispatch.roster import ROLES, on_duty, staff_of
from services.dispatch.routing import UnknownCounty, UnknownVillage, console_binding, route, route_to_county_centre

YANGDONG = "341323104214"  # 灵璧县杨疃镇杨东村委会
CITY, LINGBI, YANGTUAN = "3413", "341323", "341323104"
A_VILLAGE_IN_YONGQIAO = "341302100001"  # 埇桥区 镇南居委会
NOON_UTC = datetime(2024, 5, 1, 4, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def areas():
    return AreaMap.load()


def topic_matches(binding: str, key: str) -> bool:
    """AMQP topic matching: '*' is exactly one word, '#' is zero or more words."""
    def match(pattern, words):
        if not pattern:
            return not words
        head, rest = pattern[0], pattern[1:]
        if head == "#":
            return any(match(rest, words[i:]) for i in range(len(words) + 1))
        return bool(words) and head in ("*", words[0]) and match(rest, words[1:])
    return match(binding.split("."), key.split("."))


def test_the_city_has_7_counties_122_towns_1358_villages_and_15000_grids(areas):
    levels = [areas.area(v.parent_code).level for v in areas.villages()]
    towns = {v.parent_code for v in areas.villages()}
    counties = {areas.area(t).parent_code for t in towns}
    assert len(areas.villages()) == 1358 and set(levels) == {"town"}
    assert len(towns) == 122
    assert len(counties) == 7
    assert areas.total_grids() == 15000
    assert {len(areas.grids_of(v.code)) for v in areas.villages()} == {11, 12}


def test_the_bundled_map_is_loaded_once(areas):
    assert AreaMap.load() is areas


def test_path_of_yangdong_village_runs_from_the_city_down(areas):
    path = areas.path(YANGDONG)
    assert [a.name for a in path] == ["宿州市", "灵璧县", "杨疃镇", "杨东村委会"]
    assert [a.code for a in path] == [CITY, LINGBI, YANGTUAN, YANGDONG]
    assert [a.level for a in path] == ["city", "county", "town", "village"]
    assert areas.is_village(YANGDONG) and not areas.is_village(YANGTUAN)


def test_unknown_area_code_is_a_key_error_naming_the_code(areas):
    with pytest.raises(KeyError, match="999999"):
        areas.area("999999")


def test_grid_for_an_address_is_stable_and_inside_the_village(areas):
    grid = areas.grid_for(YANGDONG, "杨东村3组12号")
    assert grid == areas.grid_for(YANGDONG, "杨东村3组12号")
    assert grid in areas.grids_of(YANGDONG) and grid.village_code == YANGDONG
    assert areas.grid(grid.code) == grid and grid.code.startswith(f"{YANGDONG}-G")
    spread = {areas.grid_for(YANGDONG, f"杨东村{n}号").code for n in range(200)}
    assert len(spread) > 1  # addresses spread over the village's grids, not all on one


def test_each_grid_has_one_worker_of_each_role(areas):
    grid = areas.grids_of(YANGDONG)[0]
    staff = staff_of(grid)
    assert [w.role for w in staff] == list(ROLES)
    assert [w.id for w in staff] == [f"W-{grid.code}-{n}" for n in (1, 2, 3)]
    assert staff == staff_of(grid) and all(w.area_code == grid.code for w in staff)


def test_duty_rotates_on_the_china_standard_time_day(areas):
    grid = areas.grids_of(YANGDONG)[0]
    late_evening_utc = datetime(2024, 5, 1, 23, 30, tzinfo=timezone.utc)  # 07:30 on 2 May in CST
    assert on_duty(grid, late_evening_utc) == on_duty(grid, datetime(2024, 5, 2, 4, 0, tzinfo=timezone.utc))
    assert on_duty(grid, late_evening_utc) != on_duty(grid, NOON_UTC)
    three_days = [on_duty(grid, NOON_UTC + timedelta(days=d)) for d in range(3)]
    assert sorted(w.id for w in three_days) == sorted(w.id for w in staff_of(grid))
    assert on_duty(grid, NOON_UTC + timedelta(days=3)) == three_days[0]


def test_duty_rejects_a_naive_time(areas):
    with pytest.raises(ValueError, match="timezone-aware"):
        on_duty(areas.grids_of(YANGDONG)[0], datetime(2024, 5, 1, 12, 0))


def test_route_assigns_the_grid_and_its_worker_on_duty(areas):
    assignment = route(YANGDONG, "杨东村3组12号", areas, NOON_UTC)
    grid = areas.grid_for(YANGDONG, "杨东村3组12号")
    assert assignment.grid_code == grid.code
    assert assignment.assignee_id == on_duty(grid, NOON_UTC).id
    assert assignment.area_path == (CITY, LINGBI, YANGTUAN, YANGDONG, grid.code)
    assert assignment.work_key == f"area.{CITY}.{LINGBI}.{YANGTUAN}.{YANGDONG}.{grid.code}"


@pytest.mark.parametrize("code", ["341323104999", YANGTUAN, ""])
def test_route_to_an_unknown_village_names_the_code(areas, code):
    with pytest.raises(UnknownVillage, match=repr(code)):
        route(code, "somewhere", areas, NOON_UTC)


def test_console_bindings_receive_their_area_and_not_another_county(areas):
    here = route(YANGDONG, "杨东村3组12号", areas, NOON_UTC).work_key
    elsewhere = route(A_VILLAGE_IN_YONGQIAO, "镇南1号", areas, NOON_UTC).work_key
    grid_code = here.rsplit(".", 1)[1]
    bindings = {code: console_binding(code, areas) for code in (LINGBI, YANGTUAN, YANGDONG, grid_code)}
    assert bindings[LINGBI] == f"area.{CITY}.{LINGBI}.#"
    assert bindings[YANGDONG].endswith(f".{YANGDONG}.*")
    assert bindings[grid_code] == here
    for binding in bindings.values():
        assert topic_matches(binding, here)
        assert not topic_matches(binding, elsewhere)
    assert topic_matches(console_binding(CITY, areas), elsewhere)


def test_a_county_console_sees_its_unplaced_requests_and_a_town_console_does_not(areas):
    unplaced = route_to_county_centre(LINGBI, areas).work_key
    assert topic_matches(console_binding(LINGBI, areas), unplaced)
    assert not topic_matches(console_binding(YANGTUAN, areas), unplaced)
    assert not topic_matches(console_binding("341302", areas), unplaced)


@pytest.mark.parametrize("code", ["341399", YANGTUAN, CITY])
def test_a_county_centre_needs_a_county_code(areas, code):
    with pytest.raises(UnknownCounty, match=repr(code)):
        route_to_county_centre(code, areas)


def test_topic_matcher_follows_amqp_rules():
    assert topic_matches("a.#", "a") and topic_matches("a.#", "a.b.c")
    assert topic_matches("a.*", "a.b") and not topic_matches("a.*", "a.b.c")
    assert not topic_matches("a.*", "a")
