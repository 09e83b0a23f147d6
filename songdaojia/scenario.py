"""Realistic requests from Suzhou's villages, as the outside channels would publish them.

Reproducible from a seed: villages from the division table, categories from
intake's catalogue, people and wording generated here.
"""
from __future__ import annotations

import random
from datetime import datetime, timezone

from services.dispatch.areas import AreaMap
from services.intake.catalogue import Catalogue

CHANNELS = ("hotline", "wechat", "counter", "grid_visit", "miniprogram", "night_talk")
CHANNEL_WEIGHTS = (40, 30, 12, 12, 4, 2)
SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗"
GIVEN = "秀英桂兰玉兰建国志强明华丽娟海燕德胜红梅春花国庆永红文军"
PHRASES = ("麻烦尽快处理", "家里老人行动不便", "已经好几天了", "谢谢政府", "请网格员上门看看", "")


def resident(rng: random.Random, index: int) -> dict:
    name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))
    phone = "1" + rng.choice("3589") + "".join(rng.choice("0123456789") for _ in range(9))
    return {"name": name, "phone": phone, "email": f"resident{index:06d}@village.example.cn",
            "locale": "zh-CN" if rng.random() > 0.03 else "en", "vulnerable": rng.random() < 0.15}


def fill_attributes(category) -> dict:
    """Plausible values for a category's required attributes, as a counter clerk would enter them."""
    values = {}
    for attribute in category.attributes:
        if not attribute.get("required"):
            continue
        choices = [str(v["key"]) for v in attribute.get("values") or []]
        values[attribute["code"]] = {
            "singlevaluelist": lambda: choices[0], "multivaluelist": lambda: choices[:1],
            "number": lambda: 1, "datetime": lambda: datetime.now(timezone.utc).isoformat(),
        }.get(attribute["datatype"], lambda: "见描述")()
    return values


def requests(count: int, seed: int = 3413, areas: AreaMap | None = None,
             catalogue: Catalogue | None = None) -> list[tuple[str, dict]]:
    """`count` (channel, submission) pairs; the same seed gives the same scenario."""
    rng = random.Random(seed)
    villages = (areas or AreaMap.load()).villages()
    categories = list((catalogue or Catalogue.load()).categories.values())
    out = []
    for i in range(count):
        village, category = rng.choice(villages), rng.choice(categories)
        channel = rng.choices(CHANNELS, CHANNEL_WEIGHTS)[0]
        group = rng.randint(1, 12)
        out.append((channel, {
            "channel": channel, "category": category.code, "village_code": village.code,
            "address": f"{village.name}{group}组{rng.randint(1, 60)}号",
            "description": f"{category.name_zh}：{category.description_zh or category.name_zh}。"
                           f"{rng.choice(PHRASES)}",
            "submitted_at": datetime.now(timezone.utc).isoformat(),
            "resident": resident(rng, i),
            "attributes": fill_attributes(category),
        }))
    return out
