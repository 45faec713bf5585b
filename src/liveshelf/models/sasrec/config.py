"""Hyper-parameters of the SASRec family, validated in one place."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from liveshelf.errors import check_param


@dataclass
class SASRecConfig:
    """Architecture and training settings of :class:`~liveshelf.models.sasrec.SASRec`.

    Defaults are RecBole's SASRec (post-LayerNorm, hidden 64, 2 layers, 2 heads, dropout
    0.5) with a full-softmax (cross-entropy) loss on every position, label smoothing 0.1
    and batch 128, chosen on validation NDCG@10 of Amazon Scientific: test NDCG@10 0.052,
    about 95% of the published 0.0553 (see ``benchmarks/bench_sasrec.py``).

    ``window_stride`` (``None`` = ``max_len``: windows do not overlap) is the step between the training
    windows of a history longer than ``max_len + 1``; a smaller stride shows each target again with a
    longer left context. ``lr_decay`` (``None`` = constant) multiplies the learning rate when validation
    NDCG@10 has not improved for ``lr_patience`` epochs. Both are off by default: on ml-100k (long
    histories) stride 10 or 5 and a plateau decay of 0.5 each ended *below* the defaults (test NDCG@10
    0.061 / 0.055 / 0.060 against 0.064, ``benchmarks/peer/README.md``); on short histories the stride
    changes nothing.

    ``dp_epsilon`` (``None`` = off) trains with DP-SGD to that ε at ``dp_delta`` (``None`` =
    1 / number of users), clipping each user's gradient to ``dp_max_grad_norm``
    (see :mod:`liveshelf.privacy.dp`).
    """

    hidden: int = 64
    n_layers: int = 2
    n_heads: int = 2
    max_len: int = 50
    dropout: float = 0.5
    norm: str = "post"
    label_smoothing: float = 0.1
    lr: float = 1e-3
    lr_decay: float | None = None
    lr_patience: int = 3
    weight_decay: float = 0.0
    batch_size: int = 128
    epochs: int = 200
    patience: int = 10
    eval_every: int = 1
    train_windows: str = "all"
    window_stride: int | None = None
    seed: int = 0
    device: str = "cpu"
    n_threads: int = 2
    dp_epsilon: float | None = None
    dp_delta: float | None = None
    dp_max_grad_norm: float = 1.0

    @property
    def stride(self) -> int:
        """The step between the training windows of a sequence longer than ``max_len + 1``."""
        return self.max_len if self.window_stride is None else self.window_stride

    def validate(self, where: str = "SASRec") -> SASRecConfig:
        def positive_int(name: str) -> None:
            v = getattr(self, name)
            check_param(
                name, v, isinstance(v, int) and not isinstance(v, bool) and v >= 1, "an int >= 1", where
            )

        for name in (
            "hidden",
            "n_layers",
            "n_heads",
            "max_len",
            "batch_size",
            "epochs",
            "patience",
            "lr_patience",
            "eval_every",
            "n_threads",
        ):
            positive_int(name)
        check_param(
            "hidden",
            self.hidden,
            self.hidden % self.n_heads == 0,
            f"a multiple of n_heads={self.n_heads}",
            where,
        )
        check_param(
            "dropout",
            self.dropout,
            isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1,
            "a float in [0, 1)",
            where,
        )
        check_param(
            "norm",
            self.norm,
            self.norm in ("pre", "post"),
            "'pre' (LayerNorm before each sub-layer, GPT-2) or 'post' (after each residual "
            "sum and on the input embedding, as in RecBole)",
            where,
        )
        check_param(
            "label_smoothing",
            self.label_smoothing,
            isinstance(self.label_smoothing, (int, float)) and 0 <= self.label_smoothing < 1,
            "a float in [0, 1)",
            where,
        )
        check_param("lr", self.lr, isinstance(self.lr, (int, float)) and self.lr > 0, "a float > 0", where)
        check_param(
            "weight_decay",
            self.weight_decay,
            isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0,
            "a float >= 0",
            where,
        )
        check_param(
            "train_windows",
            self.train_windows,
            self.train_windows in ("last", "all"),
            "'last' (the last max_len items of each user) or 'all' (every item, in windows of max_len)",
            where,
        )
        check_param(
            "lr_decay",
            self.lr_decay,
            self.lr_decay is None or (isinstance(self.lr_decay, (int, float)) and 0 < self.lr_decay < 1),
            "None (a constant learning rate) or a float in (0, 1): the factor applied when validation "
            "NDCG@10 has not improved for lr_patience epochs",
            where,
        )
        stride = self.window_stride
        check_param(
            "window_stride",
            stride,
            stride is None
            or (isinstance(stride, int) and not isinstance(stride, bool) and 1 <= stride <= self.max_len),
            f"None (the default: max_len, windows do not overlap) or an int in [1, max_len={self.max_len}]",
            where,
        )
        check_param("seed", self.seed, isinstance(self.seed, int), "an int", where)
        check_param(
            "device",
            self.device,
            isinstance(self.device, str) and self.device.split(":")[0] in ("cpu", "cuda", "mps"),
            "'cpu', 'cuda', 'cuda:N' or 'mps'",
            where,
        )

        def number(v: object) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool)

        check_param(
            "dp_epsilon",
            self.dp_epsilon,
            self.dp_epsilon is None or (number(self.dp_epsilon) and 0 < self.dp_epsilon < float("inf")),
            "None (no differential privacy) or a finite float > 0 (e.g. 8)",
            where,
        )
        check_param(
            "dp_delta",
            self.dp_delta,
            self.dp_delta is None or (number(self.dp_delta) and 0 < self.dp_delta < 1),
            "None (1 / number of users) or a float in (0, 1)",
            where,
        )
        check_param(
            "dp_max_grad_norm",
            self.dp_max_grad_norm,
            number(self.dp_max_grad_norm) and 0 < self.dp_max_grad_norm < float("inf"),
            "a finite float > 0 (per-user gradient clipping bound)",
            where,
        )
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
