"""Hyper-parameters of :class:`~liveshelf.models.textseq.TextSeq`, validated in one place."""

from __future__ import annotations

from dataclasses import dataclass

from liveshelf.errors import check_param
from liveshelf.models.sasrec.config import SASRecConfig


@dataclass
class TextSeqConfig(SASRecConfig):
    """SASRec settings plus the text pathway (UniSRec-style adaptor) and ID fusion.

    ``n_experts`` parametric-whitening experts mixed by a softmax gate map the frozen
    text vectors to ``hidden``; ``adaptor_dropout`` drops text features before whitening.
    ``temperature`` > 0: logits are cosine similarities / temperature (UniSRec); ``None``
    (or 0): plain dot products. ``use_id`` adds a learned ID embedding to each item's
    vector (transductive); items without training events keep a zero ID part, and in
    training a random ``id_dropout`` share of the items loses its ID part for the step.
    ``mask_unseen`` leaves items without training events out of the training softmax.
    ``whiten`` decorrelates the text vectors once (fixed ZCA, kept with the weights) before
    the adaptor. ``encoder`` is the text model directory (None = all-MiniLM-L6-v2), ``cache_dir`` the
    embedding cache (None = ``<liveshelf home>/cache/text``); both are used in ``fit``
    only, never at load time. ``modalities``: which of ``TrainData.item_vectors`` (per-item image,
    video, audio ... vectors) are fused with the text: ``"all"``, ``"none"`` (text only) or
    comma-separated names (``"image,video"``).
    """

    hidden: int = 64
    n_experts: int = 8
    adaptor_dropout: float = 0.2
    temperature: float | None = 0.07
    use_id: bool = True
    id_dropout: float = 0.3
    whiten: bool = False
    mask_unseen: bool = True
    encoder: str | None = None
    cache_dir: str | None = None
    modalities: str = "all"

    def validate(self, where: str = "TextSeq") -> TextSeqConfig:
        super().validate(where)
        v: object = self.n_experts
        check_param(
            "n_experts", v, isinstance(v, int) and not isinstance(v, bool) and v >= 1, "an int >= 1", where
        )
        v = self.adaptor_dropout
        check_param(
            "adaptor_dropout", v, isinstance(v, (int, float)) and 0 <= v < 1, "a float in [0, 1)", where
        )
        v = self.temperature
        check_param(
            "temperature",
            v,
            v is None or (isinstance(v, (int, float)) and v >= 0),
            "None or a float >= 0 (0 or None = unnormalised dot products)",
            where,
        )
        check_param("use_id", self.use_id, isinstance(self.use_id, bool), "a bool", where)
        v = self.id_dropout
        check_param("id_dropout", v, isinstance(v, (int, float)) and 0 <= v < 1, "a float in [0, 1)", where)
        check_param("whiten", self.whiten, isinstance(self.whiten, bool), "a bool", where)
        check_param("mask_unseen", self.mask_unseen, isinstance(self.mask_unseen, bool), "a bool", where)
        for name in ("encoder", "cache_dir"):
            v = getattr(self, name)
            check_param(name, v, v is None or isinstance(v, str), "None or a directory path (str)", where)
        check_param(
            "modalities",
            self.modalities,
            isinstance(self.modalities, str) and bool(self.modalities.strip()),
            "'all', 'none' or comma-separated modality names such as 'image,video'",
            where,
        )
        return self
