"""songdaojia: one command line for people — run the loop, submit, look up, ledger, benchmark."""
from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import timedelta
from pathlib import Path

from services.common.staff import ROLES

from .stack import ROOT, Stack

STAFF_LOOKUP = ("supervisor", "3413")  # who the look-up commands act as: a city supervisor (reads only)
BENCH_RATE = 100.0  # requests/s the benchmark offers unless told
DEFAULT_POSTGRES = os.environ.get("SDJ_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def _stack(args) -> Stack:
    return Stack(amqp_uri=args.amqp, var_dir=Path(args.var_dir))


def _secrets(args):
    """The keys folder: --secrets, else $SDJ_SECRETS, else the demo's (var/demo/secrets), else /etc/songdaojia."""
    from .security import Secrets
    if args.secrets:
        return Secrets(Path(args.secrets))
    demo = Path(args.var_dir) / "demo" / "secrets"
    return Secrets(demo if demo.exists() else Path("/etc/songdaojia"))


def _staff_headers(args) -> dict:
    token = os.environ.get("SDJ_TOKEN") or _secrets(args).token("songdaojia-cli", *STAFF_LOOKUP,
                                                                ttl=timedelta(minutes=5))
    return {"Authorization": f"Bearer {token}"}


def cmd_demo(args) -> int:
    from .demo import DEMO_DOOR_TOWN, run_loop
    stack, cluster, started = _stack(args), None, False
    try:
        if args.cluster:  # three RabbitMQ nodes of our own (deploy/rabbitmq-cluster.sh), quorum queues
            from .cluster import Cluster
            cluster = Cluster(nodes=3)
            started = not cluster.running()
            print(f"broker: {'starting' if started else 'using'} a 3-node RabbitMQ cluster on 127.0.0.1:"
                  f"{cluster.port}-{cluster.port + 2} (deploy/rabbitmq-cluster.sh) …", flush=True)
            cluster.up()
            os.environ["SDJ_RABBITMQCTL"] = cluster.rabbitmqctl_command()
            stack.amqp_uri = cluster.uri()
        postgres = args.postgres or (DEFAULT_POSTGRES if args.instances > 1 or args.cluster else None)
        report = run_loop(stack, args.tickets, args.rate, args.timeout, seed=args.seed,
                          keep_running=args.keep_running, volunteers=args.volunteers, instances=args.instances,
                          postgres=postgres, door_town=None if args.no_visits else DEMO_DOOR_TOWN)
    except KeyboardInterrupt as stop:  # Ctrl-C, SIGTERM or SIGHUP before the report: services stopped
        print(f"stopped ({stop or 'SIGINT'}); the services were stopped too", file=sys.stderr)
        return 130
    finally:
        if started:  # a cluster this run started goes with it
            cluster.down()
    ok = report["finished"] and report["missing"] == 0 and report["acknowledged twice"] == 0
    return 0 if ok else 1


def _deployed(args) -> Stack:
    """The stack as ops run it: each service's database from `<SERVICE>_DB_URL` where set (else the
    SQLite file under --var-dir), its logins from the keys folder."""
    from .stack import APPS
    stack = _stack(args)
    stack.db_urls = {name: os.environ[f"{name.upper()}_DB_URL"] for name in APPS
                     if os.environ.get(f"{name.upper()}_DB_URL")}
    return stack


def cmd_prepare(args) -> int:
    from .stack import prepare
    stack = _deployed(args)
    stack.use_secrets(_secrets(args).directory)
    prepare(stack, volunteers=args.demo_volunteers)
    print("migrated and declared" + (f"; demo volunteers up to {args.demo_volunteers:,}" if args.demo_volunteers
                                     else ""))
    return 0


def cmd_declare(args) -> int:
    """Declare every exchange and queue on the broker, as the vhost's admin login: prepare's broker half, for
    a deployment whose databases are migrated one by one (deploy/compose.yaml). Idempotent."""
    import importlib

    from services.common.messaging import declare_topology

    from .stack import SERVICES
    stack = _deployed(args)
    stack.use_secrets(_secrets(args).directory)
    for name, cls in SERVICES.items():
        service_cls = getattr(importlib.import_module(f"services.{name}.service"), cls)
        queues = declare_topology(service_cls, stack.config(name), unbind_digested=args.unbind_digested)
        print(f"{name}: declared its exchanges and {len(queues)} queues on {stack.vhost!r}"
              + ("; the events its digests' consumers read from the digests are unbound" if args.unbind_digested
                 else ""))
    return 0


def cmd_migrate(args) -> int:
    from services.common.migrations import upgrade

    from .stack import APPS
    unknown = set(args.services) - set(APPS)
    if unknown:
        print(f"migrate: no service {', '.join(sorted(unknown))}; the services are {', '.join(APPS)}",
              file=sys.stderr)
        return 2
    stack = _deployed(args)
    for name in args.services or APPS:
        upgrade(name, stack.db_url(name))
        print(f"{name}: migrated ({stack.db_url(name).split('@')[-1]})")
    return 0


def cmd_submit(args) -> int:
    from services.intake.client import IntakeClient
    request = json.loads(Path(args.file).read_text(encoding="utf-8") if args.file else sys.stdin.read())
    amqp = args.publisher or _publisher_uri(args)
    with IntakeClient(amqp, source="cli") as client:
        print(client.submit(request.get("channel", "hotline"), request))
    return 0


def _publisher_uri(args) -> str:
    found = sorted((_secrets(args).directory / "broker").glob("*.publisher-*.uri"))
    if not found:
        raise SystemExit("no outside publisher's login found: give --publisher amqp://user:password@host/vhost")
    return found[0].read_text(encoding="utf-8").strip()


def cmd_ticket(args) -> int:
    import requests
    stack = _stack(args)
    for service, path in (("intake", f"/tickets/{args.ticket_no}"), ("dispatch", f"/tickets/{args.ticket_no}")):
        r = requests.get(stack.http(service) + path, headers=_staff_headers(args), timeout=5)
        print(f"{service}: {r.status_code}\n{json.dumps(r.json(), ensure_ascii=False, indent=2)}")
    return 0


def cmd_ledger(args) -> int:
    """The ledger (台账) of an area from dispatch: a table for people, or CSV for a spreadsheet."""
    import requests
    if args.area and os.environ.get("SDJ_TOKEN"):
        raise SystemExit("--area mints a token for that area; SDJ_TOKEN is set, and its area is the one read")
    if args.area:
        token = _secrets(args).token("songdaojia-cli", STAFF_LOOKUP[0], args.area, ttl=timedelta(minutes=5))
        headers = {"Authorization": f"Bearer {token}"}
    else:
        headers = _staff_headers(args)
    query = {"level": args.level, "period": args.period, "format": "csv" if args.csv else None}
    r = requests.get(_stack(args).http("dispatch") + "/ledger", headers=headers, timeout=30,
                     params={k: v for k, v in query.items() if v})
    if not r.ok:
        print(f"dispatch answered {r.status_code}: {r.text}", file=sys.stderr)
        return 1
    if args.csv:
        sys.stdout.write(r.text)
    elif "rows" in r.json():
        print(ledger_table(r.json()))
    else:  # a dispatch older than the ledger of rates
        print(json.dumps(r.json(), ensure_ascii=False, indent=2))
    return 0


LEDGER_COLUMNS = (  # header, what it shows: a count, or "count/base rate"
    ("received", "received", None), ("ack ≤10s", "acknowledged_10s", "received"),
    ("accepted on time", "accepted_on_time", "accepted"), ("resolved on time", "resolved_on_time", "resolved"),
    ("overdue now", "overdue_now", None), ("escalated", "escalated", None), ("returned", "returned", None),
    ("reassigned", "reassigned", None), ("reopened", "reopened", "resolved"), ("cancelled", "cancelled", None),
    ("closed", "closed", None), ("satisfied", "satisfied", "answered"), ("proxy done", "proxy_handled", None),
)


def ledger_table(ledger: dict) -> str:
    """The ledger as a plain-text table: one line per group, then the totals."""
    def cell(row, count, base):
        if base is None:
            return str(row[count])
        return f"{row[count]}/{row[base]} " + (f"{row[count] / row[base]:.1%}" if row[base] else "-")
    header = [ledger["level"], "name", *(title for title, _, _ in LEDGER_COLUMNS)]
    lines = [[row["key"], row["name"], *(cell(row, c, b) for _, c, b in LEDGER_COLUMNS)]
             for row in [*ledger["rows"], ledger["totals"]]]
    widths = [max(_width(text) for text in column) for column in zip(header, *lines)]

    def line(cells):
        return "  ".join(_pad(text, width, left=i < 2) for i, (text, width) in enumerate(zip(cells, widths)))
    title = f"Ledger (台账) of {ledger['area']} by {ledger['level']}, " + \
        (f"received in {ledger['period']} (China time)" if ledger["period"] else "all time")
    rule = "-" * len(line(header))
    return "\n".join([title, line(header), rule, *map(line, lines[:-1]), rule, line(lines[-1])])


def _width(text: str) -> int:
    """Columns on a terminal: Chinese characters take two."""
    import unicodedata
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int, left: bool) -> str:
    space = " " * (width - _width(text))
    return text + space if left else space + text


def _ledger_level(text: str) -> str:
    from services.dispatch.ledger import LEVELS
    if text not in LEVELS:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(LEVELS)}")
    return text


def _ledger_period(text: str) -> str:
    from services.dispatch.ledger import BadPeriod, parse_period
    try:
        return parse_period(text).name
    except BadPeriod as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_token(args) -> int:
    """Mint a staff token with the keys folder's signing key (operators, the demo, tests)."""
    hours = float(args.ttl.rstrip("h"))
    print(_secrets(args).token(args.subject, args.role, args.area, ttl=timedelta(hours=hours),
                               department=args.department))
    return 0


def cmd_secure(args) -> int:
    """Keys and secrets in --dir, and the vhost's broker users, rights and dead-letter policy. Idempotent."""
    from . import broker, security
    secrets = security.ensure(Path(args.dir), open311_clients=tuple(args.open311_client) or
                              security.OPEN311_CLIENTS)
    consoles = {}
    for item in args.console:
        name, _, area = item.partition("=")
        consoles[name] = _area_path(area)
    uris = broker.secure(args.amqp, args.vhost, secrets.directory, publishers=tuple(args.publisher) or ("channels",),
                         consoles=consoles or {"city": ("3413",)}, monitor=args.monitor,
                         dead_letter_days=args.dead_letter_days, dead_letter_max=args.dead_letter_max)
    print(f"keys and secrets in {secrets.directory} (owner-only); broker users on vhost {args.vhost!r}:")
    for user in uris:
        print(f"  {user:<40} {secrets.directory / 'broker' / (user + '.uri')}")
    return 0


def _area_path(area: str) -> tuple[str, ...]:
    from services.dispatch.areas import AreaMap
    return tuple(a.code for a in AreaMap.load().path(area))


def cmd_bench(args) -> int:
    from .bench import compare_instances, repeat_bench, run_bench, sustainable_rate
    counts = list(dict.fromkeys(args.instances))  # as given, each once
    if min(counts) < 1:
        raise SystemExit("bench: --instances counts are 1 or more")
    # several instances share one database, and runs side by side compare on the same footing: PostgreSQL
    postgres = args.postgres or (DEFAULT_POSTGRES if len(counts) > 1 or counts[0] > 1 else None)
    tickets, rate = args.tickets, BENCH_RATE if args.rate is None else args.rate
    if args.surge:  # SURGE times what the loop sustains, for 60 s: does the acknowledgement hold, how long to drain?
        sustained = args.rate if args.rate is not None else sustainable_rate(
            lambda: _stack(args), args.volunteers, instances=counts[0], postgres=postgres)
        rate = round(sustained * args.surge, 1)
        tickets = int(rate * 60)
        print(f"surge: {args.surge:g} × {sustained:.1f}/s = {rate:g} requests/s for 60 s ({tickets} requests)",
              flush=True)
    if args.repeat < 1:
        raise SystemExit("bench: --repeat is 1 or more")
    if len(counts) == 1 and args.repeat > 1:
        repeat_bench(lambda: _stack(args), args.repeat, tickets=tickets, rate=rate, volunteers=args.volunteers,
                     instances=counts[0], postgres=postgres, profile=args.profile)
    elif len(counts) == 1:
        run_bench(_stack(args), tickets, rate, volunteers=args.volunteers, instances=counts[0],
                  postgres=postgres, console=args.console, profile=args.profile)
    else:
        compare_instances(lambda: _stack(args), tickets, rate, counts, postgres, volunteers=args.volunteers)
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
    parser.add_argument("--secrets", default=os.environ.get("SDJ_SECRETS"),
                        help="the keys folder (default: the demo's var/demo/secrets, else /etc/songdaojia)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="run the closed loop end to end and print the report")
    p.add_argument("--tickets", type=int, default=200)
    p.add_argument("--rate", type=float, default=10.0, help="requests per second offered (0: as fast as possible)")
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--seed", type=int, default=3413)
    p.add_argument("--volunteers", type=int, default=100_000)
    p.add_argument("--instances", type=int, default=1, metavar="N",
                   help="run N processes of every service, on PostgreSQL (default: one each, on SQLite)")
    p.add_argument("--postgres", metavar="URL", help=f"PostgreSQL admin URL for the run's databases "
                                                    f"(default with --instances: {DEFAULT_POSTGRES})")
    p.add_argument("--cluster", action="store_true",
                   help="on a 3-node RabbitMQ cluster of this machine's own (deploy/rabbitmq-cluster.sh) with "
                        "quorum queues, and PostgreSQL; a cluster the run started is stopped at its end")
    p.add_argument("--no-visits", action="store_true",
                   help="the loop alone: no outreach, no town's day of visits (问需) beside it")
    p.add_argument("--keep-running", action="store_true",
                   help="leave the services running after the report, and print where they listen")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("prepare", help="migrate the databases (<SERVICE>_DB_URL), declare queues")
    p.add_argument("--demo-volunteers", type=int, default=0, metavar="N",
                   help="also register the first N demo volunteers not registered yet (nothing is ever deleted)")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("declare", help="declare every exchange and queue (as the vhost's admin login)")
    p.add_argument("--unbind-digested", action="store_true",
                   help="an upgrade's last step, once every service runs the release that sends its digests: "
                        "unbind from each digest consumer's queue the events it now reads from the digest")
    p.set_defaults(func=cmd_declare)

    p = sub.add_parser("migrate", help="migrate the databases named by <SERVICE>_DB_URL (else var/<service>.db)")
    p.add_argument("services", nargs="*", metavar="service", help="intake, dispatch, volunteer, notify (default: all)")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("submit", help="publish one request (JSON file or stdin) as an outside system")
    p.add_argument("file", nargs="?")
    p.add_argument("--publisher", help="the outside publisher's AMQP URI (default: the keys folder's)")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("token", help="mint a staff token (JWT) with the keys folder's signing key")
    p.add_argument("--role", required=True, choices=ROLES)
    p.add_argument("--subject", default="operator", help="who acts (the token's sub)")
    p.add_argument("--area", required=True, help="area code: 3413 (city), 341323 (county), … a grid code")
    p.add_argument("--department", help="department code, for department_staff")
    p.add_argument("--ttl", default="8h", help="lifetime in hours, e.g. 8h")
    p.set_defaults(func=cmd_token)

    p = sub.add_parser("secure", help="make keys and secrets, and the broker's users and rights (idempotent)")
    p.add_argument("--dir", default="/etc/songdaojia", help="the keys folder (owner-only)")
    p.add_argument("--vhost", default="songdaojia")
    p.add_argument("--publisher", action="append", default=[], help="an outside publisher's name (repeatable)")
    p.add_argument("--console", action="append", default=[], help="NAME=AREA: a console's login (repeatable)")
    p.add_argument("--open311-client", action="append", default=[], help="an Open311 client's name (repeatable)")
    p.add_argument("--monitor", action="store_true", help="also a monitor login that reads every event")
    p.add_argument("--dead-letter-days", type=float, default=14.0)
    p.add_argument("--dead-letter-max", type=int, default=100_000)
    p.set_defaults(func=cmd_secure)

    p = sub.add_parser("ticket", help="look up a ticket in intake and dispatch")
    p.add_argument("ticket_no")
    p.set_defaults(func=cmd_ticket)

    p = sub.add_parser("ledger", help="the ledger (台账) from dispatch: counts and on-time rates by area, worker "
                                      "or department")
    p.add_argument("--area", help=f"whose ledger: a city, county, town, village or grid code (default "
                                  f"{STAFF_LOOKUP[1]}; mints a {STAFF_LOOKUP[0]} token for it)")
    p.add_argument("--level", type=_ledger_level, metavar="LEVEL",
                   help="county, town, village, grid, worker or department (default: one below the area)")
    p.add_argument("--period", type=_ledger_period,
                   help="tickets received on a day (2026-11-27), in an ISO week (2026-W48) or a month (2026-11), "
                        "China time (default: all time)")
    p.add_argument("--csv", action="store_true", help="CSV, one line per group and a totals line")
    p.set_defaults(func=cmd_ledger)

    p = sub.add_parser("replay", help="replay a 311 export (NYC or Los Angeles CSV) through the AMQP intake")
    p.add_argument("path", help="the CSV file (not part of this project)")
    p.add_argument("--speedup", type=float, default=0.0,
                   help="compress the file's own timeline this many times (0: as fast as possible)")
    p.add_argument("--limit", type=int, default=None, help="only the first N rows")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("bench", help="benchmark: tickets/s, ack latency, broker ceiling")
    p.add_argument("--tickets", type=int, default=2000)
    p.add_argument("--rate", type=float, default=None,
                   help=f"requests per second offered (default {BENCH_RATE:g}); with --surge, what the loop sustains "
                        "(default: measured first, see README)")
    p.add_argument("--volunteers", type=int, default=100_000)
    p.add_argument("--instances", type=int, nargs="+", default=[1], metavar="N",
                   help="N processes of every service; several counts (e.g. 1 2): one run each, same tickets and "
                        "rate, all on PostgreSQL, compared side by side (default: 1, on SQLite)")
    p.add_argument("--postgres", metavar="URL", help=f"PostgreSQL admin URL for the runs' databases "
                                                    f"(default with --instances > 1 or several: {DEFAULT_POSTGRES})")
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="run the same load N times and print each figure's median and range: one run's noise is a "
                        "few ms of CPU a ticket")
    p.add_argument("--surge", type=float, nargs="?", const=3.0, default=None, metavar="FACTOR",
                   help="offer FACTOR (default 3) × what the loop sustains for 60 s: the acknowledgement under "
                        "overload, the backlog and how long it takes to drain (what it sustains: --rate, else "
                        "measured first by a run that loads it fully)")
    p.add_argument("--profile", action="store_true",
                   help="a py-spy flame graph (SVG) of each service over the run, in var/artefacts/profiles/")
    p.add_argument("--console", action="store_true",
                   help="then time the web console's pages beside the loaded services (one count of instances)")
    p.set_defaults(func=cmd_bench)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
