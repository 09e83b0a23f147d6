"""What becomes of a delivery after a failed try (services/notify/delivery_rules.py): back-off, patience,
fallback to the resident's next channel, giving up; and how the config names them (the env var names are
a contract)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from services.common.config import config_path, load_config
from services.notify import courier
from services.notify.delivery_rules import (FallBack, GiveUp, Retry, after_failure, backoff_seconds, channel_order,
                                            first_channel, parse_channels)

T0 = datetime(2026, 12, 12, 2, 0, tzinfo=timezone.utc)
SIX_HOURS = timedelta(hours=6)
BOTH = {"email": "wang@example.cn", "phone": "13812341234"}


def decide(attempts=1, since=timedelta(0), permanent=False, tried=("email",), channels=("email", "sms"),
           contact=BOTH, patience=SIX_HOURS, max_backoff=600.0, rand=0.5):
    return after_failure(attempts=attempts, first_tried_at=T0, now=T0 + since, permanent=permanent, tried=tried,
                         channels=channels, contact=contact, patience=patience, max_backoff=max_backoff, rand=rand)


# --- back-off ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("attempts", "nominal"), [(1, 2), (2, 4), (5, 32), (9, 512), (10, 600), (40, 600),
                                                   (10_000, 600)])
def test_the_wait_doubles_with_each_try_up_to_the_max(attempts, nominal):
    assert backoff_seconds(attempts, 600, rand=0.5) == nominal


def test_the_wait_is_drawn_within_twenty_percent_and_never_above_the_max():
    assert backoff_seconds(3, 600, rand=0.0) == pytest.approx(8 * 0.8)
    assert backoff_seconds(3, 600, rand=0.999999) == pytest.approx(8 * 1.2, rel=1e-5)
    assert backoff_seconds(20, 600, rand=0.0) == pytest.approx(480)
    assert backoff_seconds(20, 600, rand=0.999999) == 600  # a backlog at the max spreads over 8 to 10 minutes
    assert backoff_seconds(3, 5, rand=0.999999) == 5


def test_a_temporary_failure_waits_its_back_off_while_patience_lasts():
    step = decide(attempts=3, since=timedelta(minutes=1), rand=0.5)
    assert step == Retry(T0 + timedelta(minutes=1, seconds=8))
    assert decide(attempts=30, since=timedelta(hours=2)) == Retry(T0 + timedelta(hours=2, minutes=10))


def test_the_last_try_is_when_patience_runs_out_then_the_next_channel():
    assert decide(attempts=30, since=SIX_HOURS - timedelta(minutes=1)) == Retry(T0 + SIX_HOURS)
    assert decide(attempts=31, since=SIX_HOURS) == FallBack("sms", "13812341234")


def test_a_server_down_for_hours_is_tried_for_six_of_them_at_most_ten_minutes_apart():
    """A mail server down from the first try: every try fails; when does the message go by SMS?"""
    now, attempts, waits = T0, 1, []
    while isinstance(step := decide(attempts=attempts, since=now - T0, rand=(attempts * 0.37) % 1), Retry):
        waits.append((attempts, (step.at - now).total_seconds()))
        now, attempts = step.at, attempts + 1
    assert step == FallBack("sms", "13812341234") and now == T0 + SIX_HOURS
    assert max(wait for _, wait in waits) == 600
    *waited, (_, last) = waits
    for tries, wait in waited:
        nominal = min(2 ** tries, 600)
        assert 0.8 * nominal <= wait <= min(1.2 * nominal, 600), (tries, wait)
    assert 0 < last <= 600  # the last wait ends when patience runs out
    assert 36 < attempts < 50  # not six tries and done (the issue); not a try every few seconds for hours


def test_patience_counts_from_the_first_try_and_a_missing_first_try_from_now():
    assert isinstance(decide(since=timedelta(hours=5, minutes=59)), Retry)
    assert isinstance(decide(since=timedelta(hours=6, seconds=1)), FallBack)
    fresh = after_failure(attempts=1, first_tried_at=None, now=T0, permanent=False, tried=("email",),
                          channels=("email", "sms"), contact=BOTH, patience=SIX_HOURS, max_backoff=600, rand=0.5)
    assert fresh == Retry(T0 + timedelta(seconds=2))


# --- fallback and giving up --------------------------------------------------------------------------------


def test_a_refusal_for_good_falls_back_at_once():
    assert decide(attempts=1, permanent=True) == FallBack("sms", "13812341234")
    assert decide(attempts=1, permanent=True, tried=("sms",), channels=("sms", "email")) == \
        FallBack("email", "wang@example.cn")


def test_the_fallback_is_the_next_channel_the_resident_has_an_address_for_and_was_not_tried():
    email_only = {"email": "wang@example.cn", "phone": " "}
    assert decide(permanent=True, contact=email_only) == GiveUp(("email",))
    assert decide(permanent=True, tried=("email", "sms"), contact=BOTH) == GiveUp(("email", "sms"))
    assert decide(permanent=True, channels=("email",)) == GiveUp(("email",))  # sms is not this instance's
    assert decide(permanent=True, tried=("sms",), channels=("email", "sms")) == FallBack("email", "wang@example.cn")


def test_without_a_contact_there_is_no_fallback():
    """Staff messages keep no contact: email only."""
    assert decide(permanent=True, contact=None) == GiveUp(("email",))
    assert decide(since=SIX_HOURS, contact=None) == GiveUp(("email",))


def test_first_channel_follows_the_preference_and_skips_missing_addresses():
    assert first_channel(("sms", "email"), BOTH) == ("sms", "13812341234")
    assert first_channel(("email", "sms"), BOTH) == ("email", "wang@example.cn")
    assert first_channel(("sms", "email"), {"phone": None, "email": " wang@example.cn "}) == \
        ("email", "wang@example.cn")
    assert first_channel(("email", "sms"), {"phone": "", "email": None}) is None
    assert first_channel(("email", "sms"), BOTH, skip=("email", "sms")) is None


# --- configuration -----------------------------------------------------------------------------------------


def test_channels_parse_as_an_ordered_list_and_the_old_single_channel_goes_first():
    assert parse_channels(" sms, email ,sms") == ("sms", "email")
    assert parse_channels(["email"]) == ("email",)
    assert channel_order({"CHANNELS": "email,sms"}) == ("email", "sms")
    assert channel_order({"CHANNEL": "sms", "CHANNELS": "email,sms"}) == ("sms", "email")
    assert channel_order({"CHANNEL": "sms"}) == ("sms",)  # a config of old: that channel only
    assert channel_order({"CHANNEL": "", "CHANNELS": None}) == ("email",)
    with pytest.raises(ValueError, match="fax"):
        parse_channels("email,fax")


def test_the_environment_names_of_the_config(monkeypatch):
    """NOTIFY_CHANNELS, NOTIFY_DELIVERY_PATIENCE_SECONDS, NOTIFY_DELIVERY_MAX_BACKOFF_SECONDS: others rely on them."""
    for name in ("NOTIFY_CHANNEL", "NOTIFY_CHANNELS", "NOTIFY_DELIVERY_PATIENCE_SECONDS",
                 "NOTIFY_DELIVERY_MAX_BACKOFF_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    default = load_config(config_path("notify"))
    assert channel_order(default) == ("email",)
    assert (default["DELIVERY_PATIENCE_SECONDS"], default["DELIVERY_MAX_BACKOFF_SECONDS"]) == (21600, 600)

    monkeypatch.setenv("NOTIFY_CHANNELS", "sms,email")
    monkeypatch.setenv("NOTIFY_DELIVERY_PATIENCE_SECONDS", "7.5")
    monkeypatch.setenv("NOTIFY_DELIVERY_MAX_BACKOFF_SECONDS", "3")
    monkeypatch.setenv("SMS_GATEWAY_URL", "http://gw.example/sms")
    config = load_config(config_path("notify"))
    assert [c["kind"] for c in courier.channel_configs(config)] == ["sms", "email"]
    assert courier.channel_configs(config)[0]["url"] == "http://gw.example/sms"
    assert float(config["DELIVERY_PATIENCE_SECONDS"]) == 7.5 and float(config["DELIVERY_MAX_BACKOFF_SECONDS"]) == 3

    monkeypatch.delenv("NOTIFY_CHANNELS")
    monkeypatch.setenv("NOTIFY_CHANNEL", "sms")  # deprecated, still honoured: first
    assert channel_order(load_config(config_path("notify"))) == ("sms", "email")
