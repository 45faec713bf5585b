"""Hashed text embeddings without model weights (sklearn's ``HashingVectorizer``, murmurhash3), once.

- :func:`hashed_tfidf` — serving's content index (``content_embedding="hashed"``, and ``"auto"`` for a
  model without item embeddings): :func:`text_tokens` (latin words, CJK characters and pairs) hashed
  into ``dim`` columns, sublinear TF-IDF over the catalogue;
- :class:`CharHashEncoder` — the profile builder's default item-text vectors: character 1-2-grams
  hashed into ``dim`` signed columns, L2-normalised.

(:class:`liveshelf.text.chinese.HashedTfidfEncoder`, the sentence encoder's fallback, is another model:
jieba words, crc32 hashing and an LSA basis.)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from liveshelf.errors import check_param

_TOKEN = re.compile(r"[\u3400-\u9fff]|[a-z0-9]+")


def text_tokens(text: str) -> list[str]:
    """Latin words / numbers, single CJK characters and adjacent CJK pairs (no segmenter needed)."""
    toks = _TOKEN.findall(text.lower())
    pairs = [
        a + b
        for a, b in zip(toks, toks[1:], strict=False)
        if len(a) == 1 and len(b) == 1 and a >= "\u3400" and b >= "\u3400"
    ]
    return toks + pairs


def hash_counts(
    texts: Iterable[str],
    dim: int,
    *,
    analyzer: str | Callable[[str], list[str]],
    ngram_range: tuple[int, int] = (1, 1),
    alternate_sign: bool,
    norm: str | None,
) -> Any:
    """The sparse ``(N, dim)`` hashed features of ``texts`` (sklearn ``HashingVectorizer``, lower-cased)."""
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(
        n_features=dim,
        analyzer=analyzer,
        ngram_range=ngram_range,
        alternate_sign=alternate_sign,
        norm=norm,
        lowercase=True,
    ).transform(list(texts))


def hashed_tfidf(texts: Sequence[str], dim: int) -> np.ndarray:
    """Cheap content embedding: :func:`text_tokens` hashed into ``dim`` columns, TF-IDF weighted."""
    from sklearn.feature_extraction.text import TfidfTransformer

    if not texts:
        return np.zeros((0, dim), dtype=np.float32)
    counts = hash_counts(texts, dim, analyzer=text_tokens, alternate_sign=False, norm=None)
    return TfidfTransformer(sublinear_tf=True).fit_transform(counts).astype(np.float32).toarray()


class CharHashEncoder:
    """Item-text embedding: hashed character 1-2-grams (no weights, no fit), L2-normalised.

    Reads Chinese and English alike and costs about a millisecond per hundred titles; pass
    ``encoder=TextEncoder(...)`` to ``ProfileBuilder`` for sentence-model vectors instead.
    """

    def __init__(self, dim: int = 128) -> None:
        check_param("dim", dim, isinstance(dim, int) and dim >= 8, "an int >= 8", "CharHashEncoder")
        self.dim = dim

    def encode(self, texts: Iterable[str]) -> np.ndarray:
        return (
            hash_counts(
                (str(t) for t in texts),
                self.dim,
                analyzer="char_wb",
                ngram_range=(1, 2),
                alternate_sign=True,
                norm="l2",
            )
            .toarray()
            .astype(np.float32)
        )


__all__ = ["CharHashEncoder", "hash_counts", "hashed_tfidf", "text_tokens"]
