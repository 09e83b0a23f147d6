"""`./sdj bench --surge` offers three times what the loop sustains, as issue 11 asks: told by `--rate`, or, when not
told, measured first in the same hour (songdaojia/bench.py `sustainable_rate`), since the machine's speed moves by
half within a day. Only the arithmetic and what is offered are checked here; the runs themselves are the
benchmark's."""
from __future__ import annotations

import io
import math

import pytest

from songdaojia import bench, cli


def test_the_cores_ceiling_counts_every_process_of_the_run():
    cpu = {"intake": 5.0, "dispatch": 11.0, "volunteer": 2.0, "notify": 10.0, "rabbitmq": 4.0, "demo": 6.0,
           "mail server": 2.0}
    assert bench.cpu_ceiling(cpu, 2) == pytest.approx(50.0)  # 2,000 CPU ms a second ÷ 40 ms a ticket
    assert bench.cpu_ceiling(cpu, 4) == pytest.approx(100.0)
    assert math.isnan(bench.cpu_ceiling({}, 2))


class Stand:
    run_name = "?"


def test_what_the_loop_sustains_is_measured_on_a_stack_of_its_own(monkeypatch):
    runs = []

    def loop(stack, tickets, rate, volunteers, out, instances=1, postgres=None, watch=None):
        runs.append((stack.run_name, tickets, rate, instances, postgres))
        return {"finished": True, "CPU ms per ticket": {"intake": 20.0, "dispatch": 30.0, "demo": 30.0}}

    monkeypatch.setattr(bench, "_loop", loop)
    monkeypatch.setattr(bench, "core_count", lambda: 2)
    out = io.StringIO()
    assert bench.sustainable_rate(Stand, instances=2, postgres="postgresql://x", out=out) == pytest.approx(25.0)
    assert runs == [("bench-calibration", bench.CALIBRATION_TICKETS, bench.CALIBRATION_RATE, 2, "postgresql://x")]
    assert "at most 25.0 tickets/s (2 cores ÷ 80.0 CPU ms a ticket" in out.getvalue()


def test_a_calibration_that_did_not_close_its_tickets_sizes_no_surge(monkeypatch):
    monkeypatch.setattr(bench, "_loop", lambda *args, **kwargs: {"finished": False, "CPU ms per ticket": {}})
    with pytest.raises(SystemExit, match="calibration run did not close its tickets"):
        bench.sustainable_rate(Stand, out=io.StringIO())


@pytest.fixture
def offered(monkeypatch):
    """What the benchmark would run, with the loop sustaining 27.9 tickets/s when measured."""
    seen = {"measured": 0}

    def measure(new_stack, volunteers, instances=1, postgres=None):
        seen["measured"] += 1
        return 27.9

    def run(stack, tickets, rate, **kwargs):
        seen.update(tickets=tickets, rate=rate)
    monkeypatch.setattr(bench, "sustainable_rate", measure)
    monkeypatch.setattr(bench, "run_bench", run)
    return seen


def test_a_surge_untold_offers_three_times_what_the_loop_was_measured_to_sustain(offered):
    assert cli.main(["bench", "--surge"]) == 0
    assert offered == {"measured": 1, "rate": 83.7, "tickets": 5022}  # 83.7/s for 60 s


def test_a_surge_told_the_rate_offers_its_factor_of_it_without_measuring(offered):
    assert cli.main(["bench", "--rate", "20", "--surge", "2"]) == 0
    assert offered == {"measured": 0, "rate": 40.0, "tickets": 2400}


def test_without_a_surge_the_benchmark_offers_what_it_is_told(offered):
    assert cli.main(["bench"]) == 0
    assert offered == {"measured": 0, "rate": cli.BENCH_RATE, "tickets": 2000}
    assert cli.main(["bench", "--tickets", "900", "--rate", "30"]) == 0
    assert offered == {"measured": 0, "rate": 30.0, "tickets": 900}
