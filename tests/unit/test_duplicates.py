"""The duplicate rule: same resident, or nearly the same words, among open tickets of one category and village."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from services.intake.duplicates import duplicate_of, similarity, window_start

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)


def ticket(id, resident, text, hours_ago=1):
    return SimpleNamespace(id=id, resident_id=resident, description=text, received_at=NOW - timedelta(hours=hours_ago))


def test_near_identical_chinese_text_is_similar_and_different_text_is_not():
    assert similarity("杨东村三组自来水管爆了，水一直在流", "杨东村三组自来水管爆了!水一直在流。") >= 0.8
    assert similarity("杨东村三组自来水管爆了", "村口路灯坏了一个星期") < 0.2
    assert similarity("", "路灯坏了") == 0.0


def test_the_same_resident_again_joins_the_open_ticket():
    assert duplicate_of("r1", "又来问一下低保的事", [ticket("T1", "r1", "申请低保")]).id == "T1"


def test_someone_else_with_the_same_words_joins_it_too():
    assert duplicate_of("r2", "三组水管爆了，水一直流", [ticket("T1", "r1", "三组水管爆了，水一直流！")]).id == "T1"


def test_someone_else_with_other_words_opens_a_new_ticket():
    assert duplicate_of("r2", "我家门口的路灯不亮", [ticket("T1", "r1", "三组水管爆了")]) is None


def test_the_oldest_open_ticket_is_the_one_joined():
    found = duplicate_of("r1", "x", [ticket("T2", "r1", "x", hours_ago=1), ticket("T1", "r1", "x", hours_ago=5)])
    assert found.id == "T1"


def test_the_window_is_three_days():
    assert window_start(NOW) == NOW - timedelta(hours=72)
