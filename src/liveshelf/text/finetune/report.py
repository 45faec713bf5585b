"""Evaluation reports and run measurements: per-class P/R/F1, macro-F1, AUC; peak memory.

Peak memory
-----------
:class:`PeakMemory` measures what a block of code adds to memory at its peak. On CUDA it is
``torch.cuda.max_memory_allocated`` (tensors only) minus the allocation at the start. On CPU it
is the process resident set size (``/proc/self/statm``, sampled every 10 ms by a thread) at its
peak minus the RSS at the start: weights, gradients, optimiser state, activations and allocator
slack together. ``tracemalloc`` is not used because torch's CPU tensors are allocated outside
Python's allocator and would not be seen. RSS can under-count when memory freed by an earlier
run in the same process is reused; the PEFT benchmark runs each method in its own process.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np


def classification_report(y_true: Sequence[int], proba: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    """Per-class precision / recall / F1 / support, accuracy, macro-F1 and AUC from class probabilities.

    ``proba`` is (N, C). AUC is ROC-AUC of the positive class for C == 2 and the macro one-vs-rest
    AUC for C > 2; it is None when ``y_true`` holds fewer than two classes (undefined).
    """
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support, roc_auc_score

    y = np.asarray(y_true, dtype=np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    labels = list(range(len(names)))
    pred = proba.argmax(axis=1)
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    per_class = {
        str(names[i]): {
            "precision": float(p[i]),
            "recall": float(r[i]),
            "f1": float(f[i]),
            "support": int(s[i]),
        }
        for i in labels
    }
    auc = None
    present = np.unique(y)
    if len(present) >= 2:
        if len(names) == 2:
            auc = float(roc_auc_score(y, proba[:, 1]))
        elif len(present) == len(names):
            auc = float(roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=labels))
        else:  # some classes absent from y: average the one-vs-rest AUCs of those present
            auc = float(np.mean([roc_auc_score(y == c, proba[:, c]) for c in present]))
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, labels=labels, average="macro", zero_division=0)),
        "auc": auc,
        "n": int(len(y)),
        "per_class": per_class,
    }


def ranking_report(labels: Sequence[float], scores: np.ndarray) -> dict[str, Any]:
    """AUC of pointwise relevance scores plus the classification report at score > 0 (probability 0.5)."""
    s = np.asarray(scores, dtype=np.float64)
    prob = 1.0 / (1.0 + np.exp(-s))
    out = classification_report(
        np.asarray(labels, dtype=np.int64), np.stack([1 - prob, prob], axis=1), ["irrelevant", "relevant"]
    )
    return out


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: the lifetime peak is the best there is
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


class PeakMemory:
    """Context manager: ``peak_mb`` = peak memory added inside the block (see module docstring)."""

    def __init__(self, device: str = "cpu", interval: float = 0.01) -> None:
        self.device = device
        self.interval = interval
        self.peak_mb = 0.0
        self.how = "cuda_max_allocated" if device.startswith("cuda") else "rss_sampled"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = 0
        self._peak = 0

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, _rss_bytes())

    def __enter__(self) -> PeakMemory:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._start = torch.cuda.memory_allocated()
        else:
            self._start = self._peak = _rss_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
            peak = max(self._peak, _rss_bytes())
        self.peak_mb = max(0, peak - self._start) / 2**20
