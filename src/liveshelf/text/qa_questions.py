"""A Chinese shopper Q&A question set over simulator items, answerable and not.

:func:`make_chinese_question_set` picks shelves of six Chinese items with distinct leaf categories
from a simulated items frame and asks about them the way viewers do:

* ``field-named`` -- a field question with its keyword, the item named by brand and product noun
  ("兰蔻保湿面霜多少钱？");
* ``field-paraphrase`` -- a field question about the pinned item in words that share no keyword of
  :data:`liveshelf.text.qa.INTENTS` ("这个卖多少？", "这个是谁家出的？");
* ``by-description`` -- a field question about another shelf item that is described, not named
  ("能折起来的那台卖多少？" for a foldable phone);
* ``fact`` -- a question answered by one sentence of the item's seller facts (:data:`LEAF_FACTS`:
  "这个面霜适合干皮吗" -> "质地滋润，适合干性和混合性肌肤。"), the item pinned, named or described;

and, expecting "don't know":

* ``field-missing`` -- a paraphrased field question the item has no field for (material of food);
* ``fact-missing`` -- a ``fact`` question about an item whose seller facts do not answer it;
* ``no-fact`` -- a question no fact of the item answers ("孕妇可以用吗");
* ``not-on-shelf`` -- a question about a catalogue product that no shelf item is, named by its
  noun or described;
* ``no-field`` -- warranty and stock questions (the simulator has neither).

Seller facts come from :data:`LEAF_FACTS`, two sentences per leaf category: for each Chinese item
(seeded) each is present or not (70 % / 60 %), appended to its description or given as an FAQ entry
of the item (half and half). The ``fact`` questions ask for the first one, so a ``fact-missing``
item often still has the second, which must not be given instead. The returned items frame
carries the new descriptions; the original is not modified.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from liveshelf.text.facts import facts_table, format_price
from liveshelf.text.qa import QAQuestion

#: leaf category -> (two seller facts as (sentence, FAQ question), two questions the first fact
#: answers, a question neither answers).
LEAF_FACTS: dict[str, tuple[tuple[tuple[str, str], tuple[str, str]], tuple[str, str], str]] = {
    "精华": (
        (("敏感肌也能用，建议先在耳后试用。", "敏感肌可以用吗"), ("质地清爽，吸收快，不粘腻。", "粘不粘")),
        ("皮肤容易过敏的人能用这个吗", "我是敏感皮能不能用"),
        "孕妇可以用吗",
    ),
    "面霜": (
        (("质地滋润，适合干性和混合性肌肤。", "适合什么肤质"), ("开封后建议6个月内用完。", "开封能用多久")),
        ("这个面霜适合干皮吗", "我皮肤很干用着会不会不够润"),
        "早晚都能用吗",
    ),
    "口红": (
        (("持妆约6小时，喝水不易掉色。", "持妆多久"), ("膏体含植物油，涂着不拔干。", "干不干")),
        ("喝水会不会掉色", "涂一次能维持多久"),
        "黄皮涂了显白吗",
    ),
    "洗发水": (
        (("无硅油配方，适合油性头皮。", "适合什么发质"), ("香味是淡淡的白茶味。", "什么香味")),
        ("头皮爱出油能用吗", "含不含硅油"),
        "能去头屑吗",
    ),
    "连衣裙": (
        (("版型偏小，建议拍大一码。", "尺码标准吗"), ("面料有弹性，浅色也不透。", "透不透")),
        ("平时穿M要不要买大一号", "这条裙子会不会偏小"),
        "可以机洗吗",
    ),
    "大衣": (
        (("建议干洗，不要机洗。", "怎么洗"), ("内衬加厚，南方可以单穿过冬。", "冬天够穿吗")),
        ("能不能扔洗衣机里洗", "脏了怎么清洗"),
        "会不会起球",
    ),
    "羽绒服": (
        (("充绒量200克，零下20度也能穿。", "保暖吗"), ("面料防泼水，小雨不怕。", "防水吗")),
        ("东北冬天穿冷不冷", "零下能扛得住吗"),
        "帽子可以拆吗",
    ),
    "卫衣": (
        (("洗后不缩水，不掉色。", "会缩水吗"), ("宽松版型，男女都能穿。", "男生能穿吗")),
        ("洗几次会不会变小", "洗了褪色吗"),
        "袖子长不长",
    ),
    "坚果": (
        (("独立小包装，保质期180天。", "保质期多久"), ("每包25克，一天一包刚好。", "一包多少克")),
        ("买回去能放多长时间", "开了能存多久"),
        "孕妇能吃吗",
    ),
    "肉干": (
        (("微辣口味，小朋友也能吃。", "辣吗"), ("真空包装，开袋即食。", "要加热吗")),
        ("吃起来辣不辣", "小孩子能吃吗"),
        "是低脂的吗",
    ),
    "水果": (
        (("坏果包赔，拍照联系客服即可。", "坏了怎么办"), ("产地直发，全程冷链运输。", "新鲜吗")),
        ("收到烂的怎么处理", "路上压坏了赔吗"),
        "甜不甜",
    ),
    "牛奶": (
        (("常温保存，开封后请冷藏。", "怎么保存"), ("每100毫升含蛋白质3.2克。", "蛋白质含量多少")),
        ("需要放冰箱吗", "没开封能放常温吗"),
        "乳糖不耐受能喝吗",
    ),
    "手机": (
        (("支持66W快充，电池5000mAh。", "充电快吗"), ("支持NFC和红外遥控。", "有NFC吗")),
        ("充满电要很久吗", "电池耐不耐用"),
        "支持双卡双待吗",
    ),
    "耳机": (
        (("可以带上飞机，单次续航8小时。", "续航多久"), ("支持主动降噪和通透模式。", "降噪效果怎么样")),
        ("可以带上飞机吗", "充一次电能听多久"),
        "戴着游泳防水吗",
    ),
    "平板": (
        (
            ("支持手写笔，笔需要另外购买。", "支持手写笔吗"),
            ("支持分屏，可以一边看网课一边记笔记。", "能分屏吗"),
        ),
        ("能用笔在上面写字吗", "送不送触控笔"),
        "能插电话卡打电话吗",
    ),
    "笔记本": (
        (("整机约1.3公斤，方便出差携带。", "重不重"), ("有两个USB接口和一个HDMI接口。", "接口多吗")),
        ("背着出门沉不沉", "出差带着方便吗"),
        "能玩大型游戏吗",
    ),
    "炒锅": (
        (("电磁炉和燃气灶都能用。", "电磁炉能用吗"), ("配钢化玻璃锅盖。", "带锅盖吗")),
        ("我家是电磁炉能用吗", "用煤气灶可以吗"),
        "能放进洗碗机吗",
    ),
    "四件套": (
        (("可以机洗，水温不超过30度。", "怎么洗"), ("被套带拉链，枕套是信封式。", "被套有拉链吗")),
        ("能用洗衣机洗吗", "洗的时候水温有要求吗"),
        "冬天盖会冷吗",
    ),
    "热水器": (
        (("免费上门安装。", "包安装吗"), ("一级能效，支持手机APP预约加热。", "能预约吗")),
        ("需要自己找人装吗", "师傅上门装要钱吗"),
        "一个月耗电多少",
    ),
    "纸尿裤": (
        (("夜用不漏，适合5-10公斤宝宝。", "晚上会漏吗"), ("表层柔软透气。", "透气吗")),
        ("宝宝睡一夜会侧漏吗", "8公斤的宝宝能穿吗"),
        "会不会红屁屁",
    ),
    "奶粉": (
        (("适合0-6个月宝宝。", "适合几段"), ("添加了DHA和益生菌。", "有DHA吗")),
        ("几个月的宝宝能喝", "刚出生的宝宝能喝吗"),
        "有没有添加蔗糖",
    ),
    "跑鞋": (
        (("鞋码偏大半码。", "尺码准吗"), ("鞋底耐磨，适合路跑。", "耐磨吗")),
        ("平时穿42要不要拍小一点", "这双鞋偏大吗"),
        "能跑马拉松吗",
    ),
    "瑜伽": (
        (("吸汗速干，出汗也不打滑。", "防滑吗"), ("可以卷起来，方便携带。", "好带吗")),
        ("出汗了会不会滑", "练的时候脚底打不打滑"),
        "有送收纳袋吗",
    ),
    "小说": (
        (("全套共三册，附带书签。", "一套几本"), ("作者签名版，数量有限。", "有签名吗")),
        ("一共有几本", "是整套的吗"),
        "有电子版吗",
    ),
    "绘本": (
        (("适合3-6岁儿童阅读。", "适合几岁"), ("环保大豆油墨印刷。", "用的什么墨")),
        ("几岁的孩子能看", "两岁宝宝看得懂吗"),
        "有拼音吗",
    ),
}

#: product noun -> how a viewer describes it without its noun, leaf category or brand.
DESCRIPTIONS: dict[str, str] = {
    "小黑瓶精华": "黑瓶子那款",
    "玻尿酸精华": "补水的玻尿酸那款",
    "保湿面霜": "擦脸保湿的那个霜",
    "抗老面霜": "抗皱的那款霜",
    "丝绒口红": "哑光的唇膏",
    "唇釉": "水光感的唇彩",
    "控油洗发水": "控油的洗头膏",
    "修护洗发露": "修护受损发质的那瓶",
    "碎花连衣裙": "印着小花的裙子",
    "针织连衣裙": "毛线织的裙子",
    "双面羊绒大衣": "羊绒外套",
    "羊毛大衣": "羊毛外套",
    "连帽羽绒服": "带帽子的羽绒外套",
    "轻薄羽绒服": "薄款的羽绒外套",
    "加绒卫衣": "加绒的套头衫",
    "圆领卫衣": "圆领的套头衫",
    "每日坚果": "每天吃一包的果仁",
    "夏威夷果": "澳洲果仁",
    "风干牛肉干": "牛肉做的零嘴",
    "猪肉脯": "猪肉片零食",
    "智利车厘子": "进口大樱桃",
    "赣南脐橙": "江西的橙子",
    "纯牛奶": "不加东西的原味奶",
    "高钙奶": "补钙的奶",
    "5G手机": "支持5G的那台",
    "折叠屏手机": "能折起来的那台",
    "降噪耳机": "能降噪的耳塞",
    "运动耳机": "跑步戴的耳塞",
    "平板电脑": "看剧用的大屏设备",
    "学习平板": "孩子学习用的那台",
    "轻薄笔记本": "很轻的办公电脑",
    "游戏本": "打游戏的电脑",
    "不粘炒锅": "不粘的锅",
    "铁锅": "生铁做的锅",
    "纯棉四件套": "全棉的床单被套",
    "真丝四件套": "丝绸的床单被套",
    "电热水器": "用电烧水洗澡的那台",
    "燃气热水器": "烧天然气的洗澡设备",
    "超薄纸尿裤": "很薄的尿不湿",
    "拉拉裤": "能直接穿上的尿不湿",
    "婴儿奶粉": "给小宝宝冲的奶",
    "有机奶粉": "有机的宝宝奶",
    "缓震跑鞋": "软底缓冲的运动鞋",
    "竞速跑鞋": "比赛穿的运动鞋",
    "防滑瑜伽垫": "健身铺地上的垫子",
    "瑜伽裤": "健身穿的紧身裤",
    "长篇小说": "很厚的长篇故事书",
    "科幻小说": "讲外星人的科幻书",
    "儿童绘本": "给小孩看的图画书",
    "科普绘本": "讲科学知识的图画书",
}

#: Field questions with no keyword of INTENTS ("{ref}" is the item: "这个", a name or a description).
PARAPHRASES: dict[str, tuple[str, ...]] = {
    "price": ("{ref}卖多少？", "{ref}要花多少才能拿下？", "{ref}入手要多少米？", "{ref}现在啥价？"),
    "colour": ("{ref}是啥色的？", "{ref}外观啥色调？"),
    "material": ("{ref}用的啥料子？", "{ref}是用啥做的？"),
    "shipping": ("{ref}下单后多久能寄出？", "{ref}拍了啥时候能收到？"),
    "brand": ("{ref}是谁家出的？", "{ref}是哪个厂子的？"),
    "rating": ("{ref}买过的人都怎么说？", "{ref}大家反馈好不好？"),
    "size": ("{ref}拍的是哪个版本？", "{ref}是几号的？"),
}
#: Field questions with their keyword.
KEYWORD_QUESTIONS: dict[str, str] = {
    "price": "{ref}多少钱？",
    "size": "{ref}尺寸多大？",
    "material": "{ref}是什么材质的？",
    "colour": "{ref}什么颜色？",
    "shipping": "{ref}什么时候发货？",
    "brand": "{ref}是什么品牌？",
}
_NO_FIELD = ("{ref}保修多久？", "{ref}还有库存吗？")
_DEICTIC = ("这个", "这款", "")


@dataclass
class ChineseQuestionSet:
    """The items frame with the seller facts added, the questions, and the FAQ entries they use."""

    items: pd.DataFrame
    questions: list[QAQuestion]
    faqs: list[dict[str, str]]


def _leaf(category: object) -> str:
    return str(category).split(">")[-1].strip() if isinstance(category, str) else ""


def make_chinese_question_set(
    items: pd.DataFrame, n_shelves: int = 12, shelf_size: int = 6, seed: int = 0
) -> ChineseQuestionSet:
    """About 20 questions per shelf of ``shelf_size`` Chinese items with distinct leaf categories.

    ``items``: a simulator items frame (its Chinese rows whose product noun and leaf category this
    module knows are used). Seeded: the same frame and seed give the same set.
    """
    rng = np.random.default_rng(seed)
    items = items.copy()
    # ---- seller facts: each of the two of the item's leaf present with probability 0.7 (the first)
    # and 0.6 (the second), in the description or (half of the time) as an FAQ entry of the item
    has_fact: dict[str, bool] = {}
    faqs: list[dict[str, str]] = []
    descs = items["description"].astype(str).tolist()
    for k, row in enumerate(items.to_dict("records")):
        leaf = _leaf(row.get("category"))
        if row.get("language") != "zh" or leaf not in LEAF_FACTS:
            continue
        present = rng.random(2) < (0.7, 0.6)
        for (sentence, faq_q), on, in_desc in zip(
            LEAF_FACTS[leaf][0], present, rng.random(2) < 0.5, strict=True
        ):
            if on and in_desc:
                descs[k] = f"{descs[k]}。{sentence}"
            elif on:
                faqs.append({"item": str(row["id"]), "question": faq_q, "answer": sentence})
        has_fact[str(row["id"])] = bool(present[0])
    items["description"] = descs
    facts = facts_table(items)
    pool = [i for i in has_fact if facts[i].noun in DESCRIPTIONS]
    by_leaf: dict[str, list[str]] = {}
    for i in pool:
        by_leaf.setdefault(facts[i].leaf or "", []).append(i)
    leaves = sorted(by_leaf)
    nouns_of_leaf = {lf: sorted({facts[i].noun or "" for i in by_leaf[lf]}) for lf in leaves}
    questions: list[QAQuestion] = []

    def pick(xs: list[str]) -> str:
        return xs[int(rng.integers(len(xs)))]

    def add(q: str, shelf: list[str], item: str, intent: str, expected: str | None, kind: str) -> None:
        questions.append(QAQuestion(q, shelf, shelf[0], item, intent, expected, kind))

    for _ in range(n_shelves):
        chosen = rng.choice(len(leaves), size=min(shelf_size, len(leaves)), replace=False)
        shelf = [pick(by_leaf[leaves[int(c)]]) for c in chosen]
        pinned, others = shelf[0], shelf[1:]
        off_leaves = [lf for lf in leaves if lf not in {facts[i].leaf for i in shelf}]

        def expected(item: str, intent: str) -> str | None:
            f = facts[item]
            if intent == "price":
                return format_price(f.price) if f.price is not None else None
            if intent == "brand":
                return f.brand
            if intent == "rating":
                return f"{f.rating:g}" if f.rating is not None else None
            return f.attributes.get(intent)

        def named(item: str) -> str:
            f = facts[item]
            return f"{f.brand}{f.noun}" if rng.random() < 0.5 else str(f.noun)

        # field questions: two named with keywords, three paraphrased about the pinned item
        for intent in rng.choice(list(KEYWORD_QUESTIONS), size=2, replace=False):
            it = pick(others)
            exp = expected(it, str(intent))
            add(
                KEYWORD_QUESTIONS[str(intent)].format(ref=named(it)),
                shelf,
                it,
                str(intent),
                exp,
                "field-named" if exp else "field-missing",
            )
        for intent in rng.choice(list(PARAPHRASES), size=3, replace=False):
            exp = expected(pinned, str(intent))
            q = pick(list(PARAPHRASES[str(intent)])).format(ref=pick(list(_DEICTIC)))
            add(q, shelf, pinned, str(intent), exp, "field-paraphrase" if exp else "field-missing")
        # two field questions about described (not named) shelf items
        for it in rng.choice(others, size=2, replace=False):
            it = str(it)
            intent = str(rng.choice(["price", "colour", "shipping", "brand", "size"]))
            tpl = pick([KEYWORD_QUESTIONS[intent], *PARAPHRASES[intent]])
            exp = expected(it, intent)
            ref = DESCRIPTIONS[facts[it].noun or ""]
            add(tpl.format(ref=ref), shelf, it, intent, exp, "by-description" if exp else "field-missing")
        # seller-fact questions: the pinned item, then a named or described other item
        for it in (pinned, pick(others)):
            leaf = facts[it].leaf or ""
            (sentence, _faq), _second = LEAF_FACTS[leaf][0]
            ref = ""
            if it != pinned:
                noun = str(facts[it].noun)
                ref = (DESCRIPTIONS[noun] if rng.random() < 0.5 else noun) + "，"
            q = ref + pick(list(LEAF_FACTS[leaf][1]))
            if has_fact[it]:
                add(q, shelf, it, "fact", sentence, "fact")
            else:
                add(q, shelf, it, "fact", None, "fact-missing")
        # questions no fact answers
        leaf = facts[pinned].leaf or ""
        add(LEAF_FACTS[leaf][2], shelf, pinned, "fact", None, "no-fact")
        it = pick(others)
        add(pick(list(_NO_FIELD)).format(ref=str(facts[it].noun)), shelf, it, "none", None, "no-field")
        # products of the catalogue that are not on this shelf: named, then described
        for how in ("named", "described"):
            lf = pick(off_leaves)
            noun = pick(nouns_of_leaf[lf])
            ref = noun if how == "named" else DESCRIPTIONS[noun]
            intent = str(rng.choice(["price", "colour", "shipping", "size"]))
            tpl = pick([KEYWORD_QUESTIONS[intent], *PARAPHRASES[intent]])
            off = pick(by_leaf[lf])
            add(tpl.format(ref=ref), shelf, off, intent, None, "not-on-shelf")
    return ChineseQuestionSet(items, questions, faqs)
