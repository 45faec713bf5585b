"""Text encoder throughput on CPU: fp32 vs int8 (torch) vs ONNX (fp32 / int8), and the Chinese fallback.

Encoder table: item texts of /work/shared/data/amazon-scientific (title + category + brand),
all-MiniLM-L6-v2, max_length 128, batch 64, texts sorted by length (dynamic padding) in every
row but one, 2 torch threads. Variants take turns on 4 chunks of the texts (interleaved, so
that load from other processes hits all alike); ``examples_per_s`` is the median over the
chunks, after a warm-up batch; ``speedup`` vs the fp32 torch row; ``cos_mean`` / ``cos_min``: cosine of each text's vector to its fp32 torch vector.
Target: speed-up >= 1.5 at cos_mean >= 0.98.

Chinese table: 30 reviews per category of online-shopping-10-cats (300 texts); ``nn_same_cat``
is the share of texts whose nearest other text has the same category (chance 0.10).

Environment: ``LIVESHELF_BENCH_ENCODER_N`` (default 1000) texts.
"""

from __future__ import annotations

import os
import time
import warnings

import numpy as np
import pandas as pd
import torch

from liveshelf.config import data_dir
from liveshelf.text.chinese import HashedTfidfEncoder
from liveshelf.text.encoder import TextEncoder

N = int(os.environ.get("LIVESHELF_BENCH_ENCODER_N", "1000"))
THREADS = 2
ROUNDS = 4


def scientific_texts(n: int) -> list[str]:
    path = data_dir() / "amazon-scientific" / "Scientific.text"
    lines = path.read_text(encoding="utf-8").splitlines()[1:]
    return [line.split("\t", 1)[1].strip() for line in lines if "\t" in line][:n]


def encoder_rows(texts: list[str], rounds: int = ROUNDS) -> list[dict]:
    """Each variant encodes chunk r of the texts in round r, variants interleaved within a round,
    so that load from other processes hits all variants alike; rate = median over rounds."""
    variants = [
        ("torch fp32", {}),
        ("torch fp32, batches in input order", {"sort_by_length": False}),
        ("torch int8 (all Linear)", {"quantize": True, "quantize_keep_fp32": 0}),
        ("torch int8 (2 outlier Linear fp32)", {"quantize": True}),
        ("onnx fp32", {"runtime": "onnx"}),
        ("onnx int8 (all MatMul)", {"runtime": "onnx", "quantize": True, "quantize_keep_fp32": 0}),
        ("onnx int8 (2 outlier Linear fp32)", {"runtime": "onnx", "quantize": True}),
    ]
    encoders: dict[str, TextEncoder] = {}
    rows: list[dict] = []
    for name, kw in variants:
        try:
            encoders[name] = TextEncoder(**kw)
            encoders[name].encode(texts[:64])  # warm-up (and ONNX export / session start)
        except Exception as exc:  # onnx/onnxruntime missing: report, keep the other rows
            rows.append({"variant": name, "error": repr(exc)[:80]})
            encoders.pop(name, None)
    chunks = np.array_split(np.arange(len(texts)), rounds)
    vecs = {name: np.zeros((len(texts), enc.dim), np.float32) for name, enc in encoders.items()}
    rates: dict[str, list[float]] = {name: [] for name in encoders}
    for chunk in chunks:
        part = [texts[i] for i in chunk]
        for name, enc in encoders.items():
            t0 = time.perf_counter()
            vecs[name][chunk] = enc.encode(part)
            rates[name].append(len(part) / (time.perf_counter() - t0))
    base_name = variants[0][0]
    base, base_rate = vecs[base_name], float(np.median(rates[base_name]))
    for name, enc in encoders.items():
        rate = float(np.median(rates[name]))
        cos = (vecs[name] * base).sum(axis=1)
        rows.append(
            {
                "variant": name,
                "n": len(texts),
                "examples_per_s": round(rate, 1),
                "speedup": round(rate / base_rate, 2),
                "cos_mean": round(float(cos.mean()), 4),
                "cos_min": round(float(cos.min()), 4),
                "kept_fp32": len(enc.keep_fp32_),
                "rates_per_round": [round(r, 1) for r in rates[name]],
            }
        )
    return rows


def chinese_rows() -> list[dict]:
    df = pd.read_csv(data_dir() / "online-shopping-10-cats" / "online_shopping_10_cats.csv").dropna()
    sample = df.groupby("cat").sample(30, random_state=0)
    rest = df.drop(sample.index).sample(3000, random_state=1)
    texts, cats = sample["review"].tolist(), sample["cat"].to_numpy()

    def nn_same(x: np.ndarray) -> float:
        sim = x @ x.T
        np.fill_diagonal(sim, -np.inf)
        return float((cats[sim.argmax(axis=1)] == cats).mean())

    rows = []
    minilm = TextEncoder(fallback=False)
    t0 = time.perf_counter()
    rows.append(
        {
            "encoder": "all-MiniLM-L6-v2 (fallback off)",
            "unk_share": round(minilm.unk_share(texts), 3),
            "nn_same_cat": nn_same(minilm.encode(texts)),
            "s": round(time.perf_counter() - t0, 1),
        }
    )
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        auto = TextEncoder()
        x = auto.encode(texts)
    rows.append(
        {
            "encoder": f"TextEncoder auto -> {auto.backend_} (fit on the 300)",
            "unk_share": round(auto.unk_share_ or 0.0, 3),
            "nn_same_cat": nn_same(x),
            "s": round(time.perf_counter() - t0, 1),
        }
    )
    t0 = time.perf_counter()
    fb = HashedTfidfEncoder().fit(rest["review"].tolist())
    rows.append(
        {
            "encoder": "HashedTfidfEncoder LSA-384 (fit on 3,000 others)",
            "unk_share": "",
            "nn_same_cat": nn_same(fb.encode(texts)),
            "s": round(time.perf_counter() - t0, 1),
        }
    )
    sparse = fb.transform(texts)
    rows.append(
        {
            "encoder": "HashedTfidfEncoder sparse TF-IDF",
            "unk_share": "",
            "nn_same_cat": nn_same((sparse @ sparse.T).toarray()),
            "s": "",
        }
    )
    return rows


def main() -> None:
    import common

    torch.set_num_threads(THREADS)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    texts = scientific_texts(N)
    common.write_result(
        "encoder",
        encoder_rows(texts),
        threads=THREADS,
        model="all-MiniLM-L6-v2",
        max_length=128,
        batch_size=64,
        data="amazon-scientific item texts",
    )
    common.write_result(
        "encoder_chinese",
        chinese_rows(),
        threads=THREADS,
        data="online-shopping-10-cats, 30 reviews per category",
    )


if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
