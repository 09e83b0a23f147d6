"""Replay a real 311 export (NYC or Los Angeles format) through the AMQP intake, and account for every row.

Request types map to our catalogue, channels to ours, places to Suzhou villages
(the same ZIP code always lands in the same village). Each row's message id is
`replay:<city>:<key>`, so replaying a file twice makes no new tickets. The file
is read from the path given: the samples are not part of this project.
"""
from __future__ import annotations

import csv
import re
import shutil
import sys
import time
import zlib
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from tqdm import tqdm

from services.dispatch.areas import AreaMap
from services.intake.catalogue import Catalogue
from services.intake.client import IntakeClient

from .scenario import fill_attributes
from .stack import Stack, prepare, start_all, stop_all
from .vhosts import fresh_vhost

# first match wins; anything else becomes 999 (other request)
TYPE_RULES = [
    (r"street condition|highway|sidewalk|curb|pothole|root/sewer", "611"),
    (r"streetlight|street light", "633"),
    (r"noise", "311"),
    (r"bulky|dumping|appliance|electronic waste|metal/household|sanitation|dirty|litter", "631"),
    (r"graffiti|tree|weed", "639"),
    (r"dead animal", "504"),
    (r"sewer|catch basin", "632"),
    (r"water waste|leak", "652"),
    (r"water", "651"),
    (r"electric|power", "661"),
    (r"air quality|smoking|odor|pollution", "621"),
    (r"food", "702"),
    (r"consumer|vending|license", "701"),
    (r"homeless", "203"),
    (r"scrie|senior", "204"),
    (r"dof |tax|finance", "711"),
    (r"home repair|plumbing|paint|heat", "262"),
    (r"dhs|hpd|housing|landlord|tenant|maintenance|facility", "609"),
    (r"parking|driveway|vehicle|taxi|meter|street sign|bus|traffic", "619"),
]
CHANNELS = {"phone": "hotline", "call": "hotline", "online": "miniprogram", "self service": "miniprogram",
            "mobile app": "wechat", "email": "wechat", "driver self report": "grid_visit"}


@dataclass
class Row:
    key: str
    created: datetime
    type: str
    detail: str
    channel: str
    place: str


def read_rows(path: Path) -> tuple[str, list[Row], Counter]:
    """The city format from the header, the usable rows (oldest first), and why others were skipped."""
    skipped: Counter = Counter()
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        header = set(reader.fieldnames or [])
        if {"Unique Key", "Complaint Type", "Created Date"} <= header:
            city, parse = "nyc", _nyc
        elif {"srnumber", "requesttype", "createddate"} <= header:
            city, parse = "la", _la
        else:
            raise ValueError(f"{path}: neither the NYC nor the Los Angeles 311 format (header {sorted(header)[:6]}…)")
        rows = []
        for raw in reader:
            try:
                rows.append(parse(raw))
            except (KeyError, ValueError) as exc:
                skipped[f"unreadable row: {exc}"] += 1
    return city, sorted(rows, key=lambda r: r.created), skipped


def _nyc(r: dict) -> Row:
    return Row(r["Unique Key"], datetime.strptime(r["Created Date"], "%m/%d/%Y %I:%M:%S %p"), r["Complaint Type"],
               r.get("Descriptor", ""), r.get("Open Data Channel Type", ""),
               r.get("Incident Zip") or r.get("Borough") or r.get("Incident Address") or "")


def _la(r: dict) -> Row:
    return Row(r["srnumber"], datetime.strptime(r["createddate"], "%m/%d/%y %H:%M"), r["requesttype"],
               r.get("actiontaken", ""), r.get("requestsource", ""), r.get("zipcode") or r.get("address") or "")


def category_of(request_type: str) -> str:
    lowered = request_type.lower()
    return next((code for pattern, code in TYPE_RULES if re.search(pattern, lowered)), "999")


def submission(city: str, row: Row, villages, catalogue: Catalogue) -> tuple[str, dict]:
    village = villages[zlib.crc32(f"{city}:{row.place}".encode()) % len(villages)]
    category = catalogue.get(category_of(row.type))
    channel = CHANNELS.get(row.channel.strip().lower(), "counter")
    phone = "139" + f"{zlib.crc32(row.key.encode()) % 10**8:08d}"
    return channel, {
        "channel": channel, "category": category.code, "village_code": village.code,
        "address": f"{village.name}", "attributes": fill_attributes(category),
        "description": f"[{city.upper()} 311 #{row.key}, {row.created:%Y-%m-%d %H:%M}] {row.type}"
                       f"{' — ' + row.detail if row.detail else ''}"[:2000],
        "submitted_at": datetime.now(timezone.utc).isoformat(),
        "resident": {"phone": phone, "locale": "en"},
    }


def replay(stack: Stack, path: Path, speedup: float, limit: int | None, out=sys.stdout,
           own_vhost: bool = True) -> dict:
    """Start intake on a clean slate, publish every row, and report what became of each."""
    city, rows, skipped = read_rows(path)
    rows = rows[:limit] if limit else rows
    catalogue, villages = Catalogue.load(), AreaMap.load().villages()
    stack.run_name = "replay"
    if own_vhost:
        stack.amqp_uri = fresh_vhost(stack.amqp_uri, "songdaojia-replay")
    stack.var_dir = stack.var_dir / "replay"
    shutil.rmtree(stack.var_dir, ignore_errors=True)
    stack.secure()
    prepare(stack, volunteers=0, names=("intake",))
    procs = start_all(stack, names=("intake",))
    try:
        ids, categories, channels = [], Counter(), Counter()
        first, start = rows[0].created if rows else None, time.monotonic()
        with IntakeClient(stack.uri("publisher-channels"), source=f"replay-{city}") as client:
            receipts = client.receipt_queue()
            for row in tqdm(rows, desc=f"replaying {path.name}", unit="row"):
                if speedup and first:
                    delay = (row.created - first).total_seconds() / speedup - (time.monotonic() - start)
                    if delay > 0:
                        time.sleep(delay)
                channel, body = submission(city, row, villages, catalogue)
                ids.append(client.submit(channel, body, message_id=f"replay:{city}:{row.key}", reply_to=receipts))
                categories[body["category"]] += 1
                channels[channel] += 1
            outcome = account(client, receipts, ids)
    finally:
        stop_all(procs)
    report = {"file": str(path), "format": city, "rows read": len(rows) + sum(skipped.values()),
              "rows skipped": dict(skipped), "published": len(ids), **outcome,
              "by category": {f"{c} {catalogue.get(c).name_en}": n for c, n in categories.most_common(8)},
              "by channel": dict(channels)}
    for key, value in report.items():
        print(f"  {key:<16} {value}", file=out)
    return report


def account(client: IntakeClient, queue: str, message_ids: list[str], quiet_seconds: float = 60.0) -> dict:
    """Every published row is a ticket (received, or merged into an open one) or refused with its
    reason: intake's receipt for each message says which."""
    got: dict[str, dict] = {}
    while len(got) < len(message_ids):
        batch = client.receipts(queue, count=len(message_ids) - len(got), timeout=quiet_seconds)
        if not batch:  # nothing for a while: what is still missing is unaccounted for
            break
        got.update({r["data"]["message_id"]: r["data"] for r in batch})
    statuses = Counter(d["status"] for d in got.values())
    missing = sorted(set(message_ids) - set(got))
    return {"tickets": statuses["received"] + statuses["merged"], "merged": statuses["merged"],
            "dead-lettered": dict(Counter(d["reason"] for d in got.values() if d["status"] == "rejected")),
            "unaccounted": missing[:10] if missing else 0}
