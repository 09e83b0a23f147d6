from __future__ import annotations

from datetime import datetime, timezone

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
