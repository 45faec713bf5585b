"""LiveSASRec: SASRec with the two ideas of LiveRec (Rappaz et al., RecSys'21).

1. **Dynamic availability.** On a live platform only the streams that are on air at the
   target's time can be chosen, so the training softmax runs over the items available
   at that time (``TrainData.available(t)``) instead of the whole catalogue. Without an
   ``available`` callable it falls back to the full softmax.
2. **Repeat consumption.** Viewers go back to streamers they watched before. For each
   position and each item already in the history, four signals of its past visits
   enter its score: bucketised log time since the last visit (``g``), bucketised visit
   count (``c``), bucketised number of events since the last visit (``r``), each with a
   learned vector and bias, and the decayed visit count ``s = sum 0.9 ** events ago``
   with a learned vector and weight. The score is
   ``h · e_i + b_i + h · (v_g + v_c + v_r + s v_s) + (a_g + a_c + a_r + s a_s)``.
   Items never consumed keep ``h · e_i + b_i``. The constant terms start at
   ``a_c = HISTORY_INIT`` and ``a_s = DECAYED_INIT``, so the untrained model ranks like the
   ``repeat`` baseline, and validation runs before the first epoch too (``eval_first``):
   training has to beat repeat on validation to replace those weights. The item bias ``b_i`` (initialised to
   centred log popularity) carries popularity, which a softmax over the available items
   alone does not otherwise learn. These few parameters train with ``10 x lr``.

With ``dp_epsilon`` (DP-SGD, see :class:`~liveshelf.models.sasrec.SASRec`) the popularity prior
and the repeat rate are not read from the data (they would leak outside the privacy
accountant): ``item_bias`` starts at 0 and the repeat terms at their data-free prior.

Scoring uses ``ctx.items``, ``ctx.ts`` and ``ctx.time`` (the request time; the last
history time when absent). Without timestamps, position ``i`` counts as second ``i``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from liveshelf.core.trainer import Callback, TrainStrategy
from liveshelf.errors import check_param
from liveshelf.models.base import Context, TrainData
from liveshelf.models.sasrec.config import SASRecConfig
from liveshelf.models.sasrec.model import SASRecNet
from liveshelf.models.sasrec.recommender import SASRec, masked_cross_entropy

#: Logit given to unavailable items (finite, so rows stay NaN-free in float32).
UNAVAILABLE = -1e9
#: Visit-count buckets: 1, 2-3, 4-7, 8-15, 16+; events-since-last-visit buckets: 0, 1, 2-3, ..., 32+.
N_COUNT_BUCKETS = 5
N_RECENCY_BUCKETS = 7
#: Decay per event of the decayed visit count (as in the ``repeat`` baseline).
DECAY = 0.9
#: Learning-rate multiplier of the repeat/time and item-bias parameters: biases of a few
#: units must be reached in a few hundred Adam steps.
LIVE_LR_SCALE = 10.0
#: Initial bonus of any history item and initial weight of its decayed visit count, times
#: the training data's repeat rate (share of interactions whose item is already in the
#: user's history): on data that repeats, the untrained model ranks like the ``repeat``
#: baseline (history items first, by decayed count; new items by popularity through
#: ``item_bias``); on data that never repeats it starts as plain SASRec.
HISTORY_INIT = 8.0
DECAYED_INIT = 8.0
LIVE_PARAMS = ("gap_", "count_", "recency_", "decayed_", "item_bias")


@dataclass
class LiveSASRecConfig(SASRecConfig):
    n_time_buckets: int = 24

    def validate(self, where: str = "LiveSASRec") -> LiveSASRecConfig:
        super().validate(where)
        v = self.n_time_buckets
        check_param(
            "n_time_buckets",
            v,
            isinstance(v, int) and not isinstance(v, bool) and v >= 1,
            "an int >= 1 (log2-second buckets of the time since the last visit)",
            where,
        )
        return self


class LiveSASRecNet(SASRecNet):
    def __init__(self, n_items: int, cfg: LiveSASRecConfig, repeat_rate: float = 1.0) -> None:
        super().__init__(n_items, cfg)
        # index 0 = "not in the history" and never used; zero init = plain SASRec at start
        self.gap_emb = nn.Embedding(cfg.n_time_buckets + 1, cfg.hidden)
        self.count_emb = nn.Embedding(N_COUNT_BUCKETS + 1, cfg.hidden)
        self.recency_emb = nn.Embedding(N_RECENCY_BUCKETS + 1, cfg.hidden)
        self.gap_bias = nn.Embedding(cfg.n_time_buckets + 1, 1)
        self.count_bias = nn.Embedding(N_COUNT_BUCKETS + 1, 1)
        self.recency_bias = nn.Embedding(N_RECENCY_BUCKETS + 1, 1)
        # weight (h-dependent + constant) of the decayed visit count sum_k DECAY ** (events ago)
        self.decayed_vec = nn.Parameter(torch.zeros(cfg.hidden))
        self.decayed_bias = nn.Parameter(torch.zeros(()))
        # with a softmax over the available items only, popularity needs its own term
        self.item_bias = nn.Parameter(torch.zeros(n_items))
        for emb in (
            self.gap_emb,
            self.count_emb,
            self.recency_emb,
            self.gap_bias,
            self.count_bias,
            self.recency_bias,
        ):
            nn.init.zeros_(emb.weight)
        # start from the ``repeat`` baseline (every history item above every new item, history
        # items ordered by their decayed visit count), as strongly as the data repeat
        with torch.no_grad():
            self.count_bias.weight[1:] = HISTORY_INIT * repeat_rate
            self.decayed_bias.fill_(DECAYED_INIT * repeat_rate)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return super().logits(h) + self.item_bias  # (..., I)

    def repeat_scores(self, buckets: tuple[torch.Tensor, ...], h: torch.Tensor) -> torch.Tensor:
        """Bonus of history item j at position t: ``4 x (B, T, T), (B, T, D) -> (B, T, T)``."""
        gap, count, recency, decayed = buckets
        out = decayed * (h @ self.decayed_vec + self.decayed_bias)[:, :, None]  # (B, T, T)
        for b, emb, bias in zip(
            (gap, count, recency),
            (self.gap_emb, self.count_emb, self.recency_emb),
            (self.gap_bias, self.count_bias, self.recency_bias),
            strict=True,
        ):
            scores = h @ emb.weight.T + bias.weight.T  # (B, T, K+1)
            out = out + scores.gather(2, b)  # (B, T, T)
        return out * (gap > 0)  # (B, T, T)


def repeat_buckets(
    tokens: torch.Tensor, times: torch.Tensor, query_times: torch.Tensor, n_buckets: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Time-gap, visit-count and recency buckets and the decayed visit count, each ``(B, T, T)``.

    Row t, column j.

    Non-zero where history position ``j <= t`` holds the *last* occurrence of its item
    within positions ``0..t`` (so each item in the history counts once per row):

    - gap: ``1 + min(K - 1, floor(log2(1 + query_times[t] - times[j])))`` (seconds);
    - count: ``1 + min(4, floor(log2(visits to the item in 0..t))))``;
    - recency: ``1 + min(6, ceil(log2(1 + t - j)))`` (events since the last visit);
    - decayed (float): ``sum of DECAY ** (t - j')`` over the visits ``j' <= t`` to the item.
    """
    B, T = tokens.shape
    dev = tokens.device
    same = (tokens[:, :, None] == tokens[:, None, :]) & (tokens != 0)[:, :, None]  # (B, T, T): [j, j']
    later = torch.ones(T, T, dtype=torch.bool, device=dev).triu(1)  # j' > j
    cand = same & later
    nxt = torch.where(cand.any(-1), cand.to(torch.int8).argmax(-1), T)  # (B, T) next occurrence of item j
    t = torch.arange(T, device=dev)[None, :, None]  # (1, T, 1)
    j = torch.arange(T, device=dev)[None, None, :]  # (1, 1, T)
    last = (j <= t) & (t < nxt[:, None, :]) & (tokens != 0)[:, None, :]  # (B, T, T)
    gap = (query_times[:, :, None] - times[:, None, :]).clamp(min=0)  # (B, T, T)
    g = 1 + torch.floor(torch.log2(1 + gap)).clamp(0, n_buckets - 1).long()
    count = same.long().cumsum(2).transpose(1, 2)  # (B, T, T): visits to item j within 0..t
    c = 1 + torch.floor(torch.log2(count.clamp(min=1).double())).clamp(0, N_COUNT_BUCKETS - 1).long()
    since = (t - j).clamp(min=0).double()  # (1, T, T)
    r = (1 + torch.ceil(torch.log2(1 + since)).clamp(0, N_RECENCY_BUCKETS - 1).long()).expand(B, T, T)
    pos = torch.arange(T, device=dev, dtype=torch.float64)
    weighted = (same.double() * DECAY ** (T - 1 - pos)).cumsum(2).transpose(1, 2)  # (B, T, T)
    decayed = (weighted * DECAY ** -(T - 1 - pos)[None, :, None]).float()  # sum of DECAY ** (t - j')
    zero = torch.zeros_like(g)
    return (
        torch.where(last, g, zero),
        torch.where(last, c, zero),
        torch.where(last, r, zero),
        torch.where(last, decayed, torch.zeros_like(decayed)),
    )


class LiveSASRec(SASRec[LiveSASRecNet, LiveSASRecConfig]):
    """SASRec trained over the items available at each target's time, with repeat/time-gap scores."""

    name: ClassVar[str] = "livesasrec"
    eval_first: ClassVar[bool] = True  # the repeat-like initial weights may be the best
    config_class: ClassVar[type[SASRecConfig]] = LiveSASRecConfig
    # Training-time state, set by _prepare and reset after fit: the data's availability oracle
    # (t -> available item indices) and its cache by time, the popularity prior and the repeat rate.
    _available: Callable[[float], Any] | None
    _avail_cache: dict[float, np.ndarray]
    _log_pop: np.ndarray | None
    _repeat_rate: float

    def __init__(
        self,
        hidden: int = 64,
        n_layers: int = 2,
        n_heads: int = 2,
        max_len: int = 50,
        dropout: float = 0.5,
        norm: str = "post",
        label_smoothing: float = 0.1,
        lr: float = 1e-3,
        lr_decay: float | None = None,
        lr_patience: int = 3,
        weight_decay: float = 0.0,
        batch_size: int = 128,
        epochs: int = 200,
        patience: int = 10,
        eval_every: int = 1,
        train_windows: str = "all",
        window_stride: int | None = None,
        seed: int = 0,
        device: str = "cpu",
        n_threads: int = 2,
        dp_epsilon: float | None = None,
        dp_delta: float | None = None,
        dp_max_grad_norm: float = 1.0,
        n_time_buckets: int = 24,
    ) -> None:
        super().__init__(
            hidden=hidden,
            n_layers=n_layers,
            n_heads=n_heads,
            max_len=max_len,
            dropout=dropout,
            norm=norm,
            label_smoothing=label_smoothing,
            lr=lr,
            lr_decay=lr_decay,
            lr_patience=lr_patience,
            weight_decay=weight_decay,
            batch_size=batch_size,
            epochs=epochs,
            patience=patience,
            eval_every=eval_every,
            train_windows=train_windows,
            window_stride=window_stride,
            seed=seed,
            device=device,
            n_threads=n_threads,
            dp_epsilon=dp_epsilon,
            dp_delta=dp_delta,
            dp_max_grad_norm=dp_max_grad_norm,
        )
        self.n_time_buckets = n_time_buckets

    def _make_net(self, n_items: int, cfg: LiveSASRecConfig) -> LiveSASRecNet:
        net = LiveSASRecNet(n_items, cfg, getattr(self, "_repeat_rate", 1.0))
        log_pop = getattr(self, "_log_pop", None)
        if log_pop is not None and len(log_pop) == n_items:  # start from the popularity prior
            with torch.no_grad():
                net.item_bias.copy_(torch.from_numpy(log_pop))
        return net

    def _param_groups(self, net: LiveSASRecNet, cfg: SASRecConfig) -> list[dict[str, Any]]:
        live = [p for n, p in net.named_parameters() if n.startswith(LIVE_PARAMS)]
        ids = {id(p) for p in live}
        rest = [p for p in net.parameters() if id(p) not in ids]
        return [{"params": rest}, {"params": live, "lr": cfg.lr * LIVE_LR_SCALE, "weight_decay": 0.0}]

    def fit(
        self,
        data: TrainData,
        *,
        callbacks: list[Callback] | None = None,
        strategy: TrainStrategy | None = None,
    ) -> LiveSASRec:
        try:
            return super().fit(data, callbacks=callbacks, strategy=strategy)
        finally:  # the availability oracle belongs to the data, not to the model
            self._available, self._avail_cache, self._log_pop, self._repeat_rate = None, {}, None, 1.0

    # ---- training data ------------------------------------------------------------------
    def _prepare(self, data: TrainData) -> None:
        self._available = data.available
        self._avail_cache = {}
        if getattr(self, "_private", False):  # DP: no statistics of the private data outside DP-SGD
            self._log_pop, self._repeat_rate = None, 1.0
            return
        counts = np.bincount(
            np.concatenate([np.asarray(s, np.int64) for s in data.sequences] + [np.zeros(0, np.int64)]),
            minlength=data.n_items,
        )[: data.n_items]
        repeats = steps = 0
        for seq in data.sequences:
            seq = np.asarray(seq, dtype=np.int64)
            if len(seq) > 1:
                _, first = np.unique(seq, return_index=True)
                repeats += len(seq) - len(first)  # items seen before at their position
                steps += len(seq) - 1
        self._repeat_rate = repeats / steps if steps else 0.0
        log_pop = np.log1p(counts).astype(np.float32)
        self._log_pop = log_pop - log_pop.mean()

    def _available_at(self, t: float) -> np.ndarray:
        if t not in self._avail_cache:
            available = self._available
            assert available is not None, "asked only while fitting on data with an availability oracle"
            self._avail_cache[t] = np.asarray(available(t), dtype=np.int64)
        return self._avail_cache[t]

    @staticmethod
    def _times(data: TrainData, u: int) -> np.ndarray:
        if data.timestamps is not None:
            return np.asarray(data.timestamps[u], dtype=np.float64)
        return np.arange(len(data.sequences[u]), dtype=np.float64)

    def _windows(self, data: TrainData, cfg: LiveSASRecConfig) -> dict[str, np.ndarray]:
        w = super()._windows(data, cfg)
        L = cfg.max_len
        times = np.zeros(w["tokens"].shape, dtype=np.float64)
        query = np.zeros(w["tokens"].shape, dtype=np.float64)
        for k, (u, s) in enumerate(zip(w["users"], w["starts"], strict=True)):
            n = int((w["tokens"][k] != 0).sum())
            ts = self._times(data, int(u))[s : s + n + 1]
            times[k, L - n :] = ts[:-1]
            query[k, L - n :] = ts[1:]
        w["times"], w["query"] = times, query
        return w

    def _batch(
        self, windows: dict[str, np.ndarray], idx: np.ndarray, T: int, cfg: LiveSASRecConfig
    ) -> dict[str, Any]:
        batch = super()._batch(windows, idx, T, cfg)
        batch["times"] = torch.from_numpy(windows["times"][idx, -T:]).to(cfg.device)  # (B, T)
        batch["query"] = torch.from_numpy(windows["query"][idx, -T:]).to(cfg.device)  # (B, T)
        if getattr(self, "_private", False) and self._available is not None:  # vmap-safe loss needs it ready
            batch["avail"] = self._window_availability(
                windows["query"][idx, -T:], windows["targets"][idx, -T:]
            ).to(cfg.device)
        return batch

    def _window_availability(self, query: np.ndarray, targets: np.ndarray) -> torch.Tensor:
        """``(B, T, I)`` True where the item is available at the position's target time (target always)."""
        uniq, inv = np.unique(query, return_inverse=True)
        rows = np.zeros((len(uniq), len(self.item_ids_)), dtype=bool)
        for r, t in enumerate(uniq):
            rows[r, self._available_at(float(t))] = True
        mask = rows[inv.reshape(query.shape)]  # (B, T, I)
        b, t = np.nonzero(targets >= 0)
        mask[b, t, targets[b, t]] = True
        return torch.from_numpy(mask)

    def _loss(self, net: LiveSASRecNet, batch: dict[str, Any]) -> torch.Tensor:
        tokens, targets = batch["tokens"], batch["targets"]  # (B, T)
        h = net(tokens)  # (B, T, D)
        keep = targets >= 0  # (B, T)
        logits = self._logits(net, h, tokens, batch["times"], batch["query"], keep)  # (N, I)
        target = targets[keep]  # (N,)
        if self._available is not None:
            logits = logits.masked_fill(~self._available_mask(batch["query"][keep], target), UNAVAILABLE)
        return F.cross_entropy(logits, target, label_smoothing=self._smoothing)

    def _sample_loss(self, net: LiveSASRecNet, batch: dict[str, Any]) -> torch.Tensor:
        """The DP loss of :meth:`_loss` on ``(B, T, I)`` logits (vmap-safe: no data-dependent shapes)."""
        tokens = batch["tokens"]  # (B, T)
        h = net(tokens)  # (B, T, D)
        bonus = net.repeat_scores(
            repeat_buckets(tokens, batch["times"], batch["query"], self.n_time_buckets), h
        )
        idx = (tokens - 1).clamp(min=0)[:, None, :].expand_as(bonus)  # (B, T, T) item of column j
        logits = net.logits(h).scatter_add(2, idx, bonus)  # (B, T, I)
        if "avail" in batch:
            logits = logits.masked_fill(~batch["avail"], UNAVAILABLE)
        return masked_cross_entropy(logits, batch["targets"], self._smoothing)

    def _logits(
        self,
        net: LiveSASRecNet,
        h: torch.Tensor,
        tokens: torch.Tensor,
        times: torch.Tensor,
        query: torch.Tensor,
        keep: torch.Tensor,
    ) -> torch.Tensor:
        """Item scores ``(N, I)`` of the kept positions, with the repeat/time-gap bonus."""
        buckets = repeat_buckets(tokens, times, query, self.n_time_buckets)  # 4 x (B, T, T)
        bonus = net.repeat_scores(buckets, h)  # (B, T, T)
        idx = (tokens - 1).clamp(min=0)[:, None, :].expand_as(bonus)  # (B, T, T) item of column j
        logits = net.logits(h[keep])  # (N, I)
        return logits.scatter_add(1, idx[keep], bonus[keep])

    def _available_mask(self, query: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``(N, I)`` True where the item is available at the row's target time (target always)."""
        q = query.cpu().numpy()
        uniq, inv = np.unique(q, return_inverse=True)
        rows = np.zeros((len(uniq), len(self.item_ids_)), dtype=bool)
        for r, t in enumerate(uniq):
            rows[r, self._available_at(float(t))] = True
        mask = torch.from_numpy(rows[inv]).to(target.device)
        mask[torch.arange(len(target), device=target.device), target] = True
        return mask

    # ---- validation and scoring ---------------------------------------------------------
    def _valid_context(self, data: TrainData, u: int) -> Context:
        ctx = data.context(u)
        if ctx.ts is None:
            ctx.ts = self._times(data, u)
        valid_times = data.meta.get("valid_times")
        if valid_times is not None:
            ctx.time = float(valid_times[u])
        return ctx

    def _valid_candidates(self, data: TrainData, users: np.ndarray) -> torch.Tensor | None:
        """Validation targets are ranked among the items available at their time when
        ``data.meta['valid_times']`` (per user, epoch seconds) and ``available`` are given."""
        valid_times = data.meta.get("valid_times")
        if valid_times is None or data.available is None:
            return None
        targets = data.valid_targets
        assert targets is not None, "_validator asks for candidates only when valid_targets are given"
        mask = np.zeros((len(users), data.n_items), dtype=bool)
        for r, u in enumerate(users):
            mask[r, self._available_at(float(valid_times[u]))] = True
            mask[r, int(targets[u])] = True
        return torch.from_numpy(mask)

    def _scores_tensor(self, net: LiveSASRecNet, contexts: list[Context], cfg: SASRecConfig) -> torch.Tensor:
        tokens_np = self._context_tokens(contexts, cfg.max_len)  # (B, T)
        B, T = tokens_np.shape
        times = np.zeros((B, T), dtype=np.float64)
        query = np.zeros((B, T), dtype=np.float64)
        for b, c in enumerate(contexts):
            items = np.asarray(c.items, dtype=np.int64)
            ts = np.arange(len(items), dtype=np.float64) if c.ts is None else np.asarray(c.ts, np.float64)
            known = (items >= 0) & (items < len(self.item_ids_))
            ts = ts[known][-cfg.max_len :]
            if len(ts):
                times[b, T - len(ts) :] = ts
            now = c.time if c.time is not None else (ts[-1] if len(ts) else 0.0)
            query[b, :] = float(now)
        tokens = torch.from_numpy(tokens_np).to(cfg.device)
        h = net(tokens)  # (B, T, D)
        keep = torch.zeros(B, T, dtype=torch.bool, device=tokens.device)
        keep[:, -1] = True  # score from the last position only
        return self._logits(
            net,
            h,
            tokens,
            torch.from_numpy(times).to(cfg.device),
            torch.from_numpy(query).to(cfg.device),
            keep,
        )  # (B, I)
