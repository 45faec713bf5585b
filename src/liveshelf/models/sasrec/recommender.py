"""The SASRec recommender: data windows, full-softmax training, early stopping, scoring."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, ClassVar, Generic, Self, cast

import numpy as np
import torch
import torch.nn.functional as F
from typing_extensions import TypeVar

from liveshelf.core.trainer import (
    Callback,
    EarlyStopping,
    ProgressBar,
    ReduceLROnPlateau,
    Trainer,
    TrainStrategy,
)
from liveshelf.errors import ConfigError, NotFittedError
from liveshelf.models.base import BaseRecommender, Context, TrainData
from liveshelf.models.capabilities import EmbedsItems, WarmStartable
from liveshelf.models.sasrec.config import SASRecConfig
from liveshelf.models.sasrec.model import SASRecNet, SequenceNet

#: Length bucketing: windows are sorted by length within pools of this many batches.
BUCKET_POOL = 16
#: Contexts scored per forward pass.
SCORE_BATCH = 1024
#: File beside the weights that records the privacy guarantee of a DP-trained model.
PRIVACY_FILE = "privacy.json"

#: The network and the config of a SASRec-style model (subclasses narrow them: ``SASRec[TextSeqNet, TextSeqConfig]``).
NetT = TypeVar("NetT", bound=SequenceNet, default=SASRecNet)
CfgT = TypeVar("CfgT", bound=SASRecConfig, default=SASRecConfig)


def masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Mean over windows of each window's mean label-smoothed cross-entropy over its real targets.

    ``logits (B, T, I)``, ``targets (B, T)`` with ``-1`` at padding. Written without shapes that
    depend on the data, so it runs per example inside ``torch.func.vmap`` (DP-SGD); the smoothing
    term is torch's: ``(1 - s) * nll + s * mean_i(-log p_i)``.
    """
    logp = F.log_softmax(logits, dim=-1)  # (B, T, I)
    keep = (targets >= 0).to(logp.dtype)  # (B, T)
    nll = -logp.gather(-1, targets.clamp(min=0)[..., None])[..., 0]  # (B, T)
    per_pos = (1.0 - smoothing) * nll + smoothing * (-logp.mean(-1))  # (B, T)
    per_window = (per_pos * keep).sum(-1) / keep.sum(-1).clamp(min=1.0)  # (B,)
    return per_window.mean()


class SASRec(BaseRecommender, EmbedsItems, WarmStartable, Generic[NetT, CfgT]):
    """Self-attentive sequential recommender trained with a full-softmax loss.

    Every position of each training window predicts the next item (one forward per
    window, causal attention). Training stops when validation NDCG@10 (context: the
    user's training sequence, target: ``TrainData.valid_targets``) has not improved
    for ``patience`` evaluations, and the best weights are restored.

    Learned state: ``net_`` (the torch module), ``history_`` (one dict per epoch:
    epoch, seconds, loss, ndcg@10, recall@10), ``best_epoch_``, ``fit_seconds_``,
    ``privacy_`` (``None``, or the DP guarantee: achieved ``dp_epsilon`` at ``dp_delta``, ...;
    saved as ``privacy.json``).

    Differential privacy: ``dp_epsilon=8`` (or ``fit(data, strategy=DPStrategy(8))``) trains
    with DP-SGD (opacus) for exactly ``epochs`` epochs. Each user then gives one training window
    (the last ``max_len + 1`` items), the loss is the per-window mean, and validation only logs
    (no early stopping, which would choose weights from private data outside the accountant).

    Abilities: ``item_embeddings()`` (the learned item vectors, :class:`EmbedsItems`) and
    ``warm_start_from(parent)`` (the next ``fit`` starts from a fitted parent's weights,
    :class:`WarmStartable`).

    Example::

        model = SASRec(hidden=32, epochs=20, dp_epsilon=8.0).fit(data)
        model.privacy_["dp_epsilon"], model.privacy_["dp_delta"]
    """

    name: ClassVar[str] = "sasrec"
    #: Validate the initial weights too (epoch 0), so early stopping may keep them.
    eval_first: ClassVar[bool] = False
    config_class: ClassVar[type[SASRecConfig]] = SASRecConfig
    #: ``(parent state_dict, parent item id -> row)`` from :meth:`warm_start_from`; None: fresh starts
    _warm_start: tuple[dict[str, torch.Tensor], dict[str, int]] | None = None
    net_: NetT

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
    ) -> None:
        self.hidden = hidden
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.max_len = max_len
        self.dropout = dropout
        self.norm = norm
        self.label_smoothing = label_smoothing
        self.lr = lr
        self.lr_decay = lr_decay
        self.lr_patience = lr_patience
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.epochs = epochs
        self.patience = patience
        self.eval_every = eval_every
        self.train_windows = train_windows
        self.window_stride = window_stride
        self.seed = seed
        self.device = device
        self.n_threads = n_threads
        self.dp_epsilon = dp_epsilon
        self.dp_delta = dp_delta
        self.dp_max_grad_norm = dp_max_grad_norm

    # ---- configuration ----------------------------------------------------------------
    def _config(self) -> CfgT:
        # config_class is the CfgT of the subclass (a ClassVar cannot name a type variable)
        return cast(CfgT, self.config_class(**self.get_params()).validate(type(self).__name__))

    def _make_net(self, n_items: int, cfg: CfgT) -> NetT:
        """A fresh network; a subclass with its own network type overrides this."""
        return cast(NetT, SASRecNet(n_items, cfg))

    def _strategy(self, cfg: CfgT, strategy: TrainStrategy | None) -> TrainStrategy | None:
        """The given strategy, or a :class:`~liveshelf.privacy.dp.DPStrategy` when ``dp_epsilon`` is set."""
        if cfg.dp_epsilon is None:
            return strategy
        if strategy is not None:
            raise ConfigError(
                f"{type(self).__name__} got both dp_epsilon={cfg.dp_epsilon} and a training "
                f"strategy ({type(strategy).__name__}); set dp_epsilon=None to use the strategy, "
                "or drop the strategy."
            )
        from liveshelf.privacy.dp import DPStrategy

        return DPStrategy(
            cfg.dp_epsilon, delta=cfg.dp_delta, max_grad_norm=cfg.dp_max_grad_norm, seed=cfg.seed
        )

    # ---- fit --------------------------------------------------------------------------
    def fit(
        self,
        data: TrainData,
        *,
        callbacks: list[Callback] | None = None,
        strategy: TrainStrategy | None = None,
    ) -> Self:
        """Train on ``data``; ``callbacks`` hook into the loop, ``strategy`` changes how steps are made
        (e.g. :class:`~liveshelf.privacy.dp.DPStrategy`; built from ``dp_epsilon`` when that is set)."""
        cfg = self._config()
        strategy = self._strategy(cfg, strategy)
        self._private = bool(strategy is not None and strategy.private)
        if len(data.sequences) != data.n_users:
            raise ConfigError(
                f"TrainData.sequences must hold one sequence per user ({data.n_users} users); "
                f"got {len(data.sequences)}. Build TrainData with aligned user_ids and sequences."
            )
        if data.n_items < 1:
            raise ConfigError(f"{type(self).__name__}.fit needs at least one item; TrainData has 0.")
        threads = torch.get_num_threads()
        torch.set_num_threads(cfg.n_threads)
        try:
            t0 = time.perf_counter()
            torch.manual_seed(cfg.seed)
            self._set_vocab(data)
            self._smoothing = float(cfg.label_smoothing)
            self._prepare(data)
            net = self._warm_started(self._make_net(data.n_items, cfg)).to(cfg.device)
            # private: one window per user, so the guarantee covers a user's whole (used) history
            windows = self._windows(
                data, dataclasses.replace(cfg, train_windows="last") if self._private else cfg
            )
            if not len(windows["tokens"]):
                raise ConfigError(
                    f"{type(self).__name__}.fit found no user with 2 or more training interactions; "
                    "nothing to learn the next item from. Pass longer sequences."
                )
            rng = np.random.default_rng(cfg.seed)
            opt = torch.optim.AdamW(self._param_groups(net, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay)
            evaluate = self._validator(data, cfg)
            stopper = (
                EarlyStopping("ndcg@10", patience=cfg.patience) if evaluate and not self._private else None
            )
            cbs: list[Callback] = [ProgressBar(cfg.epochs, desc=type(self).__name__)]
            cbs += [stopper] if stopper else []
            if stopper and cfg.lr_decay is not None:
                cbs.append(ReduceLROnPlateau("ndcg@10", factor=cfg.lr_decay, patience=cfg.lr_patience))
            cbs += list(callbacks or [])
            lengths = windows["lengths"]

            def make_batch(idx: np.ndarray) -> dict[str, Any]:
                return self._batch(windows, idx, int(lengths[idx].max(initial=1)), cfg)

            trainer = Trainer(
                net,
                opt,
                loss_fn=self._sample_loss if self._private else self._loss,
                batches=lambda epoch: self._batches(windows, cfg, rng),
                evaluate=evaluate,
                epochs=cfg.epochs,
                eval_every=cfg.eval_every,
                callbacks=cbs,
                eval_first=self.eval_first,
                strategy=strategy,
                n_samples=len(lengths),
                batch_size=cfg.batch_size,
                make_batch=make_batch,
            ).fit()
            net.eval()
            self.net_ = net
            self.history_ = trainer.history
            self.best_epoch_ = (
                stopper.best_epoch if stopper and stopper.best_state is not None else trainer.epoch
            )
            self.fit_seconds_ = time.perf_counter() - t0
            self.privacy_ = trainer.strategy_report if self._private else None
        finally:
            torch.set_num_threads(threads)
            self._private = False
        return self

    # ---- training outside fit (federated rounds, custom loops) -----------------------------
    def init_weights(self, data: TrainData) -> Self:
        """Set the vocabulary of ``data`` and a freshly initialised (seeded) network, without training.

        The starting point of training that happens elsewhere (a federated server builds the global
        model from the item catalogue: ``data`` may then hold no sequences)."""
        cfg = self._config()
        torch.manual_seed(cfg.seed)
        self._set_vocab(data)
        self._smoothing = float(cfg.label_smoothing)
        self._prepare(data)
        self.net_ = self._make_net(data.n_items, cfg).to(cfg.device).eval()
        self.history_, self.best_epoch_, self.fit_seconds_, self.privacy_ = [], 0, 0.0, None
        return self

    def get_weights(self) -> dict[str, np.ndarray]:
        """The network's state (parameters and buffers) by name, as float arrays (copies)."""
        self._check_fitted()
        return {k: v.detach().cpu().numpy().copy() for k, v in self.net_.state_dict().items()}

    def set_weights(self, weights: dict[str, np.ndarray], *, partial: bool = False) -> Self:
        """Load a state from :meth:`get_weights` (same class and vocabulary); names and shapes are checked.

        ``partial=True`` loads a subset of the names (e.g. only the trained parameters) and keeps the rest."""
        self._check_fitted()
        state = self.net_.state_dict()
        extra, missing = set(weights) - set(state), set(state) - set(weights)
        if extra or (missing and not partial):
            raise ConfigError(
                f"{type(self).__name__}.set_weights got arrays {sorted(extra or missing)[:5]} that do "
                "not match the network's state; the weights come from another model or configuration."
            )
        for k, v in weights.items():
            if tuple(np.shape(v)) != tuple(state[k].shape):
                raise ConfigError(
                    f"{type(self).__name__}.set_weights: {k!r} has shape {tuple(np.shape(v))}, the network "
                    f"{tuple(state[k].shape)}; the weights come from a model with another vocabulary or size."
                )
        state.update({k: torch.as_tensor(np.asarray(v), dtype=state[k].dtype) for k, v in weights.items()})
        self.net_.load_state_dict(state)
        return self

    def validate(self, data: TrainData) -> dict[str, float]:
        """Validation NDCG@10 / recall@10 of the current network on ``data.valid_targets`` ({} if none)."""
        self._check_fitted()
        cfg = self._config()
        evaluate = self._validator(data, cfg)
        if evaluate is None:
            return {}
        threads = torch.get_num_threads()
        torch.set_num_threads(cfg.n_threads)
        try:
            with torch.no_grad():
                return evaluate(self.net_.eval())
        finally:
            torch.set_num_threads(threads)

    # ---- abilities ----------------------------------------------------------------------
    def item_embeddings(self) -> np.ndarray:
        """``(n_items, hidden)`` float32: the learned item embedding rows in ``item_ids_`` order (no padding row)."""
        self._check_fitted()
        net = self.net_
        assert isinstance(net, SASRecNet), "a network without item_emb overrides item_embeddings()"
        with torch.no_grad():
            return net.item_emb.weight[1:].detach().float().cpu().numpy()

    def warm_start_from(self, parent: Any) -> bool:
        """Make every later ``fit`` start from ``parent``'s network weights (a fitted model of the same class).

        Parameters of equal shape are copied; item-embedding rows are matched by item id (new items
        keep their fresh initialisation). Returns False (and changes nothing) when ``parent`` is of
        another class or not fitted.
        """
        if type(parent) is not type(self):
            return False
        try:
            parent._check_fitted()
        except NotFittedError:
            return False
        state = {k: v.detach().clone() for k, v in parent.net_.state_dict().items()}
        self._warm_start = (state, {str(x): i for i, x in enumerate(parent.item_ids_)})
        return True

    def _warm_started(self, fresh: NetT) -> NetT:
        """``fresh`` (a new network for ``item_ids_``) with the warm-start parent's weights put in."""
        warm = self._warm_start
        if warm is None:
            return fresh
        parent_state, parent_pos = warm
        n_items = len(self.item_ids_)
        state = fresh.state_dict()
        rows = np.array([parent_pos.get(str(x), -1) for x in self.item_ids_], dtype=np.int64)
        for k, v in parent_state.items():
            if k not in state:
                continue
            if (
                "item_emb" in k
                and v.ndim == 2
                and state[k].shape[1:] == v.shape[1:]
                and v.shape[0] == len(parent_pos) + 1
                and state[k].shape[0] == n_items + 1
            ):
                new = state[k].clone()
                hit = np.flatnonzero(rows >= 0)
                new[torch.from_numpy(hit + 1)] = v[torch.from_numpy(rows[hit] + 1)]
                new[0] = v[0]
                state[k] = new
            elif state[k].shape == v.shape:
                state[k] = v
        fresh.load_state_dict(state)
        return fresh

    def _param_groups(self, net: NetT, cfg: CfgT) -> list[dict[str, Any]]:
        """Optimiser parameter groups (one group, the configured ``lr``, by default)."""
        return [{"params": list(net.parameters())}]

    def _prepare(self, data: TrainData) -> None:
        """Hook for subclasses: read side information before training."""

    def _windows(self, data: TrainData, cfg: CfgT) -> dict[str, np.ndarray]:
        """Left-padded training windows: ``tokens`` and next-item ``targets`` (W, L).

        ``targets`` is ``-1`` where there is nothing to predict (padding). With
        ``train_windows='all'`` a sequence longer than ``max_len + 1`` gives several
        windows, ending every ``cfg.stride`` items from its last one back to the first window
        that starts at the sequence's start; with ``'last'`` only the most recent ``max_len``
        targets are used. Overlapping windows (stride < max_len) show each target again with
        a longer left context, the way a model is asked at serving time: on long histories
        this is most of what a training pass learns (see ``benchmarks/peer``).
        """
        L = cfg.max_len
        stride = cfg.stride
        spans = []
        for u, seq in enumerate(data.sequences):
            end = len(seq)
            while end >= 2:
                spans.append((u, max(0, end - L - 1), end))
                if cfg.train_windows == "last" or end - L - 1 <= 0:
                    break
                end -= stride
        tokens = np.zeros((len(spans), L), dtype=np.int64)
        targets = np.full((len(spans), L), -1, dtype=np.int64)
        users = np.zeros(len(spans), dtype=np.int64)
        starts = np.zeros(len(spans), dtype=np.int64)
        for w, (u, s, e) in enumerate(spans):
            seq = np.asarray(data.sequences[u], dtype=np.int64)[s:e]
            n = len(seq) - 1
            tokens[w, L - n :] = seq[:-1] + 1
            targets[w, L - n :] = seq[1:]
            users[w], starts[w] = u, s
        return {
            "tokens": tokens,
            "targets": targets,
            "users": users,
            "starts": starts,
            "lengths": (tokens != 0).sum(1),
        }

    def _batches(self, windows: dict[str, np.ndarray], cfg: CfgT, rng: np.random.Generator):
        """Shuffled batches of windows of similar length (cheap: padding columns are cut).

        Windows are shuffled, sorted by length inside pools of ``BUCKET_POOL`` batches,
        cut into batches, and the batches are shuffled again.
        """
        lengths = windows["lengths"]
        order = rng.permutation(len(lengths))
        pool = BUCKET_POOL * cfg.batch_size
        batches = []
        for p in range(0, len(order), pool):
            chunk = order[p : p + pool]
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
            batches += [chunk[i : i + cfg.batch_size] for i in range(0, len(chunk), cfg.batch_size)]
        for b in rng.permutation(len(batches)):
            idx = batches[b]
            yield self._batch(windows, idx, int(lengths[idx].max()), cfg)

    def _batch(self, windows: dict[str, np.ndarray], idx: np.ndarray, T: int, cfg: CfgT) -> dict[str, Any]:
        return {
            "tokens": torch.from_numpy(windows["tokens"][idx, -T:]).to(cfg.device),  # (B, T)
            "targets": torch.from_numpy(windows["targets"][idx, -T:]).to(cfg.device),  # (B, T)
        }

    def _loss(self, net: NetT, batch: dict[str, Any]) -> torch.Tensor:
        h = net(batch["tokens"])  # (B, T, D)
        keep = batch["targets"] >= 0  # (B, T)
        logits = net.logits(h[keep])  # (N, I)
        return F.cross_entropy(logits, batch["targets"][keep], label_smoothing=self._smoothing)

    def _sample_loss(self, net: NetT, batch: dict[str, Any]) -> torch.Tensor:
        """The DP loss: mean over windows of each window's mean next-item loss (vmap-safe)."""
        logits = net.logits(net(batch["tokens"]))  # (B, T, I)
        return masked_cross_entropy(logits, batch["targets"], self._smoothing)

    # ---- validation -------------------------------------------------------------------
    def _validator(self, data: TrainData, cfg: CfgT):
        if data.valid_targets is None:
            return None
        targets = np.asarray(data.valid_targets, dtype=np.int64)
        users = np.flatnonzero((targets >= 0) & np.array([len(s) > 0 for s in data.sequences]))
        if not len(users):
            return None
        users = users[np.argsort([len(data.sequences[u]) for u in users], kind="stable")]  # less padding
        contexts = [self._valid_context(data, int(u)) for u in users]
        target = torch.from_numpy(targets[users])
        candidates = self._valid_candidates(data, users)

        def evaluate(net: NetT) -> dict[str, float]:
            ranks = []
            for i in range(0, len(contexts), SCORE_BATCH):
                scores = self._scores_tensor(net, contexts[i : i + SCORE_BATCH], cfg)  # (b, I)
                t = target[i : i + SCORE_BATCH].to(scores.device)
                ts = scores.gather(1, t[:, None])  # (b, 1)
                above = scores > ts  # (b, I)
                if candidates is not None:
                    above &= candidates[i : i + SCORE_BATCH].to(scores.device)
                ranks.append(above.sum(1).cpu())
            rank = torch.cat(ranks).double()
            hit = rank < 10
            return {
                "ndcg@10": float((hit / torch.log2(rank + 2)).mean()),
                "recall@10": float(hit.double().mean()),
            }

        return evaluate

    def _valid_context(self, data: TrainData, u: int) -> Context:
        return data.context(u)

    def _valid_candidates(self, data: TrainData, users: np.ndarray) -> torch.Tensor | None:
        """Optional ``(n_valid, I)`` mask of the items each validation target is ranked among."""
        return None

    # ---- scoring ----------------------------------------------------------------------
    def _context_tokens(self, contexts: list[Context], cfg_max_len: int) -> np.ndarray:
        """Left-padded tokens ``(B, T)`` of the last ``max_len`` items of each context."""
        n_items = len(self.item_ids_)
        seqs = []
        for c in contexts:
            items = np.asarray(c.items, dtype=np.int64)
            items = items[(items >= 0) & (items < n_items)][-cfg_max_len:]
            seqs.append(items)
        T = max(1, max(len(s) for s in seqs))
        tokens = np.zeros((len(seqs), T), dtype=np.int64)
        for b, s in enumerate(seqs):
            if len(s):
                tokens[b, T - len(s) :] = s + 1
        return tokens

    def _scores_tensor(self, net: NetT, contexts: list[Context], cfg: CfgT) -> torch.Tensor:
        tokens = torch.from_numpy(self._context_tokens(contexts, cfg.max_len)).to(cfg.device)
        h = net(tokens)[:, -1]  # (B, D)
        return net.logits(h)  # (B, I)

    def _score_all(self, contexts: list[Context]) -> np.ndarray:
        self._check_fitted()
        cfg = self._config()
        net = self.net_.to(cfg.device).eval()
        threads = torch.get_num_threads()
        torch.set_num_threads(cfg.n_threads)
        try:
            order = np.argsort([min(len(c.items), cfg.max_len) for c in contexts], kind="stable")
            out = np.zeros((len(contexts), self.n_items_), dtype=np.float32)
            with torch.no_grad():
                for i in range(0, len(contexts), SCORE_BATCH):
                    idx = order[i : i + SCORE_BATCH]  # similar lengths together: less padding
                    scores = self._scores_tensor(net, [contexts[j] for j in idx], cfg)
                    out[idx] = scores.float().cpu().numpy()
        finally:
            torch.set_num_threads(threads)
        return out

    # ---- persistence ------------------------------------------------------------------
    def save(self, path: Path | str) -> None:
        """Config, vocabulary and weights; plus ``privacy.json`` (achieved ε, δ, ...) for a DP model."""
        super().save(path)
        privacy = self.privacy_
        if privacy:
            (Path(path) / PRIVACY_FILE).write_text(json.dumps(privacy, sort_keys=True, indent=2))

    @classmethod
    def load(cls, path: Path | str) -> Self:
        model = super().load(path)
        pfile = Path(path) / PRIVACY_FILE
        model.privacy_ = json.loads(pfile.read_text()) if pfile.exists() else None
        return model

    def _arrays(self) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().numpy() for k, v in self.net_.state_dict().items()}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        cfg = self._config()
        net = self._make_net(len(self.item_ids_), cfg)
        net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()})
        self.net_ = net.to(cfg.device).eval()

    def _check_fitted(self) -> None:
        super()._check_fitted()
        if getattr(self, "net_", None) is None:
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. Call 'fit' first.")
