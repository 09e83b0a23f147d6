from __future__ import annotations

from datetime import datetime, timezone

import requests

from services.intake.catalogue import Catalogue
from songdaojia.scenario import fill_attributes

CATALOGUE = Catalogue.load()


def submission(index: int = 1, **overrides) -> dict:
    body = {"channel": "hotline", "category": "801", "village_code": "341323104214",
            "address": "杨东村三组12号", "description": "独居老人需要代购米面油",
            "submitted_at": datetime.now(timezone.utc).isoformat(),
            "resident": {"name": "王秀英", "phone": f"138{index:08d}",
                         "email": f"resident{index:06d}@village.example.cn", "vulnerable": True}}
    body.update(overrides)
    body.setdefault("attributes", fill_attributes(CATALOGUE.get(body["category"])))
    return body


def case_in(dispatch: str, ticket_no: str, state: str, signed_in: dict, reopened: int = 0) -> dict | None:
    """Dispatch's view of a ticket once it is in `state` (and reopened that many times), else None."""
    r = requests.get(f"{dispatch}/tickets/{ticket_no}", headers=signed_in)
    if r.status_code != 200:
        return None
    case = r.json()
    return case if case["state"] == state and case["reopen_count"] == reopened else None
