"""Text intelligence on a simulated world: profile recovery, grounded generation, shopper Q&A.

* profiles: share of users whose profile top-3 categories hold one of their true top-3 interests
  (and the same share for "the three most common categories" for everyone, as a floor), and
  exact top-1 agreement;
* generation (``grounded`` backend): 1,000 (user, item) pairs = 500 items x 2 viewers whose
  profile top categories differ; unsupported facts over every text (must be 0), share of items
  where the two viewers get different lead facts (and the same share for two viewers with the
  same top category, as a contrast), distinct-2 of the reasons (characters for zh, words for
  en), latency per pitch (profile read + attention + ranking + templates + grounding check);
* Q&A: a question set over 30 random shelves (answerable and not): accuracy, "don't know" rate,
  unsupported claims in answers.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from common import write_result

from liveshelf.data.simulate import SimConfig, simulate
from liveshelf.profile import ProfileBuilder, simulator_category_map
from liveshelf.text.facts import facts_table, is_zh
from liveshelf.text.generate import GenerationRequest, make_generator
from liveshelf.text.grounding import check
from liveshelf.text.qa import ShelfQA, evaluate_qa, make_question_set

SEED = 0
N_ITEMS = 500


def _distinct2(texts: list[str]) -> float:
    grams: list[tuple[str, str]] = []
    for t in texts:
        toks = [c for c in t if not c.isspace()] if is_zh(t) else t.lower().split()
        grams += list(zip(toks, toks[1:], strict=False))
    return len(set(grams)) / max(len(grams), 1)


def main() -> None:
    rng = np.random.default_rng(SEED)
    t0 = time.perf_counter()
    world = simulate(SimConfig(n_users=1000, n_hosts=50, days=7, seed=SEED))
    ds, truth = world.dataset, world.truth
    sim_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    cmap = simulator_category_map()
    builder = ProfileBuilder(ds.items, ds.rooms, category_map=cmap)
    builder.update(ds.events)
    build_s = time.perf_counter() - t0

    # ---- profile recovery
    cats = truth.categories
    top3 = truth.top_categories(3)
    popular = set(pd.Series(ds.items["category"].map(lambda c: cmap.get(c, c))).value_counts().index[:3])
    hit3 = hit1 = base = n = 0
    for k, u in enumerate(truth.user_ids):
        if u not in builder or not builder.profile(u).categories:
            continue
        p = builder.profile(u)
        true3 = {cats[j] for j in top3[k]}
        n += 1
        hit3 += bool(set(p.top_categories(3)) & true3)
        hit1 += p.top_categories(1)[0] == cats[top3[k, 0]]
        base += bool(popular & true3)
    rows = [
        {"part": "profile", "metric": "top-3 overlap with true top-3", "value": round(hit3 / n, 3), "n": n},
        {"part": "profile", "metric": "same, popular-3 baseline", "value": round(base / n, 3), "n": n},
        {"part": "profile", "metric": "top-1 == true top-1", "value": round(hit1 / n, 3), "n": n},
    ]

    # ---- generation: 500 items x 2 viewers with different top categories
    facts = facts_table(ds.items)
    brands = ds.items["brand"].unique().tolist()
    gen = make_generator("grounded", encode=builder.encode_texts, known_brands=brands)
    users = [u for u in builder.users if builder.profile(u).categories]
    top_of = {u: builder.profile(u).top_categories(1)[0] for u in users}
    items = ds.items["id"].to_numpy()[rng.choice(len(ds.items), N_ITEMS, replace=False)].tolist()
    hosts = dict(zip(ds.hosts["id"], ds.hosts["name"], strict=True))
    by_cat: dict[str, list[str]] = {}
    for u in users:
        by_cat.setdefault(top_of[u], []).append(u)
    pairs_diff, pairs_same = [], []
    for it in items:
        a = users[int(rng.integers(len(users)))]
        others = [u for u in users if top_of[u] != top_of[a]]
        pairs_diff.append((it, a, others[int(rng.integers(len(others)))]))
        same = [u for u in by_cat[top_of[a]] if u != a]
        if same:
            pairs_same.append((it, a, same[int(rng.integers(len(same)))]))
    item_host = _item_host(ds)

    def pitch(user: str, item: str):  # noqa: ANN202
        req = GenerationRequest(
            item=facts[item],
            user=user,
            profile=builder.profile(user),
            interest=builder.interest_vector(user, item),
            host=hosts.get(item_host.get(item)),
        )
        return req, gen.generate_one(req)

    latencies, unsupported, texts_checked, reasons, diff, reason_lens = [], 0, 0, [], 0, []
    for it, a, b in pairs_diff:
        leads = []
        for u in (a, b):
            t = time.perf_counter()
            req, p = pitch(u, it)
            latencies.append((time.perf_counter() - t) * 1000)
            for text in p.texts():
                unsupported += len(
                    check(text, req.item, context=req.context(), known_brands=brands).unsupported
                )
                texts_checked += 1
            reasons.append(p.reason)
            reason_lens.append(len(p.reason) if p.lang == "zh" else len(p.reason.split()))
            leads.append(p.lead_fact)
        diff += leads[0] != leads[1]
    same_diff = sum(pitch(a, it)[1].lead_fact != pitch(b, it)[1].lead_fact for it, a, b in pairs_same)
    lat = np.asarray(latencies)
    rows += [
        {"part": "generate", "metric": "pairs (user, item)", "value": len(latencies)},
        {
            "part": "generate",
            "metric": "unsupported facts (all texts)",
            "value": unsupported,
            "n": texts_checked,
        },
        {
            "part": "generate",
            "metric": "different lead fact, different-interest users",
            "value": round(diff / len(pairs_diff), 3),
            "n": len(pairs_diff),
        },
        {
            "part": "generate",
            "metric": "different lead fact, same-top-category users",
            "value": round(same_diff / max(len(pairs_same), 1), 3),
            "n": len(pairs_same),
        },
        {"part": "generate", "metric": "distinct-2 of reasons", "value": round(_distinct2(reasons), 3)},
        {"part": "generate", "metric": "reason length max (zh chars / en words)", "value": max(reason_lens)},
        {"part": "generate", "metric": "latency p50 ms", "value": round(float(np.percentile(lat, 50)), 2)},
        {"part": "generate", "metric": "latency p95 ms", "value": round(float(np.percentile(lat, 95)), 2)},
    ]

    # ---- Q&A
    questions, faqs = make_question_set(ds.items, n_shelves=30, seed=SEED)
    t = time.perf_counter()
    report = evaluate_qa(ShelfQA(ds.items, faqs), questions)
    qa_ms = (time.perf_counter() - t) * 1000 / len(questions)
    rows += [
        {
            "part": "qa",
            "metric": "questions (answerable / not)",
            "value": f"{report['answerable']} / {report['unanswerable']}",
            "n": report["questions"],
        },
        {"part": "qa", "metric": "answer accuracy", "value": round(report["accuracy"], 3)},
        {"part": "qa", "metric": "correct don't-know rate", "value": round(report["dont_know_rate"], 3)},
        {"part": "qa", "metric": "unsupported claims in answers", "value": report["unsupported_claims"]},
        {"part": "qa", "metric": "ms per question (incl. index build)", "value": round(qa_ms, 2)},
    ]
    write_result(
        "generate",
        rows,
        seed=SEED,
        world={"users": 1000, "hosts": 50, "days": 7, "events": len(ds.events), "items": len(ds.items)},
        simulate_s=round(sim_s, 1),
        profile_build_s=round(build_s, 1),
        backend="grounded",
    )


def _item_host(ds) -> dict[str, str]:  # noqa: ANN001
    shelf = ds.shelf.merge(ds.rooms[["id", "host"]], left_on="room", right_on="id")
    return dict(zip(shelf["item"], shelf["host"], strict=False))


if __name__ == "__main__":
    main()
