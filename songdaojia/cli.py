"""songdaojia: one command line for people — run the loop, submit, look up, ledger, benchmark."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .stack import ROOT, Stack


def _stack(args) -> Stack:
    return Stack(amqp_uri=args.amqp, var_dir=Path(args.var_dir))


def cmd_demo(args) -> int:
    from .demo import run_loop
    report = run_loop(_stack(args), args.tickets, args.rate, args.timeout, seed=args.seed,
                      keep_running=args.keep_running, volunteers=args.volunteers)
    ok = report["finished"] and report["missing"] == 0 and report["acknowledged twice"] == 0
    return 0 if ok else 1


def cmd_prepare(args) -> int:
    from .stack import prepare
    prepare(_stack(args), volunteers=args.volunteers)
    print("migrated and declared")
    return 0


def cmd_submit(args) -> int:
    from services.intake.client import IntakeClient
    request = json.loads(Path(args.file).read_text(encoding="utf-8") if args.file else sys.stdin.read())
    with IntakeClient(args.amqp, source="cli") as client:
        print(client.submit(request.get("channel", "hotline"), request))
    return 0


def cmd_ticket(args) -> int:
    import requests
    stack = _stack(args)
    for service, path in (("intake", f"/tickets/{args.ticket_no}"), ("dispatch", f"/tickets/{args.ticket_no}")):
        r = requests.get(stack.http(service) + path, timeout=5)
        print(f"{service}: {r.status_code}\n{json.dumps(r.json(), ensure_ascii=False, indent=2)}")
    return 0


def cmd_ledger(args) -> int:
    import requests
    r = requests.get(_stack(args).http("dispatch") + "/ledger", timeout=5)
    print(json.dumps(r.json(), ensure_ascii=False, indent=2))
    return 0 if r.ok else 1


def cmd_bench(args) -> int:
    from .bench import run_bench
    run_bench(_stack(args), args.tickets, args.rate, volunteers=args.volunteers)
    return 0


def cmd_replay(args) -> int:
    from .replay import replay
    report = replay(_stack(args), Path(args.path), args.speedup, args.limit)
    return 0 if not report["unaccounted"] else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="songdaojia", description=__doc__)
    parser.add_argument("--amqp", default=os.environ.get("AMQP_URI", "amqp://guest:guest@127.0.0.1:5672/%2F"))
    parser.add_argument("--var-dir", default=os.environ.get("SDJ_VAR_DIR", str(ROOT / "var")),
                        help="where SQLite files and logs go (default ./var)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="run the closed loop end to end and print the report")
    p.add_argument("--tickets", type=int, default=200)
    p.add_argument("--rate", type=float, default=10.0, help="requests per second offered (0: as fast as possible)")
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--seed", type=int, default=3413)
    p.add_argument("--volunteers", type=int, default=100_000)
    p.add_argument("--keep-running", action="store_true",
                   help="leave the services running after the report, and print where they listen")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("prepare", help="migrate the databases, declare queues, seed demo volunteers")
    p.add_argument("--volunteers", type=int, default=100_000)
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("submit", help="publish one request (JSON file or stdin) as an outside system")
    p.add_argument("file", nargs="?")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("ticket", help="look up a ticket in intake and dispatch")
    p.add_argument("ticket_no")
    p.set_defaults(func=cmd_ticket)

    sub.add_parser("ledger", help="the ledger (台账) from dispatch").set_defaults(func=cmd_ledger)

    p = sub.add_parser("replay", help="replay a 311 export (NYC or Los Angeles CSV) through the AMQP intake")
    p.add_argument("path", help="the CSV file (not part of this project)")
    p.add_argument("--speedup", type=float, default=0.0,
                   help="compress the file's own timeline this many times (0: as fast as possible)")
    p.add_argument("--limit", type=int, default=None, help="only the first N rows")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("bench", help="benchmark: tickets/s, ack latency, broker ceiling")
    p.add_argument("--tickets", type=int, default=2000)
    p.add_argument("--rate", type=float, default=100.0)
    p.add_argument("--volunteers", type=int, default=100_000)
    p.set_defaults(func=cmd_bench)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
