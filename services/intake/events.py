"""Events intake publishes on `intake.events`: names, strict schemas, one example each."""
from __future__ import annotations

from marshmallow import ValidationError, fields, validate, validates_schema

from services.common.envelope import Strict


class CategoryInfo(Strict):
    code = fields.String(required=True)
    name_zh = fields.String(required=True)
    name_en = fields.String(required=True)
    department = fields.String(required=True)
    group = fields.String(required=True)
    priority = fields.Integer(required=True, validate=validate.Range(1, 3))
    accept_minutes = fields.Integer(required=True)
    resolve_hours = fields.Integer(required=True)      # whole hours, rounded up: for consumers reading hours only
    resolve_minutes = fields.Integer(required=True)    # the resolve deadline (goods: 30 minutes)
    follow_up_hours = fields.Integer(required=True)
    volunteer_skill = fields.String(required=True, allow_none=True)
    proxy = fields.Boolean(required=True)


class ResidentInfo(Strict):
    id = fields.String(required=True)
    name = fields.String(required=True, allow_none=True)
    phone = fields.String(required=True, allow_none=True)
    email = fields.String(required=True, allow_none=True)
    locale = fields.String(required=True)
    vulnerable = fields.Boolean(required=True)


class TicketReceived(Strict):
    ticket_no = fields.String(required=True)
    channel = fields.String(required=True)
    category = fields.Nested(CategoryInfo, required=True)
    priority = fields.Integer(required=True, validate=validate.Range(1, 3))
    village_code = fields.String(required=True, allow_none=True)  # None: placed by lat/long alone
    county_code = fields.String(required=True)
    address = fields.String(required=True)
    lat = fields.Float(required=True, allow_none=True)
    long = fields.Float(required=True, allow_none=True)
    description = fields.String(required=True)
    submitted_at = fields.String(required=True)
    received_at = fields.String(required=True)
    resident = fields.Nested(ResidentInfo, required=True)


class TicketMerged(Strict):
    """A request that repeats an open ticket: the resident is told that ticket's number."""
    ticket_no = fields.String(required=True)       # the open ticket it joins
    report_no = fields.String(required=True)       # the repeat, as intake recorded it
    channel = fields.String(required=True)
    category = fields.Nested(CategoryInfo, required=True)
    village_code = fields.String(required=True)
    resident = fields.Nested(ResidentInfo, required=True)


class TicketCancelled(Strict):
    """The resident withdrew the request (撤单), proved by a gateway-signed call; dispatch cancels the case
    and says so with its own ticket_cancelled."""
    ticket_no = fields.String(required=True)
    by = fields.String(required=True, validate=validate.OneOf(["resident"]))
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))  # theirs, or NO_REASON


class SubmissionReceipt(Strict):
    """Sent to a publisher's reply_to queue, not on intake.events: its ticket number, or why there is none.

    Described for outside systems by receipt.schema.json.
    """
    message_id = fields.String(required=True)
    ticket_no = fields.String(required=True, allow_none=True)  # null when rejected
    status = fields.String(required=True, validate=validate.OneOf(["received", "merged", "rejected"]))
    reason = fields.String(validate=validate.Length(min=1))    # only when rejected: its dead letter's x-reason

    @validates_schema
    def a_ticket_or_a_reason(self, data, **_):
        rejected = data.get("status") == "rejected"
        if rejected != (data.get("ticket_no") is None):
            raise ValidationError("null exactly when rejected", "ticket_no")
        if rejected != ("reason" in data):
            raise ValidationError("given exactly when rejected", "reason")


SCHEMAS = {"ticket_received": TicketReceived(), "ticket_merged": TicketMerged(),
           "ticket_cancelled": TicketCancelled(), "submission_receipt": SubmissionReceipt()}

# every new ticket, also sent a relay round at a time in one message, for dispatch, which opens a case for each
# (common/digests.py); notify's acknowledgement takes each on its own, as sent
DIGESTS = {"received": ("ticket_received",)}

_MERGED_CATEGORY = {
    "code": "652", "name_zh": "水管漏水报修", "name_en": "Water pipe leak report", "department": "watersupply",
    "group": "utilities", "priority": 1, "accept_minutes": 15, "resolve_hours": 8, "resolve_minutes": 480,
    "follow_up_hours": 24,
    "volunteer_skill": None, "proxy": False,
}

# every kind of receipt a publisher can get; receipt.schema.json is checked against each
RECEIPT_EXAMPLES = {
    "received": {
        "event_id": "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f", "event": "submission_receipt", "version": 1,
        "occurred_at": "2026-11-27T01:00:00.115000+00:00", "ticket_id": "SDJ-261127-7KQ2M4XA",
        "correlation_id": "hotline-20261127-000123",
        "data": {"message_id": "hotline-20261127-000123", "ticket_no": "SDJ-261127-7KQ2M4XA", "status": "received"},
    },
    "merged": {
        "event_id": "2d3e4f5a-6b7c-4d8e-9f0a-1b2c3d4e5f6a", "event": "submission_receipt", "version": 1,
        "occurred_at": "2026-11-27T02:10:00.080000+00:00", "ticket_id": "SDJ-261127-7KQ2M4XA",
        "correlation_id": "wechat-20261127-004711",
        "data": {"message_id": "wechat-20261127-004711", "ticket_no": "SDJ-261127-7KQ2M4XA", "status": "merged"},
    },
    "rejected": {  # no ticket: the envelope's ticket_id is empty
        "event_id": "3e4f5a6b-7c8d-4e9f-8a1b-2c3d4e5f6a7b", "event": "submission_receipt", "version": 1,
        "occurred_at": "2026-11-27T02:15:00.040000+00:00", "ticket_id": "",
        "correlation_id": "hotline-20261127-000124",
        "data": {"message_id": "hotline-20261127-000124", "ticket_no": None, "status": "rejected",
                 "reason": "MalformedEvent: category: '8010' is not in the service catalogue"},
    },
}

EXAMPLES = {
    "submission_receipt": RECEIPT_EXAMPLES["received"],
    "ticket_cancelled": {
        "event_id": "4f5a6b7c-8d9e-4fa0-9b1c-2d3e4f5a6b7c",
        "event": "ticket_cancelled",
        "version": 1,
        "occurred_at": "2026-11-27T01:12:00+00:00",
        "ticket_id": "SDJ-261127-7KQ2M4XA",
        "correlation_id": "SDJ-261127-7KQ2M4XA",
        "data": {"ticket_no": "SDJ-261127-7KQ2M4XA", "by": "resident", "reason": "邻居已帮忙买好了，不用送了"},
    },
    "ticket_merged": {
        "event_id": "9d1f8a7e-2b44-4c1e-8f0a-6a2b3c4d5e6f",
        "event": "ticket_merged",
        "version": 1,
        "occurred_at": "2026-11-27T02:10:00+00:00",
        "ticket_id": "SDJ-261127-7KQ2M4XA",
        "correlation_id": "SDJ-261127-7KQ2M4XA",
        "data": {
            "ticket_no": "SDJ-261127-7KQ2M4XA", "report_no": "SDJ-261127-9PW3RT6B", "channel": "wechat",
            "category": _MERGED_CATEGORY, "village_code": "341323104214",
            "resident": {"id": "r-77aa", "name": "李明", "phone": "13900001111", "email": None,
                         "locale": "zh-CN", "vulnerable": False},
        },
    },
    "ticket_received": {
        "event_id": "5b0d8c4e-8a52-4a53-9d52-7f1c2d7c3a10",
        "event": "ticket_received",
        "version": 1,
        "occurred_at": "2026-11-27T01:00:00.120000+00:00",
        "ticket_id": "SDJ-261127-7KQ2M4XA",
        "correlation_id": "SDJ-261127-7KQ2M4XA",
        "data": {
            "ticket_no": "SDJ-261127-7KQ2M4XA",
            "channel": "hotline",
            "category": {
                "code": "801", "name_zh": "生活物资代购配送", "name_en": "Daily goods purchase and delivery",
                "department": "commerce", "group": "daily_life", "priority": 1, "accept_minutes": 15,
                "resolve_hours": 1, "resolve_minutes": 30, "follow_up_hours": 24, "volunteer_skill": "delivery",
                "proxy": True,
            },
            "priority": 1,
            "village_code": "341323104214",
            "county_code": "341323",
            "address": "杨东村三组",
            "lat": None, "long": None,
            "description": "独居老人需要代购米面油",
            "submitted_at": "2026-11-27T01:00:00+00:00",
            "received_at": "2026-11-27T01:00:00.110000+00:00",
            "resident": {"id": "r-4f1c", "name": "王秀英", "phone": "13812341234",
                         "email": "wang@example.cn", "locale": "zh-CN", "vulnerable": True},
        },
    },
}
