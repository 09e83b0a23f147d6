"""How fast is a matching decision at Suzhou scale? `python -m services.volunteer.bench_matching`

Timing lives here, not in the tests, so the test suite stays deterministic on a busy CI box.
"""
from __future__ import annotations

import random
import time
from collections import deque

from services.volunteer.matching import SKILLS, MatchRequest, VolunteerIndex, generate_volunteers

SUZHOU_VILLAGES = 1358
SUZHOU_TOWNS = 122


def synthetic_villages(villages: int = SUZHOU_VILLAGES, towns: int = SUZHOU_TOWNS) -> list[tuple[str, str]]:
    """(village_code, town_code) pairs shaped like the real ones, villages dealt round-robin to towns."""
    return [(f"3413{index % towns:05d}{index // towns:03d}", f"3413{index % towns:05d}")
            for index in range(villages)]


def _percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def measure(
    n_volunteers: int = 100_000,
    n_requests: int = 20_000,
    seed: int = 3413,
    villages: list[tuple[str, str]] | None = None,
) -> dict:
    villages = villages or synthetic_villages()

    started = time.perf_counter()
    volunteers = generate_volunteers(villages, seed=seed, volunteers=n_volunteers)
    generated = time.perf_counter()
    index = VolunteerIndex()
    for volunteer in volunteers:
        index.add(volunteer)
    built = time.perf_counter()

    # Offers hold load from when they are made until their ticket closes; keeping a window of open
    # tickets makes loads (and so the choices) move as they would in service.
    rng = random.Random(seed)
    open_tickets: deque[str] = deque()
    decisions_ms: list[float] = []
    outcomes = {"village": 0, "town": 0, "none": 0}
    for number in range(n_requests):
        village_code, town_code = rng.choice(villages)
        request = MatchRequest(f"K{number}", village_code, town_code, rng.choice(SKILLS))
        tick = time.perf_counter_ns()
        match = index.match(request)
        decisions_ms.append((time.perf_counter_ns() - tick) / 1e6)
        if match is None:
            outcomes["none"] += 1
            continue
        outcomes[match.distance] += 1
        index.take(match.volunteer_id)
        open_tickets.append(match.volunteer_id)
        if len(open_tickets) > n_requests // 4:
            index.release(open_tickets.popleft())

    decisions_ms.sort()
    return {
        "volunteers": len(volunteers),
        "requests": n_requests,
        "generate_ms": round((generated - started) * 1000, 1),
        "build_ms": round((built - generated) * 1000, 1),
        "p50_ms": round(_percentile(decisions_ms, 0.50), 4),
        "p99_ms": round(_percentile(decisions_ms, 0.99), 4),
        "max_ms": round(decisions_ms[-1], 4),
        "matched_in_village": outcomes["village"],
        "matched_in_town": outcomes["town"],
        "unmatched": outcomes["none"],
    }


if __name__ == "__main__":
    for key, value in measure().items():
        print(f"{key:>20}: {value}")
