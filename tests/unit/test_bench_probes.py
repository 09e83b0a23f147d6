"""The benchmark's probes read what they are given correctly: the broker's counters, the backlog's peak and
drain time, per-ticket figures (songdaojia/bench_probes.py). Timing itself is the benchmark's, never a test's."""
from __future__ import annotations

from songdaojia import bench_probes
from songdaojia.bench_probes import Backlog, Watches, per_ticket

RABBITMQCTL_OUTPUT = "[38231,\n 54437,\n 53539]\n"


def test_the_broker_counters_are_read_from_rabbitmqctl(monkeypatch):
    monkeypatch.setattr(bench_probes, "rabbitmqctl", lambda *args: RABBITMQCTL_OUTPUT)
    assert bench_probes.broker_counters() == {"received": 38231, "routed": 54437, "delivered": 53539}


def test_no_counters_where_rabbitmqctl_cannot_say(monkeypatch):
    def refuse(*args):
        raise RuntimeError("rabbitmqctl: not found")
    monkeypatch.setattr(bench_probes, "rabbitmqctl", refuse)
    assert bench_probes.broker_counters() is None
    monkeypatch.setattr(bench_probes, "rabbitmqctl", lambda *args: "{badrpc,nodedown}")
    assert bench_probes.broker_counters() is None


def test_messages_per_ticket_are_the_difference_over_the_tickets():
    before = {"received": 100, "routed": 150, "delivered": 140}
    after = {"received": 1300, "routed": 2550, "delivered": 2540}
    assert per_ticket(before, after, 100) == {"received": 12.0, "routed": 24.0, "delivered": 24.0}
    assert per_ticket(None, after, 100) is None and per_ticket(before, after, 0) is None


def backlog(samples, publishing_seconds):
    probe = Backlog(stack=None, publishing_seconds=publishing_seconds)
    probe.samples = samples
    probe._stopping.set()
    probe.join = lambda timeout=None: None  # never started
    return probe.stop()


def test_the_backlog_peak_and_the_drain_after_the_last_request():
    samples = [(0.5, 3), (1.0, 40), (1.5, 120), (2.0, 90), (2.5, 11), (3.0, 10), (3.5, 4), (4.0, 0)]
    assert backlog(samples, publishing_seconds=2.0) == {
        "backlog peak messages": 120, "backlog peak at s": 1.5, "drained s after the last request": 1.0}


def test_a_large_backlog_has_drained_at_one_percent_of_its_peak():
    samples = [(1.0, 5000), (2.0, 900), (3.0, 51), (4.0, 50), (5.0, 3)]
    assert backlog(samples, publishing_seconds=1.0)["drained s after the last request"] == 3.0


def test_a_backlog_empty_while_requests_still_come_has_not_drained_yet():
    samples = [(0.5, 0), (1.0, 0), (1.5, 50), (2.0, 0), (2.5, 0)]  # the last request goes out at 2.2 s
    assert backlog(samples, publishing_seconds=2.2)["drained s after the last request"] == 0.3


def test_a_backlog_still_waiting_at_the_end_says_so():
    assert backlog([(0.5, 10), (1.0, 20)], publishing_seconds=0.5)["drained s after the last request"] == \
        "not within the run"


def test_watches_start_together_and_merge_what_they_found():
    class Probe:
        def __init__(self, found):
            self.found, self.procs = found, None

        def __call__(self, procs):
            self.procs = procs
            return self

        def stop(self):
            return self.found
    first, second = Probe({"a": 1}), Probe({"b": 2})
    watch = Watches(first, None, second)({"intake": object()})
    assert first.procs is second.procs and watch.stop() == {"a": 1, "b": 2}


def _frame(name: str, y: int, x: int, w: int) -> str:
    return (f'<g><title>{name} ({w} samples, {w * 10}%)</title><rect x="{x * 10}%" y="{y}" width="{w * 10}%" '
            f'height="15" fill="rgb(1,2,3)" fg:x="{x}" fg:w="{w}"/><text x="0" y="0"></text></g>')


def test_a_flame_graph_is_summed_per_library_by_each_frame_s_own_samples():
    """py-spy's SVG: the root row `all`, each child one row further down and within its parent's span; a frame's
    own samples are its width less its children's. Lines of one function are merged."""
    svg = "".join([
        _frame("all", 84, 0, 10),
        _frame("DispatchService.open_case (services/dispatch/service.py:56)", 100, 0, 6),
        _frame("Session.flush (sqlalchemy/orm/session.py:4100)", 100, 6, 4),
        _frame("GreenSocket._send_loop (eventlet/greenio/base.py:383)", 116, 0, 1),
        _frame("GreenSocket._send_loop (eventlet/greenio/base.py:390)", 116, 1, 1),
    ])
    summary = bench_probes.flame_summary(svg)
    assert summary["samples"] == 10
    assert summary["by library"] == {"ours": 40.0, "sqlalchemy": 40.0, "eventlet": 20.0}
    assert summary["top"][2] == (20.0, "GreenSocket._send_loop (eventlet/greenio/base.py)")
    assert "40.0%  sqlalchemy" in bench_probes.summary_text("dispatch", summary)


def test_an_empty_flame_graph_says_so():
    assert bench_probes.flame_summary("<svg></svg>") == {"samples": 0, "by library": {}, "top": []}


def test_repeated_runs_give_each_figure_s_median_and_range():
    from songdaojia.bench import repeated_figures
    runs = [{"closed loop tickets/s": 25.0, "ack p99 ms": 160.0, "CPU ms, services+broker": 52.1,
             "CPU ms per ticket": {"intake": 7.7, "notify": 17.1}, "backlog peak messages": "n/a"},
            {"closed loop tickets/s": 24.7, "ack p99 ms": 326.0, "CPU ms, services+broker": 54.5,
             "CPU ms per ticket": {"intake": 7.3, "notify": 19.2}, "backlog peak messages": 303},
            {"closed loop tickets/s": 24.8, "ack p99 ms": 314.0, "CPU ms, services+broker": 55.6,
             "CPU ms per ticket": {"intake": 7.5, "notify": 19.8}, "backlog peak messages": 187}]
    summary = repeated_figures(runs)
    assert summary["closed loop tickets/s"] == "24.8 (24.7–25)"
    assert summary["CPU ms, notify"] == "19.2 (17.1–19.8)" and summary["CPU ms, intake"] == "7.5 (7.3–7.7)"
    assert summary["backlog peak messages"] == "245 (187–303)"  # a run that could not say is left out
    assert summary["ack p50 ms"] == "n/a"


def test_cpu_per_ticket_sums_each_service_s_instances_and_the_load_generator_s_processes():
    from songdaojia.bench import _cpu_by_part
    cpu = {"intake": 6.0, "dispatch": 14.0, "dispatch-2": 1.5, "volunteer": 2.5, "notify": 13.0, "demo": 10.0,
           "mail server": 2.0, "rabbitmq": 7.5, "postgresql": 30.0}
    assert _cpu_by_part(cpu) == {"intake": 6.0, "dispatch": 15.5, "volunteer": 2.5, "notify": 13.0,
                                 "load generator": 12.0, "rabbitmq": 7.5, "postgresql": 30.0}


def test_transactions_and_messages_a_ticket_are_what_the_run_added_to_each_service_s_counters():
    from songdaojia.demo import per_ticket_counts, work_per_instance
    before = {"dispatch": {("sdj_db_transactions_total", "dispatch", "open_case"): 40.0,
                           ("sdj_messages_total", "dispatch", "dispatch.open_case", "handled"): 40.0}}
    after = {"dispatch": {("sdj_db_transactions_total", "dispatch", "open_case"): 240.0,
                          ("sdj_db_transactions_total", "dispatch", "outbox relay"): 30.0,
                          ("sdj_db_transactions_total", "dispatch", "metrics"): 1.0,
                          ("sdj_messages_total", "dispatch", "dispatch.open_case", "handled"): 240.0,
                          ("sdj_messages_total", "dispatch", "dispatch.open_case", "dead_lettered"): 3.0},
             "dispatch-2": {("sdj_db_transactions_total", "dispatch", "open_case"): 100.0,
                            ("sdj_messages_total", "dispatch", "dispatch.open_case", "handled"): 100.0}}
    counts = per_ticket_counts(before, after, 100)
    assert counts["transactions a ticket"] == {"dispatch": 3.31}  # both instances, every part
    assert counts["transactions a ticket, by what began them"] == {"dispatch.open_case": 3.0,
                                                                   "dispatch.outbox relay": 0.3,
                                                                   "dispatch.metrics": 0.01}
    assert counts["messages handled a ticket, by queue"] == {"dispatch.open_case": 3.0}  # dead letters apart
    assert work_per_instance(after) == {"dispatch": 240, "dispatch-2": 100}
