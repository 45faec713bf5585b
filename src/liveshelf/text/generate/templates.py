"""zh / en templates of the ``grounded`` backend and the prompts of the model backends.

Templates only join fact phrases (:class:`liveshelf.text.facts.Fact`) with connective words; no
template word is a number, brand, colour, shipping term or lexicon claim, so a composed text
carries exactly the claims of the facts it used. Several variants per lead-fact kind keep the
output varied; the variant is a stable hash of (user, item, kind), so one request always gets
the same text.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

#: Longest recommendation reason: characters (zh) and words (en).
MAX_REASON_CHARS_ZH = 40
MAX_REASON_WORDS_EN = 20

# {noun} product noun, {lead}/{second} fact phrases, {why} the viewer-interest hint.
REASON_ZH: dict[str, tuple[str, ...]] = {
    "brand": (
        "你常看{brand}，这款{noun}正在讲解，{second}",
        "偏爱{brand}的你别错过：{noun}，{second}",
        "{brand}好物推荐：{noun}，{second}",
    ),
    "category": (
        "你最近常逛{leaf}，这款{noun}值得一看，{second}",
        "爱逛{leaf}的你看看：{noun}，{second}",
        "{leaf}控必看：{noun}，{second}",
    ),
    "price": (
        "正合你常买的价位：{noun}{lead}，{second}",
        "{noun}{lead}，在你常买的价位里，{second}",
        "价位合适：{noun}{lead}，{second}",
    ),
    "shipping": (
        "{noun}{lead}，{second}，下单更省心",
        "省心之选：{noun}{lead}，{second}",
        "你常买{lead}的商品，这款{noun}也是，{second}",
    ),
    "rating": (
        "{noun}{lead}，{second}，买家反馈可看",
        "看口碑选它：{noun}{lead}，{second}",
        "{noun}{lead}，{second}",
    ),
    "material": (
        "你偏好{value}材质，这款{noun}正是，{second}",
        "{noun}{lead}，{second}",
        "喜欢{value}的你看看：{noun}，{second}",
    ),
    "colour": (
        "你常选{value}，这款{noun}有{value}，{second}",
        "{value}的{noun}来了，{second}",
        "喜欢{value}的你看看：{noun}，{second}",
    ),
    "size": ("{noun}{lead}，{second}", "这款{noun}{lead}，{second}", "{lead}的{noun}，{second}"),
}
REASON_EN: dict[str, tuple[str, ...]] = {
    "brand": (
        "You often watch {brand}: this {noun} is live now, {second}.",
        "A {brand} pick for you: {noun}, {second}.",
        "From {brand}: {noun}, {second}.",
    ),
    "category": (
        "You browse {leaf} a lot: this {noun} is worth a look, {second}.",
        "For a {leaf} fan: {noun}, {second}.",
        "Your kind of {leaf}: {noun}, {second}.",
    ),
    "price": (
        "In your usual price range: {noun}, {lead}, {second}.",
        "{noun}, {lead}, right in your range.",
        "Fits your budget: {noun}, {lead}, {second}.",
    ),
    "shipping": (
        "{noun} with {lead}, {second}.",
        "Easy order: {noun}, {lead}, {second}.",
        "You like {lead}; this {noun} has it, {second}.",
    ),
    "rating": (
        "{noun}, {lead}, {second}.",
        "See the reviews: {noun}, {lead}, {second}.",
        "Check this {noun}: {lead}, {second}.",
    ),
    "material": (
        "You like {value}: this {noun} is {value}, {second}.",
        "{noun} in {value}, {second}.",
        "A {value} {noun} for you, {second}.",
    ),
    "colour": (
        "You often pick {value}: this {noun} comes in {value}, {second}.",
        "{noun} in {value}, {second}.",
        "A {value} {noun} for you, {second}.",
    ),
    "size": ("{noun}, {lead}, {second}.", "This {noun}: {lead}, {second}.", "{noun} in {lead}, {second}."),
}

#: Reasons that claim nothing about the viewer, used when the lead fact does not match their profile.
NEUTRAL_ZH: tuple[str, ...] = (
    "{noun}{lead}，{second}",
    "这款{noun}{lead}，{second}",
    "推荐{noun}：{lead}，{second}",
    "看看这款{noun}，{lead}，{second}",
)
NEUTRAL_EN: tuple[str, ...] = (
    "{noun}, {lead}, {second}.",
    "This {noun}: {lead}, {second}.",
    "Take a look: {noun}, {lead}, {second}.",
    "Try this {noun}, {lead}, {second}.",
)

POINT_ZH: dict[str, str] = {
    "brand": "先讲品牌：{lead}",
    "category": "说明品类：{value}",
    "price": "报价：{lead}",
    "shipping": "提醒发货：{value}",
    "rating": "讲口碑：{lead}",
    "material": "展示材质：{value}",
    "colour": "展示颜色：{value}",
    "size": "讲规格：{value}",
    "other": "介绍{lead}",
}
POINT_EN: dict[str, str] = {
    "brand": "Open with the brand: {value}",
    "category": "Say what it is: {value}",
    "price": "Give the price: {lead}",
    "shipping": "Mention delivery: {value}",
    "rating": "Cite the rating: {lead}",
    "material": "Show the material: {value}",
    "colour": "Show the colour: {value}",
    "size": "Explain the size: {value}",
    "other": "Mention {lead}",
}
POINT_WHY_ZH = "（这位观众：{why}）"
POINT_WHY_EN = " (this viewer: {why})"

PUSH_ZH: tuple[str, ...] = (
    "{host}正在讲解{noun}，{lead}，快来看看",
    "{host}直播中：{noun}，{lead}",
    "你可能喜欢的{noun}正在{host}讲解，{lead}",
)
PUSH_EN: tuple[str, ...] = (
    "{host} is showing {noun} live: {lead}.",
    "Live now at {host}: {noun}, {lead}.",
    "{noun} is on at {host}: {lead}.",
)
HOST_FALLBACK = {"zh": "直播间", "en": "the live room"}


def variant(options: tuple[str, ...], *keys: Any) -> str:
    """A stable choice among ``options`` for ``keys`` (same keys, same template)."""
    digest = hashlib.sha1("\x1f".join(str(k) for k in keys).encode()).digest()
    return options[int.from_bytes(digest[:4], "big") % len(options)]


def too_long(text: str, lang: str) -> bool:
    if lang == "zh":
        return len(text.replace(" ", "")) > MAX_REASON_CHARS_ZH
    return len(text.split()) > MAX_REASON_WORDS_EN


# ----------------------------------------------------------------------------- model prompts
SYSTEM_ZH = (
    "你是直播电商的文案助手。只能使用下面给出的商品事实，不得编造价格、数字、折扣、品牌、赠品或承诺。"
    "推荐理由不超过40个字。"
)
SYSTEM_EN = (
    "You write copy for live-stream shopping. Use only the item facts given; never invent prices, "
    "numbers, discounts, brands, gifts or promises. A reason has at most 20 words."
)
TASKS_ZH = {
    "reason": "为这位观众写一句推荐理由。",
    "points": "为主播写三条讲解要点，每行一条。",
    "push": "写一条开播推送文案。",
}
TASKS_EN = {
    "reason": "Write a one-line recommendation reason for this viewer.",
    "points": "Write three talking points for the host, one per line.",
    "push": "Write one push-notification line.",
}
STRICT_ZH = "上一版包含商品事实之外的内容：{bad}。请只用给出的事实重写。"
STRICT_EN = "The last draft contained things not in the facts: {bad}. Rewrite using only the given facts."


def prompt_messages(
    kind: str, lang: str, facts: list[tuple[str, str]], tags: str, strict: str | None = None
) -> list[dict[str, str]]:
    """Chat messages asking for one text ``kind`` (reason / points / push) from ``facts``."""
    zh = lang == "zh"
    fact_lines = "\n".join(f"- {k}: {v}" for k, v in facts)
    user = (
        f"商品事实：\n{fact_lines}\n观众画像：{tags or '未知'}\n{TASKS_ZH[kind]}"
        if zh
        else f"Item facts:\n{fact_lines}\nViewer: {tags or 'unknown'}\n{TASKS_EN[kind]}"
    )
    if strict:
        user += "\n" + (STRICT_ZH if zh else STRICT_EN).format(bad=strict)
    return [{"role": "system", "content": SYSTEM_ZH if zh else SYSTEM_EN}, {"role": "user", "content": user}]


def plain_prompt(messages: list[dict[str, str]]) -> str:
    """The messages as one text, for models without a chat template."""
    return "\n".join(m["content"] for m in messages) + "\n"


def target_text(kind: str, value: str | list[str]) -> str:
    """A training target for ``kind`` (talking points joined by newlines)."""
    return "\n".join(value) if isinstance(value, list) else value


def facts_json(facts: list[tuple[str, str]]) -> str:
    return json.dumps(dict(facts), ensure_ascii=False, sort_keys=True)
