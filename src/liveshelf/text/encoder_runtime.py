"""The encoder's runtime helpers: pooling, int8 quantisation of torch Linear layers, ONNX export."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from liveshelf.errors import ConfigError


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """(B, T, D) hidden states + (B, T) mask -> (B, D) by mean / cls / max pooling."""
    if how == "cls":
        return hidden[:, 0]
    m = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    if how == "max":
        return hidden.masked_fill(m == 0, -1e9).max(dim=1).values
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)


def quantize_dynamic_int8(model: torch.nn.Module, keep_fp32: Sequence[str] = ()) -> torch.nn.Module:
    """A copy of ``model`` whose ``nn.Linear`` layers (except ``keep_fp32``) are int8 dynamic-quantised.

    Weights are quantised per output channel; activations per tensor at run time.
    """
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    spec = {
        name: per_channel_dynamic_qconfig
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and name not in set(keep_fp32)
    }
    with warnings.catch_warnings():  # torch marks eager quantisation deprecated in favour of torchao
        warnings.simplefilter("ignore")
        return quantize_dynamic(copy.deepcopy(model).cpu(), spec)


def outlier_linears(model: torch.nn.Module, batch: dict[str, torch.Tensor], top: int) -> list[str]:
    """Names of the ``top`` Linear layers whose inputs have the largest max|x| / std(x) on ``batch``.

    Per-tensor int8 activations lose most precision there (in BERT-style encoders: the FFN output
    projections of the first layers), so those layers are the ones worth keeping in fp32.
    """
    ratios: dict[str, float] = {}
    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Linear):

            def hook(
                _m: torch.nn.Module, inp: tuple[torch.Tensor, ...], _out: torch.Tensor, name: str = name
            ) -> None:
                x = inp[0].detach().float()
                ratios[name] = float(x.abs().max() / x.std().clamp(min=1e-12))

            hooks.append(m.register_forward_hook(hook))
    try:
        with torch.inference_mode():
            model(**batch)
    finally:
        for h in hooks:
            h.remove()
    return sorted(ratios, key=lambda n: -ratios[n])[:top]


class _HiddenStateOnly(torch.nn.Module):
    """Wraps a HF encoder so that ONNX sees positional inputs and one output."""

    def __init__(self, model: torch.nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, args, strict=True))).last_hidden_state


def export_onnx(
    model: torch.nn.Module,
    tokenizer: Any,
    path: str | Path,
    *,
    int8: bool = False,
    keep_fp32: Sequence[str] = (),
) -> Path:
    """Write ``model`` (a CPU Hugging Face encoder: token ids -> last hidden state) as ONNX at ``path``.

    ``int8`` quantises the MatMul weights per channel with onnxruntime, except those of the
    Linear layers named in ``keep_fp32`` (torch module names, e.g. ``encoder.layer.0.output.dense``).
    """
    try:
        import onnx
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            "ONNX export needs the 'onnx' and 'onnxruntime' packages. "
            "Install them (pip install onnx onnxruntime)."
        ) from exc
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sample = tokenizer(
        ["an example text", "a second, longer example text"], padding=True, return_tensors="pt"
    )
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]
    wrapper = _HiddenStateOnly(model, names).eval()
    fp32_path = path if not int8 else path.with_suffix(".fp32.onnx")
    dynamic = {n: {0: "batch", 1: "seq"} for n in names}
    dynamic["last_hidden_state"] = {0: "batch", 1: "seq"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            tuple(sample[n] for n in names),
            str(fp32_path),
            dynamo=False,
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes=dynamic,
            opset_version=17,
        )
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        graph = onnx.load(str(fp32_path), load_external_data=False).graph
        keep = set(keep_fp32)
        exclude = [
            n.name
            for n in graph.node
            if n.op_type == "MatMul"
            and n.name.removeprefix("/model/").removesuffix("/MatMul").replace("/", ".") in keep
        ]
        quantize_dynamic(
            str(fp32_path),
            str(path),
            weight_type=QuantType.QInt8,
            per_channel=True,
            nodes_to_exclude=exclude,
        )
        fp32_path.unlink()
    return path
