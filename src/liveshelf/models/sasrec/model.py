"""SASRec as a small causal transformer (Kang & McAuley, ICDM 2018), nanoGPT style.

Notation: B = batch, T = sequence length (<= max_len), D = hidden, H = heads, I = items.
Item ``i`` of the catalogue has token ``i + 1``; token 0 is padding. Sequences are
left-padded (the most recent item is at column ``T - 1``), but positions count from the
first real item, so an item has the same positional embedding whether it is seen while
training on a prefix or while scoring the full sequence (as in RecBole). Counting from
the end instead (Kang's original) measured the same on Amazon Scientific (test NDCG@10
0.0520 vs 0.0519, dropout 0.3).

The output layer is the item embedding itself (tied): ``score(i) = h_t · e_i``.

``norm='post'`` (default) is RecBole's layout: LayerNorm + dropout on the embedding sum,
a LayerNorm after each residual sum, no final LayerNorm. ``norm='pre'`` is GPT-2's. On
Amazon Scientific both reach the same test NDCG@10 (0.052), post-LN in half the epochs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from liveshelf.models.sasrec.config import SASRecConfig

#: LayerNorm epsilon (RecBole's 1e-12 behaves the same as torch's 1e-5 at these scales).
LN_EPS = 1e-12


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: SASRecConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.hidden, 3 * cfg.hidden)
        self.proj = nn.Linear(cfg.hidden, cfg.hidden)
        self.attn_dropout = cfg.dropout
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=2)  # 3 x (B, T, D)
        q, k, v = (
            z.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2) for z in (q, k, v)
        )  # (B, H, T, D/H)
        drop = self.attn_dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)  # (B, H, T, D/H)
        y = y.transpose(1, 2).contiguous().view(B, T, D)  # (B, T, D)
        return self.resid_drop(self.proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: SASRecConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(cfg.hidden, 4 * cfg.hidden)
        self.proj = nn.Linear(4 * cfg.hidden, cfg.hidden)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))  # (B, T, D)


class Block(nn.Module):
    """Transformer block, pre-LayerNorm (GPT-2) or post-LayerNorm (original Transformer, RecBole)."""

    def __init__(self, cfg: SASRecConfig) -> None:
        super().__init__()
        self.post = cfg.norm == "post"
        self.ln_1 = nn.LayerNorm(cfg.hidden, eps=LN_EPS)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.hidden, eps=LN_EPS)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.post:
            x = self.ln_1(x + self.attn(x, mask))  # (B, T, D)
            return self.ln_2(x + self.mlp(x))  # (B, T, D)
        x = x + self.attn(self.ln_1(x), mask)  # (B, T, D)
        x = x + self.mlp(self.ln_2(x))  # (B, T, D)
        return x


class SequenceNet(nn.Module):
    """What :class:`~liveshelf.models.sasrec.SASRec`'s training and scoring loops need of a network.

    Called on left-padded ``tokens (B, T)`` it returns hidden states ``(B, T, D)``; ``logits(h)``
    scores every item for hidden states ``(..., D)`` -> ``(..., I)``.
    """

    def logits(self, h: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class SASRecNet(SequenceNet):
    def __init__(self, n_items: int, cfg: SASRecConfig) -> None:
        super().__init__()
        self.n_items = n_items
        self.max_len = cfg.max_len
        self.item_emb = nn.Embedding(n_items + 1, cfg.hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.hidden)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layers)])
        # pre-LN: a final LayerNorm on the output; post-LN: a LayerNorm on the input embedding
        self.ln_f = nn.LayerNorm(cfg.hidden, eps=LN_EPS)
        self.post = cfg.norm == "post"
        self.apply(self._init_weights)
        if not self.post:
            for name, p in self.named_parameters():  # GPT-2 scaled init of residual projections
                if name.endswith("proj.weight"):
                    nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layers))

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Hidden states ``(B, T, D)`` of left-padded ``tokens`` ``(B, T)`` (0 = padding)."""
        pos = ((tokens != 0).cumsum(1) - 1).clamp(min=0)  # (B, T) index from the first real item
        x = self.item_emb(tokens) + self.pos_emb(pos)  # (B, T, D)
        x = self.drop(self.ln_f(x) if self.post else x)
        mask = attention_mask(tokens)  # (B, 1, T, T)
        for block in self.blocks:
            x = block(x, mask)
        return x if self.post else self.ln_f(x)  # (B, T, D)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Scores of every item for hidden states ``(..., D)`` -> ``(..., I)``."""
        return h @ self.item_emb.weight[1:].T


def attention_mask(tokens: torch.Tensor) -> torch.Tensor:
    """Boolean mask ``(B, 1, T, T)``: query t sees real keys <= t, and always itself.

    Seeing itself keeps padded query rows finite; their outputs are never used.
    """
    T = tokens.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=tokens.device).tril()  # (T, T)
    real = (tokens != 0)[:, None, None, :]  # (B, 1, 1, T)
    eye = torch.eye(T, dtype=torch.bool, device=tokens.device)
    return (causal & real) | eye  # (B, 1, T, T)
