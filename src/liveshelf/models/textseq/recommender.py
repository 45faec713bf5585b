"""The TextSeq recommender: frozen item-text vectors -> MoE adaptor -> SASRec transformer.

Training, windows, early stopping and batched scoring are SASRec's
(:class:`~liveshelf.models.sasrec.SASRec`); this class adds the text vectors, the
network of :mod:`liveshelf.models.textseq.model` and a loss that computes the item
vectors once per step.

Text: ``fit`` encodes ``TrainData.item_text`` with :class:`~liveshelf.text.encoder.TextEncoder`
(``encoder`` directory, None = all-MiniLM-L6-v2) through its on-disk cache (``cache_dir``,
None = ``<liveshelf home>/cache/text``), so a refit costs no encoder call. Precomputed
vectors may be passed instead: ``fit(data, item_vectors=X)``. The vectors are saved in
``weights.safetensors``; ``load`` and ``score`` never open the encoder.

Inductive use: every catalogue item has a text vector, so an item without training events
is scored by its text (its ID part, with ``use_id``, is zero). With ``mask_unseen`` (default)
such items are also left out of the training softmax: they are never positives, and as
negatives only they would teach the adaptor that their texts are bad (on the cold-start
benchmark, without the mask, hidden items were barely recommended). ``add_items`` appends new
items after fitting, from texts (encoded with the configured encoder) or vectors.

Other modalities: every per-item vector set in ``TrainData.item_vectors`` (image, video, audio,
a platform's own text vectors; ``modalities`` picks which) gets its own adaptor and a gated
per-item mixture with the text vector (see :class:`~liveshelf.models.textseq.model.ModalityFusion`);
items without a modality have it masked, items added later have none.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from liveshelf.core.trainer import Callback, TrainStrategy
from liveshelf.errors import ConfigError
from liveshelf.models.base import TrainData
from liveshelf.models.sasrec.config import SASRecConfig
from liveshelf.models.sasrec.recommender import SASRec
from liveshelf.models.textseq.config import TextSeqConfig
from liveshelf.models.textseq.model import TextSeqNet


def default_cache_dir() -> Path:
    """``<liveshelf home>/cache/text``: where item-text vectors are cached between fits."""
    from liveshelf.config import get_settings

    return Path(get_settings().home) / "cache" / "text"


def encode_texts(
    texts: Sequence[str], encoder: str | None = None, cache_dir: str | Path | None = None, n_threads: int = 2
) -> np.ndarray:
    """Text vectors ``(N, d)`` float32 of ``texts`` with a cached :class:`TextEncoder`."""
    from liveshelf.text.encoder import TextEncoder

    threads = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        enc = TextEncoder(encoder, cache_dir=default_cache_dir() if cache_dir is None else cache_dir)
        return enc.encode(list(texts))
    finally:
        torch.set_num_threads(threads)


class TextSeq(SASRec[TextSeqNet, TextSeqConfig]):
    """Text-aware sequential recommender (UniSRec-style), inductive over item texts.

    Learned state: SASRec's (``net_``, ``history_``, ``best_epoch_``, ``fit_seconds_``);
    ``net_.text_emb`` holds the frozen text vectors, ``net_.seen`` which items had
    training events.
    """

    name: ClassVar[str] = "textseq"
    config_class: ClassVar[type[SASRecConfig]] = TextSeqConfig

    def __init__(
        self,
        hidden: int = 64,
        n_layers: int = 2,
        n_heads: int = 2,
        max_len: int = 50,
        dropout: float = 0.5,
        lr: float = 1e-3,
        lr_decay: float | None = None,
        lr_patience: int = 3,
        weight_decay: float = 0.0,
        batch_size: int = 256,
        epochs: int = 200,
        patience: int = 10,
        eval_every: int = 1,
        train_windows: str = "all",
        window_stride: int | None = None,
        seed: int = 0,
        device: str = "cpu",
        n_threads: int = 2,
        n_experts: int = 8,
        adaptor_dropout: float = 0.2,
        temperature: float | None = 0.07,
        use_id: bool = True,
        id_dropout: float = 0.3,
        whiten: bool = False,
        mask_unseen: bool = True,
        encoder: str | None = None,
        cache_dir: str | None = None,
        modalities: str = "all",
    ) -> None:
        super().__init__(
            hidden=hidden,
            n_layers=n_layers,
            n_heads=n_heads,
            max_len=max_len,
            dropout=dropout,
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
        )
        self.n_experts = n_experts
        self.adaptor_dropout = adaptor_dropout
        self.temperature = temperature
        self.use_id = use_id
        self.id_dropout = id_dropout
        self.whiten = whiten
        self.mask_unseen = mask_unseen
        self.encoder = encoder
        self.cache_dir = cache_dir
        self.modalities = modalities

    # ---- fit --------------------------------------------------------------------------
    def fit(
        self,
        data: TrainData,
        *,
        callbacks: list[Callback] | None = None,
        strategy: TrainStrategy | None = None,
        item_vectors: np.ndarray | None = None,
    ) -> TextSeq:
        """Encode the item texts (or take ``item_vectors`` ``(n_items, d)``) and train.

        ``strategy`` changes how steps are made (e.g. data-parallel); TextSeq has no per-example
        loss, so a private (differentially private) strategy is refused."""
        cfg = self._config()
        if strategy is not None and strategy.private:
            raise ConfigError(
                f"TextSeq cannot train with the private strategy {type(strategy).__name__}: its loss "
                "is not computed per example. Use SASRec or LiveSASRec (dp_epsilon=...) for "
                "differentially private training."
            )
        self._side_inputs(data, item_vectors, cfg)
        try:
            return super().fit(data, callbacks=callbacks, strategy=strategy)
        finally:
            del self._vectors, self._modal

    def init_weights(self, data: TrainData, item_vectors: np.ndarray | None = None) -> TextSeq:
        """SASRec's :meth:`~SASRec.init_weights` with the item texts encoded (or ``item_vectors``)."""
        self._side_inputs(data, item_vectors, self._config())
        try:
            return super().init_weights(data)
        finally:
            del self._vectors, self._modal

    def set_weights(self, weights: dict[str, np.ndarray], *, partial: bool = False) -> TextSeq:
        """SASRec's :meth:`~SASRec.set_weights`; an averaged ``seen`` flag (FedAvg) counts as seen when > 0."""
        weights = dict(weights)
        if "seen" in weights:
            weights["seen"] = (np.asarray(weights["seen"]) > 0).astype(np.float32)
        return super().set_weights(weights, partial=partial)

    def _warm_started(self, fresh: TextSeqNet) -> TextSeqNet:
        """An item seen by the parent (or in this fit's data) counts as seen."""
        own = fresh.seen.clone()
        net = super()._warm_started(fresh)
        net.seen = torch.maximum(own, (net.seen > 0).to(own.dtype))
        return net

    def _side_inputs(self, data: TrainData, item_vectors: np.ndarray | None, cfg: TextSeqConfig) -> None:
        """The frozen inputs of the network: item text vectors and the modality vectors to fuse."""
        if item_vectors is None:
            if data.item_text is None:
                raise ConfigError(
                    "TextSeq.fit needs item texts: TrainData.item_text is None. Load a data set with "
                    "item titles/descriptions (an items frame) or pass item_vectors=(n_items, d) array."
                )
            if len(data.item_text) != data.n_items:
                raise ConfigError(
                    f"TrainData.item_text must hold one text per item ({data.n_items}). "
                    f"Got {len(data.item_text)} instead."
                )
            item_vectors = encode_texts(data.item_text, cfg.encoder, cfg.cache_dir, cfg.n_threads)
        self._vectors = self._check_vectors(item_vectors, data.n_items, "item_vectors")
        self._modal = self._modal_vectors(data, cfg)

    @staticmethod
    def _modal_vectors(data: TrainData, cfg: TextSeqConfig) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """The modalities to fuse: name -> (vectors with 0 for missing rows, 1/0 mask), item order."""
        given = data.item_vectors or {}
        wanted = cfg.modalities.strip()
        if wanted == "none":
            return {}
        # sorted: the fusion gate's rows follow this order, and a loaded model rebuilds it from sorted keys
        names = (
            sorted(given) if wanted == "all" else sorted({m.strip() for m in wanted.split(",") if m.strip()})
        )
        unknown = [m for m in names if m not in given]
        if unknown:
            raise ConfigError(
                f"The 'modalities' parameter of TextSeq names {unknown[0]!r}, which TrainData.item_vectors "
                f"does not hold (it has {sorted(given) or 'none'}). Ingest it with `liveshelf ingest "
                "embeddings FILE --modality NAME` or pass modalities='all' / 'none'."
            )
        out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for m in names:
            x = np.asarray(given[m], dtype=np.float32)
            if x.ndim != 2 or len(x) != data.n_items:
                raise ConfigError(
                    f"TrainData.item_vectors[{m!r}] must have shape ({data.n_items}, d), one row per item "
                    f"(all-NaN rows for items without a vector). Got {x.shape} instead."
                )
            have: np.ndarray = np.asarray(np.isfinite(x).all(axis=1))
            if have.any():  # a modality nobody has is left out
                out[m] = (np.where(have[:, None], x, 0.0).astype(np.float32), have.astype(np.float32))
        return out

    def modality_weights(self) -> dict[str, float]:
        """Mean fusion weight of text and each modality over the items that have it (``{}``: text only)."""
        self._check_fitted()
        return self.net_.modality_weights()

    @staticmethod
    def _check_vectors(vectors: Any, n: int, name: str, dim: int | None = None) -> np.ndarray:
        v = np.asarray(vectors, dtype=np.float32)
        want = f"({n}, {dim if dim else 'd'})"
        if v.ndim != 2 or len(v) != n or (dim is not None and v.shape[1] != dim):
            raise ConfigError(
                f"The '{name}' parameter of TextSeq must be a float array of shape {want}. "
                f"Got shape {v.shape} instead."
            )
        if not np.isfinite(v).all():
            raise ConfigError(
                f"The '{name}' parameter of TextSeq must be finite; it holds NaN or inf. Re-encode the texts."
            )
        return v

    def _prepare(self, data: TrainData) -> None:
        seen = np.zeros(data.n_items, dtype=np.float32)
        if data.sequences:
            seen[np.concatenate([np.asarray(s, dtype=np.int64) for s in data.sequences])] = 1.0
        self._seen = seen

    def _make_net(self, n_items: int, cfg: TextSeqConfig) -> TextSeqNet:
        modal = {m: (torch.from_numpy(x), torch.from_numpy(k)) for m, (x, k) in self._modal.items()}
        return TextSeqNet(torch.from_numpy(self._vectors), torch.from_numpy(self._seen), cfg, modal)

    def _loss(self, net: TextSeqNet, batch: dict[str, Any]) -> torch.Tensor:
        items = net.item_vectors()  # (I, D), once per step
        h = net(batch["tokens"], items)  # (B, T, D)
        keep = batch["targets"] >= 0  # (B, T)
        logits = net.logits(h[keep], items)  # (N, I)
        if self.mask_unseen:  # items without training events: never positives, so no negatives either
            logits = logits.masked_fill(net.seen == 0, float("-inf"))
        return F.cross_entropy(logits, batch["targets"][keep])

    def _scores_tensor(self, net: TextSeqNet, contexts, cfg: SASRecConfig) -> torch.Tensor:
        tokens = torch.from_numpy(self._context_tokens(contexts, cfg.max_len)).to(cfg.device)
        items = net.item_vectors()  # (I, D)
        h = net(tokens, items)[:, -1]  # (B, D)
        return net.logits(h, items)  # (B, I)

    def item_embeddings(self) -> np.ndarray:
        """``(n_items, hidden)`` float32: each item's vector (adapted text + ID part), ``item_ids_`` order."""
        self._check_fitted()
        net = self.net_.eval()
        with torch.no_grad():
            return net.item_vectors().float().cpu().numpy()

    # ---- inductive --------------------------------------------------------------------
    def add_items(
        self, ids: Sequence[str], texts: Sequence[str] | None = None, vectors: np.ndarray | None = None
    ) -> TextSeq:
        """Append new catalogue items (no training events) and score them by their text.

        Give ``texts`` (encoded with the configured ``encoder``, through the cache) or
        ``vectors`` ``(len(ids), d)`` in the space of the training vectors.
        """
        self._check_fitted()
        ids = [str(x) for x in ids]
        known = set(str(x) for x in self.item_ids_)
        dup = [x for x in ids if x in known] or [x for i, x in enumerate(ids) if x in ids[:i]]
        if dup:
            raise ConfigError(
                f"The 'ids' parameter of TextSeq.add_items must hold new, distinct item ids. "
                f"Got {dup[0]!r}, which is already in the catalogue or listed twice."
            )
        if (texts is None) == (vectors is None):
            raise ConfigError(
                "TextSeq.add_items needs exactly one of 'texts' or 'vectors'. "
                f"Got {'both' if texts is not None else 'neither'}."
            )
        if texts is not None:
            if isinstance(texts, str) or len(texts) != len(ids):
                raise ConfigError(
                    f"The 'texts' parameter of TextSeq.add_items must be a list of {len(ids)} "
                    f"strings, one per id. Got {type(texts).__name__} of length {len(texts)}."
                )
            cfg = self._config()
            vectors = encode_texts(texts, cfg.encoder, cfg.cache_dir, cfg.n_threads)
        dim = int(self.net_.text_emb.shape[1])
        v = self._check_vectors(vectors, len(ids), "vectors", dim)
        self.net_.add_items(torch.from_numpy(v))
        self.item_ids_ = np.concatenate([self.item_ids_, np.asarray(ids, dtype=object)])
        return self

    # ---- persistence ------------------------------------------------------------------
    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        cfg = self._config()
        self._vectors, self._seen = np.array(arrays["text_emb"]), np.array(arrays["seen"])
        names = sorted(k.removeprefix("modal_emb_") for k in arrays if k.startswith("modal_emb_"))
        self._modal = {
            m: (np.array(arrays[f"modal_emb_{m}"]), np.array(arrays[f"modal_mask_{m}"])) for m in names
        }
        try:
            net = self._make_net(len(self.item_ids_), cfg)
        finally:
            del self._vectors, self._seen, self._modal
        net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()})
        self.net_ = net.to(cfg.device).eval()
