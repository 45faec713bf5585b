"""The text-aware sequential network (UniSRec-style), nanoGPT style.

Notation: B = batch, T = sequence length (<= max_len), D = hidden, I = items,
E = experts, d = width of the frozen text vectors. Tokens follow SASRec: item ``i`` is
token ``i + 1``, token 0 is padding, sequences are left-padded.

Each item's vector is computed from its frozen text embedding ``x`` (a buffer, saved with
the weights) by a mixture of parametric-whitening experts (Hou et al., UniSRec, KDD 2022)::

    v_i = sum_e g_e(x_i) * (drop(x_i) - b_e) W_e,     g(x) = softmax(x G)

plus, with ``use_id``, a learned ID vector. The ID part is zero for items without training
events, so an item never seen in training is scored by its text alone; in training a
random ``id_dropout`` share of the items also loses it for the step (rescaled), so the text
pathway learns to stand alone. The same vectors feed the causal transformer (SASRec's
blocks) and score the output: ``score(i) = cos(h_t, v_i) / temperature`` (or ``h_t · v_i``
without a temperature).

Other modalities (``TrainData.item_vectors``: image, video, audio or a platform's own text
vectors) each get their own adaptor and are fused with the text per item by a gated mixture
(:class:`ModalityFusion`); an item without a modality has it masked out of its mixture.

``whiten=True`` first decorrelates the text vectors once (catalogue mean removed, ZCA with
eigenvalue shrinkage; mean and matrix kept as buffers so ``add_items`` applies the same
map). Off by default: on Amazon Scientific (MiniLM vectors) it slowed learning (validation
NDCG@10 after 3 epochs 0.022 against 0.032 without).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from liveshelf.models.sasrec.model import Block, SequenceNet, attention_mask
from liveshelf.models.textseq.config import TextSeqConfig

#: Eigenvalue shrinkage of the fixed whitening of the text vectors (x mean eigenvalue).
WHITEN_SHRINK = 0.1


class MoEAdaptor(nn.Module):
    """``n_experts`` parametric-whitening experts ``(drop(x) - b_e) W_e`` mixed by a softmax gate.

    The experts run as one matrix product: ``x W - b_e W_e`` with ``W = [W_1 .. W_E]``
    (one dropout mask shared by the experts).
    """

    def __init__(self, d_in: int, d_out: int, n_experts: int, dropout: float) -> None:
        super().__init__()
        self.n_experts, self.d_out = n_experts, d_out
        self.drop = nn.Dropout(dropout)
        self.bias = nn.Parameter(torch.zeros(n_experts, d_in))  # whitening centres b_e
        self.weight = nn.Parameter(torch.randn(d_in, n_experts * d_out) * 0.02)  # [W_1 .. W_E]
        self.gate = nn.Parameter(torch.zeros(d_in, n_experts))  # uniform mixture at start

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        E, D = self.n_experts, self.d_out
        gates = torch.softmax(x @ self.gate, dim=-1)  # (..., E)
        w = self.weight.view(-1, E, D)  # (d, E, D)
        shift = torch.einsum("ed,dek->ek", self.bias, w)  # (E, D): b_e W_e
        out = (self.drop(x) @ self.weight).unflatten(-1, (E, D)) - shift  # (..., E, D)
        return (gates.unsqueeze(-1) * out).sum(dim=-2)  # (..., D)


def whitening(x: torch.Tensor, shrink: float = WHITEN_SHRINK) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``(d,)`` and ZCA matrix ``(d, d)`` that decorrelate the rows of ``x`` ``(I, d)``.

    Eigenvalues are shrunk by ``shrink`` x their mean (few items or a rank-deficient
    covariance stay finite) and the result is scaled so whitened rows have norm ~1.
    """
    mean = x.mean(0)  # (d,)
    xc = (x - mean).double()  # (I, d)
    cov = xc.T @ xc / max(len(x) - 1, 1)  # (d, d)
    lam, u = torch.linalg.eigh(cov)
    lam = lam.clamp(min=0)
    lam = lam + shrink * lam.mean().clamp(min=1e-12)
    w = (u * lam.rsqrt()) @ u.T / math.sqrt(x.shape[1])  # (d, d)
    return mean, w.float()


class ModalityFusion(nn.Module):
    """Fuse each item's adapted text vector with its other modalities (image, video, audio, ...).

    Modality ``m`` has its own :class:`MoEAdaptor` ``d_m -> D``; a gate scores every available
    modality of an item, ``s_m(i) = a_m . v_m(i) + c_m`` (text included), a softmax over the
    modalities the item has (missing ones are masked) weighs them, and the item's vector is the
    weighted sum. At the start all gates are 0: an equal mixture. A modality that carries no
    signal can be turned down per item (its gate) or as a whole (its bias ``c_m``).
    """

    def __init__(self, dims: dict[str, int], d_out: int, n_experts: int, dropout: float) -> None:
        super().__init__()
        self.names = list(dims)
        self.adaptors = nn.ModuleDict({m: MoEAdaptor(d, d_out, n_experts, dropout) for m, d in dims.items()})
        self.gate = nn.Parameter(torch.zeros(len(dims) + 1, d_out))  # a_text, a_m ...
        self.gate_bias = nn.Parameter(torch.zeros(len(dims) + 1))  # c_text, c_m ...

    def mix(
        self, text: torch.Tensor, inputs: list[torch.Tensor], masks: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Adapted vectors ``(I, M + 1, D)`` (text first), their weights ``(I, M + 1)`` and which an item has."""
        vs = [text] + [self.adaptors[m](x) for m, x in zip(self.names, inputs, strict=True)]
        v = torch.stack(vs, dim=1)  # (I, M + 1, D)
        score = (v * self.gate).sum(-1) + self.gate_bias  # (I, M + 1)
        have = torch.stack([torch.ones_like(masks[0])] + masks, dim=1) > 0  # (I, M + 1)
        weights = torch.softmax(score.masked_fill(~have, float("-inf")), dim=1)  # text is always there
        return v, weights, have

    def forward(
        self, text: torch.Tensor, inputs: list[torch.Tensor], masks: list[torch.Tensor]
    ) -> torch.Tensor:
        v, weights, _ = self.mix(text, inputs, masks)
        return (weights.unsqueeze(-1) * v).sum(dim=1)  # (I, D)

    @torch.no_grad()
    def mean_weights(self, text: torch.Tensor, inputs: list[torch.Tensor], masks: list[torch.Tensor]) -> dict:
        """The average gate weight of each modality over the items that have it (diagnostics)."""
        _, w, have = self.mix(text, inputs, masks)
        names = ["text", *self.names]
        return {n: float(w[have[:, k], k].mean()) if have[:, k].any() else 0.0 for k, n in enumerate(names)}


class TextSeqNet(SequenceNet):
    # buffers (register_buffer): the whitening, the frozen text vectors (I, d) and the seen flags (I,)
    text_mean: torch.Tensor
    whiten: torch.Tensor
    text_emb: torch.Tensor
    seen: torch.Tensor

    def __init__(
        self,
        text_emb: torch.Tensor,
        seen: torch.Tensor,
        cfg: TextSeqConfig,
        modalities: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> None:
        super().__init__()
        n_items, d_text = text_emb.shape
        self.max_len = cfg.max_len
        self.temperature = float(cfg.temperature) if cfg.temperature else None
        mean, whiten = whitening(text_emb.float()) if cfg.whiten else (torch.zeros(d_text), torch.eye(d_text))
        self.register_buffer("text_mean", mean)  # (d,)
        self.register_buffer("whiten", whiten)  # (d, d)
        self.register_buffer("text_emb", ((text_emb.float() - mean) @ whiten).contiguous())  # (I, d), frozen
        self.register_buffer("seen", seen.float().contiguous())  # (I,), 1 = has training events
        self.adaptor = MoEAdaptor(d_text, cfg.hidden, cfg.n_experts, cfg.adaptor_dropout)
        # other modalities: (I, d_m) vectors (0 where missing) and (I,) masks, as buffers
        self.modalities = list(modalities or {})
        for m, (x, mask) in (modalities or {}).items():
            self.register_buffer(f"modal_emb_{m}", x.float().contiguous())
            self.register_buffer(f"modal_mask_{m}", mask.float().contiguous())
        self.fusion = (
            ModalityFusion(
                {m: int(x.shape[1]) for m, (x, _) in (modalities or {}).items()},
                cfg.hidden,
                cfg.n_experts,
                cfg.adaptor_dropout,
            )
            if modalities
            else None
        )
        self.id_emb = nn.Embedding(n_items, cfg.hidden) if cfg.use_id else None
        self.id_dropout = float(cfg.id_dropout)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.hidden)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layers)])
        self.ln_f = nn.LayerNorm(cfg.hidden)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2 scaled init of residual projections
            if name.endswith("proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layers))

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    @property
    def n_items(self) -> int:
        return int(self.text_emb.shape[0])

    def item_vectors(self) -> torch.Tensor:
        """Every item's vector ``(I, D)``: adapted text (+ ID part of items seen in training)."""
        v = self.adaptor(self.text_emb)  # (I, D)
        if self.fusion is not None:
            v = self.fusion(v, *self._modal_inputs())
        if self.id_emb is not None:
            keep = self.seen[:, None]  # (I, 1)
            if self.training and self.id_dropout > 0:  # whole ID vectors off: the text must carry them
                keep = F.dropout(keep, self.id_dropout, training=True)
            v = v + self.id_emb.weight * keep  # (I, D)
        return v

    def _modal_inputs(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        inputs = [getattr(self, f"modal_emb_{m}") for m in self.modalities]
        return inputs, [getattr(self, f"modal_mask_{m}") for m in self.modalities]

    def modality_weights(self) -> dict[str, float]:
        """Mean fusion weight per modality over the items that have it (``{}`` for text only)."""
        if self.fusion is None:
            return {}
        return self.fusion.mean_weights(self.adaptor(self.text_emb), *self._modal_inputs())

    def forward(self, tokens: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states ``(B, T, D)`` of left-padded ``tokens`` ``(B, T)`` (0 = padding)."""
        items = self.item_vectors() if items is None else items  # (I, D)
        table = F.pad(items, (0, 0, 1, 0))  # (I + 1, D), row 0 = padding
        B, T = tokens.shape
        pos = torch.arange(self.max_len - T, self.max_len, device=tokens.device)  # (T,)
        x = self.drop(table[tokens] + self.pos_emb(pos))  # (B, T, D)
        mask = attention_mask(tokens)  # (B, 1, T, T)
        for block in self.blocks:
            x = block(x, mask)
        return self.ln_f(x)  # (B, T, D)

    def logits(self, h: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of every item for hidden states ``(..., D)`` -> ``(..., I)``."""
        items = self.item_vectors() if items is None else items  # (I, D)
        if self.temperature is None:
            return h @ items.T
        return F.normalize(h, dim=-1) @ F.normalize(items, dim=-1).T / self.temperature

    @torch.no_grad()
    def add_items(self, text_emb: torch.Tensor) -> None:
        """Append items (raw text vectors ``(n, d)``, no training events): text only, zero ID part."""
        text_emb = (text_emb.to(self.text_emb) - self.text_mean) @ self.whiten
        n = len(text_emb)
        self.text_emb = torch.cat([self.text_emb, text_emb])
        self.seen = torch.cat([self.seen, self.seen.new_zeros(n)])
        for m in self.modalities:  # new items have no other modality yet: masked
            x, mask = getattr(self, f"modal_emb_{m}"), getattr(self, f"modal_mask_{m}")
            setattr(self, f"modal_emb_{m}", torch.cat([x, x.new_zeros(n, x.shape[1])]))
            setattr(self, f"modal_mask_{m}", torch.cat([mask, mask.new_zeros(n)]))
        if self.id_emb is not None:
            weight = torch.cat(
                [self.id_emb.weight, self.id_emb.weight.new_zeros(n, self.id_emb.embedding_dim)]
            )
            self.id_emb = nn.Embedding.from_pretrained(weight, freeze=False)
