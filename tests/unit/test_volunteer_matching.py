"""Volunteer matching core: locality first, fair load, hard capacity, deterministic data."""
from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest

from services.volunteer.matching import (
    SKILLS,
    Match,
    MatchRequest,
    Volunteer,
    VolunteerIndex,
    generate_volunteers,
)

MAIN_DIR = Path(__file__).resolve().parents[2]
DIVISIONS_CSV = MAIN_DIR / "services" / "dispatch" / "data" / "suzhou_3413_nbs2023.csv"  # bundled


def volunteer(vid, village="V1", town="T1", skills=("errand",), max_load=2, team="T0001"):
    return Volunteer(vid, f"name-{vid}", team, village, town, frozenset(skills), max_load)


def index_of(*volunteers):
    index = VolunteerIndex()
    for v in volunteers:
        index.add(v)
    return index


def request(village="V1", town="T1", skill="errand", exclude=()):
    return MatchRequest("ticket-1", village, town, skill, frozenset(exclude))


def synthetic_villages(villages=60, towns=6):
    return [(f"town{i % towns}-village{i}", f"town{i % towns}") for i in range(villages)]


def test_prefers_same_village_even_if_busier():
    index = index_of(volunteer("a", village="V2"), volunteer("b", village="V1", max_load=5))
    index.take("b")
    assert index.match(request()) == Match("b", "T0001", "village")


def test_falls_back_to_same_town():
    index = index_of(volunteer("a", village="V2"), volunteer("b", village="V9", town="T2"))
    assert index.match(request()) == Match("a", "T0001", "town")


def test_none_when_nobody_in_the_town_has_the_skill():
    index = index_of(
        volunteer("a", skills=("legal",)),
        volunteer("b", village="V2", skills=("repair",)),
        volunteer("c", village="V9", town="T2", skills=("medical",)),
    )
    assert index.match(request(skill="medical")) is None


def test_lowest_load_ratio_wins_ties_broken_by_id():
    index = index_of(volunteer("b", max_load=4), volunteer("a", max_load=2), volunteer("c", max_load=4))
    assert index.match(request()).volunteer_id == "a"  # all at 0: lowest id
    index.take("a")  # a: 1/2
    index.take("b")  # b: 1/4, c: 0/4
    assert index.match(request()).volunteer_id == "c"
    index.take("c")  # b and c both at 1/4, a at 1/2
    assert index.match(request()).volunteer_id == "b"


def test_repeated_matches_spread_load_evenly():
    index = index_of(*(volunteer(f"v{i}", max_load=3) for i in range(4)))
    for _ in range(8):
        index.take(index.match(request()).volunteer_id)
    assert [index.load_of(f"v{i}") for i in range(4)] == [2, 2, 2, 2]


def test_never_exceeds_max_load():
    index = index_of(volunteer("a", max_load=1), volunteer("b", max_load=2), volunteer("c", village="V2"))
    taken = 0
    while (match := index.match(request())) is not None:
        index.take(match.volunteer_id)
        taken += 1
    assert taken == 1 + 2 + 2
    assert [index.load_of(v) for v in "abc"] == [1, 2, 2]
    with pytest.raises(ValueError):
        index.take("a")


def test_release_frees_capacity_and_never_goes_below_zero():
    index = index_of(volunteer("a", max_load=1))
    index.take("a")
    assert index.match(request()) is None
    index.release("a")
    index.release("a")  # duplicate release, e.g. a redelivered event
    assert index.load_of("a") == 0
    assert index.match(request()).volunteer_id == "a"


def test_honours_exclude_in_village_and_town():
    index = index_of(volunteer("a"), volunteer("b", village="V2"), volunteer("c", village="V3"))
    assert index.match(request(exclude={"a"})) == Match("b", "T0001", "town")
    assert index.match(request(exclude={"a", "b"})).volunteer_id == "c"
    assert index.match(request(exclude={"a", "b", "c"})) is None


def test_add_rejects_bad_volunteers():
    index = index_of(volunteer("a"))
    with pytest.raises(ValueError):
        index.add(volunteer("a"))
    with pytest.raises(ValueError):
        index.add(volunteer("b", skills=("juggling",)))
    with pytest.raises(ValueError):
        index.add(volunteer("c", max_load=0))


def test_match_does_not_scan_the_whole_city():
    villages = synthetic_villages(villages=200, towns=20)
    volunteers = generate_volunteers(villages, teams=800, volunteers=20_000)
    index = index_of(*volunteers)
    village_code, town_code = villages[7]
    in_village = [v for v in volunteers if v.village_code == village_code and "medical" in v.skills]
    in_town = [v for v in volunteers if v.town_code == town_code and "medical" in v.skills]

    assert index.match(request(village_code, town_code, "medical")).distance == "village"
    assert index.last_candidates_examined == len(in_village)

    # Everyone in the village declined: the search widens to the town bucket, no further.
    declined = {v.id for v in in_village}
    assert index.match(request(village_code, town_code, "medical", declined)).distance == "town"
    assert index.last_candidates_examined == len(in_village) + len(in_town)
    assert index.last_candidates_examined < len(volunteers) // 10


def test_generator_is_reproducible():
    villages = synthetic_villages()
    first = generate_volunteers(villages, seed=7, teams=300, volunteers=3_000)
    assert first == generate_volunteers(villages, seed=7, teams=300, volunteers=3_000)
    assert first != generate_volunteers(villages, seed=8, teams=300, volunteers=3_000)


def test_generator_shape_with_synthetic_villages():
    villages = synthetic_villages(villages=1358, towns=122)
    volunteers = generate_volunteers(villages, volunteers=12_345)
    assert len(volunteers) == 12_345
    assert len({v.id for v in volunteers}) == 12_345
    assert volunteers[0].id == "V000001" and volunteers[-1].id == "V012345"

    teams = {v.team_id: (v.village_code, v.town_code) for v in volunteers}
    assert len(teams) == 6228  # 12,345 volunteers ≥ 6,228 teams, so every team has members
    assert min(teams) == "T0001" and max(teams) == "T6228"
    teams_per_village = Counter(village for village, _ in teams.values())
    assert len(teams_per_village) == 1358
    assert min(teams_per_village.values()) >= 6228 // 1358
    assert set(teams.values()) <= set(villages)  # each team sits in a real (village, town) pair

    for v in volunteers:
        assert 1 <= len(v.skills) <= 3 and v.skills <= set(SKILLS)
        assert v.max_load >= 1
        assert 2 <= len(v.name) <= 3


def test_generator_covers_the_real_suzhou_villages():
    with open(DIVISIONS_CSV, encoding="utf-8", newline="") as f:
        villages = [(row["code"], row["parent_code"]) for row in csv.DictReader(f) if row["level"] == "village"]
    assert len(villages) == 1358

    volunteers = generate_volunteers(villages, volunteers=10_000)
    assert len(volunteers) == 10_000
    assert len({v.team_id for v in volunteers}) == 6228
    assert len({v.village_code for v in volunteers}) == 1358


def test_the_index_is_told_loads_as_the_database_has_them():
    index = index_of(volunteer("a", max_load=2), volunteer("b", max_load=2))
    index.set_load("a", 2)  # another instance filled a
    assert index.match(request()).volunteer_id == "b"
    index.set_load("b", 3)  # past max_load (it was lowered): not proposed either
    assert index.match(request()) is None
    index.set_loads({"b": 1})  # everyone at once: a holds nothing now
    assert (index.load_of("a"), index.load_of("b")) == (0, 1)
    assert index.match(request()).volunteer_id == "a"
    index.set_load("nobody", 1)  # not in the registry this index was built from: ignored
    assert "nobody" not in index


def test_a_volunteer_can_start_with_a_load_and_be_forgotten():
    index = VolunteerIndex()
    index.add(volunteer("a", max_load=1), load=1)
    index.add(volunteer("b", village="V2", max_load=2))
    assert index.match(request()) == Match("b", "T0001", "town")
    index.forget("b")
    index.forget("b")  # twice: nothing more
    assert "b" not in index and len(index) == 1
    assert index.match(request()) is None
    with pytest.raises(ValueError):
        index.add(volunteer("c"), load=-1)


def test_a_volunteer_is_asked_only_within_their_availability_china_time():
    """Evenings on weekdays (18:00–21:00 China time): passed over at noon and on Saturday evening, chosen at 19:00
    on a Wednesday, which is 11:00 UTC; one with no windows may be asked any time."""
    from datetime import datetime, timezone

    from services.volunteer.matching import Window
    evenings = (Window(frozenset({1, 2, 3, 4, 5}), 18 * 60, 21 * 60),)
    index = index_of(Volunteer("V1", "name-V1", "T1", "341323104214", "341323104", frozenset({"errand"}), 2,
                               windows=evenings),
                     volunteer("V2", "341323104215", "341323104"))  # the next village: any time
    ask = dict(ticket_id="T", village_code="341323104214", town_code="341323104", skill="errand")
    wednesday_19h = datetime(2026, 12, 2, 11, 0, tzinfo=timezone.utc)
    assert index.match(MatchRequest(**ask, at=wednesday_19h)).volunteer_id == "V1"
    assert index.match(MatchRequest(**ask, at=datetime(2026, 12, 2, 4, 0, tzinfo=timezone.utc))).volunteer_id == "V2"
    assert index.match(MatchRequest(**ask, at=datetime(2026, 12, 5, 11, 0, tzinfo=timezone.utc))).volunteer_id == "V2"
    assert index.match(MatchRequest(**ask, at=datetime(2026, 12, 2, 13, 0, tzinfo=timezone.utc))).volunteer_id == "V2"
    with pytest.raises(ValueError, match="days"):
        Window(frozenset({0}), 0, 60)
    with pytest.raises(ValueError, match="before"):
        Window(frozenset({1}), 600, 600)
