"""A profile's tag line: the viewer's main sub-category, price band, favourite brand and part of the day,
in Chinese and English."""

from __future__ import annotations

import numpy as np

from liveshelf.text.facts import PRICE_BANDS, glossary

#: Parts of the day for the activity tag: (first hour, end hour, zh, en), local time.
DAY_PARTS: tuple[tuple[int, int, str, str], ...] = (
    (5, 11, "早间活跃", "morning"),
    (11, 14, "午间活跃", "midday"),
    (14, 18, "午后活跃", "afternoon"),
    (18, 23, "晚间活跃", "evening"),
    (23, 29, "深夜活跃", "late night"),  # 23:00 - 05:00
)


def profile_tags(
    cats: dict[str, float], bands: dict[str, float], brands: dict[str, float], hours: np.ndarray
) -> tuple[list[str], list[str]]:
    """``(zh tags, en tags)`` from a profile's category, price-band and brand shares (largest first) and its
    24 hourly shares: the main second-level category, the top price band, a brand holding >= 30 %, the
    part of the day around the (smoothed) peak hour."""
    g = glossary()
    zh: list[str] = []
    en: list[str] = []
    if cats:
        mid: dict[str, float] = {}
        for path, s in cats.items():
            parts = [p.strip() for p in path.split(">")]
            key = parts[1] if len(parts) >= 2 else parts[-1]
            mid[key] = mid.get(key, 0.0) + s
        name = max(mid.items(), key=lambda kv: (kv[1], kv[0]))[0]
        zh.append(g.translate(name, "zh"))
        en.append(g.translate(name, "en"))
    if bands:
        label = next(iter(bands))
        for _upper, b_zh, b_en in PRICE_BANDS:
            if b_en == label:
                zh.append(b_zh)
                en.append(b_en)
    if brands:
        name, share = next(iter(brands.items()))
        if share >= 0.3:
            zh.append(f"偏爱{g.translate(name, 'zh')}")
            en.append(f"likes {g.translate(name, 'en')}")
    if hours.sum() > 0:
        smooth = hours + 0.5 * (np.roll(hours, 1) + np.roll(hours, -1))
        peak = int(np.argmax(smooth))
        for lo, hi, p_zh, p_en in DAY_PARTS:
            if lo <= peak < hi or lo <= peak + 24 < hi:
                zh.append(p_zh)
                en.append(f"{p_en} viewer")
                break
    return zh, en


__all__ = ["DAY_PARTS", "profile_tags"]
