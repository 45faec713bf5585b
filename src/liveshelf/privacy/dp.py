"""Differentially private training (DP-SGD) with opacus, as a :class:`TrainStrategy`.

DP-SGD (Abadi et al., CCS'16): every optimiser step draws a Poisson sample of the training
examples (each one independently with rate ``q = batch_size / n``), clips each example's
gradient to L2 norm ``max_grad_norm``, sums them and adds Gaussian noise of standard deviation
``noise_multiplier * max_grad_norm``. Opacus does the sampling (``DPDataLoader``), the clipping and
noise (``DPOptimizer``), picks the noise multiplier that spends exactly ``target_epsilon`` over the
planned epochs (``PrivacyEngine.make_private_with_epsilon``) and tracks the budget actually spent
with its PRV (default) or RDP accountant.

Per-sample gradients (``mode='vmap'``, default) come from ``torch.func`` (``vmap`` over ``grad``
of the model's per-example loss), handed to opacus in its ``no_op`` grad-sample mode. That works for any
architecture: tied input/output embeddings (SASRec scores items with the item embedding
itself), raw ``nn.Parameter`` terms and weights used outside their module's ``forward``, which
opacus' per-layer hooks would miss or mis-attribute. (SASRec has no ``nn.MultiheadAttention``,
so opacus' ``DPMultiheadAttention`` is not needed: its attention is ``nn.Linear`` +
``F.scaled_dot_product_attention``, which hooks would handle; what hooks cannot handle is the
tied output layer ``h @ item_emb.weight``, LiveSASRec's raw parameters and embeddings read by
weight, and a loss over positions flattened across examples.) The model's loss must therefore be written
for one example (no shapes that depend on the data, e.g. no boolean-mask indexing); a model
sees ``strategy.private`` and switches to such a loss. ``mode='hooks'`` is opacus' own
per-layer hooks instead (``nn.Linear``, ``nn.Embedding``, ``nn.LayerNorm``, ... called as modules;
the loss must be the mean over examples of a per-example loss): the usual choice for LoRA
fine-tuning of Hugging Face models, where only adapter and head ``Linear`` layers train.

What ε means here: the guarantee is per *training example* given by the model. SASRec gives
one example per user (its most recent window), so ε bounds what the weights reveal about any
one user's history (user-level DP). Choices made from the data outside DP-SGD (early stopping,
data-derived initialisation) are switched off by the model in private mode.

Example::

    from liveshelf.models.sasrec import SASRec
    from liveshelf.privacy.dp import DPStrategy

    model = SASRec(epochs=20).fit(data, strategy=DPStrategy(target_epsilon=8.0))
    model.privacy_["dp_epsilon"]  # achieved epsilon at delta = 1 / n_users, e.g. 7.98

or, equivalently, ``SASRec(epochs=20, dp_epsilon=8.0).fit(data)``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils._pytree import tree_flatten, tree_map

from liveshelf.core.trainer import TrainStrategy
from liveshelf.errors import ConfigError, check_param

ACCOUNTANTS = ("prv", "rdp")
MODES = ("vmap", "hooks")


def _require_opacus() -> Any:
    try:
        import opacus
    except ImportError as exc:  # pragma: no cover - opacus is a declared extra
        raise ConfigError(
            "Differential privacy needs the 'opacus' package; install liveshelf[dp] "
            "(pip install 'opacus>=1.5')."
        ) from exc
    return opacus


def _batch_len(batch: Any) -> int:
    leaves = [t for t in tree_flatten(batch)[0] if isinstance(t, torch.Tensor)]
    if not leaves:
        raise ConfigError(
            "DPStrategy needs batches of tensors whose first dimension is the example; "
            f"got a batch of type {type(batch).__name__} without tensors."
        )
    return int(leaves[0].shape[0])


class _LossOf(torch.nn.Module):
    """``forward(batch) = loss_fn(module, batch)``, so ``torch.func.functional_call`` can swap the
    parameters of ``module`` for the whole loss (forward *and* any other method the loss calls)."""

    def __init__(
        self, module: torch.nn.Module, loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor]
    ) -> None:
        super().__init__()
        self.inner = module
        self.loss_fn = loss_fn

    def forward(self, batch: Any) -> torch.Tensor:
        return self.loss_fn(self.inner, batch)


def per_sample_grads(
    module: torch.nn.Module,
    loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor],
    batch: Any,
    chunk_size: int | None = None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Per-example gradients ``{name: (B, *param.shape)}`` of trainable parameters, and losses ``(B,)``.

    ``loss_fn(module, batch)`` is called on batches of one example (every tensor of ``batch``
    sliced to ``[i:i+1]``) inside ``torch.func.vmap``; dropout draws differ per example.

    >>> net = torch.nn.Linear(3, 1)
    >>> grads, losses = per_sample_grads(net, lambda m, b: m(b["x"]).sum(), {"x": torch.ones(4, 3)})
    >>> tuple(grads["weight"].shape), tuple(losses.shape)
    ((4, 1, 3), (4,))
    """
    from torch.func import functional_call, grad_and_value, vmap
    from torch.nn.attention import SDPBackend, sdpa_kernel

    wrapper = _LossOf(module, loss_fn)
    params = {n: p.detach() for n, p in wrapper.named_parameters() if p.requires_grad}

    def one(prm: dict[str, torch.Tensor], example: Any) -> tuple[torch.Tensor, torch.Tensor]:
        example = tree_map(lambda t: t.unsqueeze(0) if isinstance(t, torch.Tensor) else t, example)
        loss = functional_call(wrapper, prm, (example,))
        return loss, loss.detach()

    # the math attention kernel is plain matmul + softmax, which vmap batches; the fused CPU kernels
    # have no batching rule and would run example by example
    with sdpa_kernel([SDPBackend.MATH]):
        grads, losses = vmap(
            grad_and_value(one, has_aux=True),
            in_dims=(None, 0),
            randomness="different",
            chunk_size=chunk_size,
        )(params, batch)
    return {n[len("inner.") :]: g for n, g in grads.items()}, losses[1]


def empty_step(module: torch.nn.Module) -> None:
    """Mark an empty Poisson batch: zero-row per-example gradients, so the optimiser step adds noise only.

    Skipping the step instead would reveal that nobody was sampled, which depends on who is in the data.
    """
    for p in module.parameters():
        if p.requires_grad:
            p.grad_sample = p.new_zeros((0, *p.shape))


class DPStrategy(TrainStrategy):
    """DP-SGD to a target (ε, δ) with opacus: Poisson sampling, per-example clipping, Gaussian noise.

    ``target_epsilon``: the privacy budget of the whole training run. ``delta``: defaults to
    ``1 / n_samples`` (set at ``setup``). ``max_grad_norm``: the per-example clipping bound.
    ``accountant``: ``'prv'`` (tight, default) or ``'rdp'``. ``mode``: ``'vmap'`` (per-example
    gradients by ``torch.func``, any architecture) or ``'hooks'`` (opacus layer hooks).
    ``chunk_size``: examples per ``vmap`` chunk (``None`` = the whole batch; lower it to save
    memory). ``seed`` seeds the noise.

    After training, :meth:`report` gives the achieved ε at δ (from the accountant, over the
    steps actually taken), the noise multiplier, the sample rate and the number of steps.

    Example::

        strategy = DPStrategy(target_epsilon=1.0, max_grad_norm=1.0)
        Trainer(net, opt, per_example_loss, batches, epochs=10, strategy=strategy,
                n_samples=len(ds), batch_size=64, make_batch=lambda idx: ds[idx]).fit()
        strategy.report()["dp_epsilon"]  # about 1.0
    """

    private = True

    def __init__(
        self,
        target_epsilon: float,
        delta: float | None = None,
        max_grad_norm: float = 1.0,
        accountant: str = "prv",
        mode: str = "vmap",
        chunk_size: int | None = None,
        seed: int = 0,
    ) -> None:
        where = "DPStrategy"
        check_param(
            "target_epsilon",
            target_epsilon,
            isinstance(target_epsilon, (int, float))
            and not isinstance(target_epsilon, bool)
            and 0 < target_epsilon < math.inf,
            "a finite float > 0 (e.g. 1, 4 or 8)",
            where,
        )
        check_param(
            "delta",
            delta,
            delta is None or (isinstance(delta, (int, float)) and 0 < delta < 1),
            "a float in (0, 1), or None for 1 / (number of training examples)",
            where,
        )
        check_param(
            "max_grad_norm",
            max_grad_norm,
            isinstance(max_grad_norm, (int, float)) and 0 < max_grad_norm < math.inf,
            "a finite float > 0 (the per-example gradient clipping bound, e.g. 1.0)",
            where,
        )
        check_param("accountant", accountant, accountant in ACCOUNTANTS, f"one of {list(ACCOUNTANTS)}", where)
        check_param(
            "mode",
            mode,
            mode in MODES,
            "'vmap' (torch.func per-example gradients) or 'hooks' (opacus layer hooks)",
            where,
        )
        check_param(
            "chunk_size",
            chunk_size,
            chunk_size is None or (isinstance(chunk_size, int) and chunk_size >= 1),
            "an int >= 1 or None (whole batch)",
            where,
        )
        self.target_epsilon = float(target_epsilon)
        self.delta = delta
        self.max_grad_norm = float(max_grad_norm)
        self.accountant = accountant
        self.mode = mode
        self.chunk_size = chunk_size
        self.seed = seed
        self.engine: Any = None
        self.optimizer: Any = None
        self.hooks: Any = None
        self.n_samples = 0
        self.sample_rate = 0.0

    def setup(
        self,
        module: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        batches: Callable[[int], Iterable[Any]],
        *,
        epochs: int,
        n_samples: int | None = None,
        batch_size: int | None = None,
        make_batch: Callable[[np.ndarray], Any] | None = None,
    ) -> tuple[torch.nn.Module, torch.optim.Optimizer, Callable[[int], Iterable[Any]]]:
        _require_opacus()
        from opacus import PrivacyEngine
        from torch.utils.data import DataLoader, TensorDataset

        if n_samples is None or batch_size is None or make_batch is None:
            raise ConfigError(
                "DPStrategy draws its own Poisson batches, so the Trainer must be given "
                f"n_samples, batch_size and make_batch; got n_samples={n_samples}, "
                f"batch_size={batch_size}, make_batch={'set' if make_batch else None}."
            )
        check_param("n_samples", n_samples, n_samples >= 2, "at least 2 training examples", "DPStrategy")
        self.n_samples = int(n_samples)
        self.delta = float(self.delta) if self.delta is not None else 1.0 / self.n_samples
        loader = DataLoader(
            TensorDataset(torch.arange(self.n_samples)), batch_size=min(batch_size, self.n_samples)
        )
        noise = torch.Generator().manual_seed(self.seed)
        module.train()  # opacus validates the module in training mode
        with warnings.catch_warnings():  # opacus warns that secure_mode is off: we seed on purpose
            warnings.simplefilter("ignore")
            self.engine = PrivacyEngine(accountant=self.accountant)
            self.hooks, self.optimizer, dp_loader = self.engine.make_private_with_epsilon(
                module=module,
                optimizer=optimizer,
                data_loader=loader,
                target_epsilon=self.target_epsilon,
                target_delta=self.delta,
                epochs=epochs,
                max_grad_norm=self.max_grad_norm,
                grad_sample_mode="no_op" if self.mode == "vmap" else "hooks",
                wrap_model=False,
                poisson_sampling=True,
                noise_generator=noise,
            )
        self.sample_rate = 1.0 / len(loader)

        def dp_batches(epoch: int) -> Iterator[Any]:
            for (idx,) in dp_loader:
                yield make_batch(idx.numpy().astype(np.int64))

        return module, self.optimizer, dp_batches

    def backward(
        self, module: torch.nn.Module, loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor], batch: Any
    ) -> torch.Tensor:
        params = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        if _batch_len(batch) == 0:  # Poisson sampling may draw nobody: the step adds noise only
            empty_step(module)
            return torch.zeros(())
        if self.mode == "hooks":
            loss = loss_fn(module, batch)
            loss.backward()
            return loss
        grads, losses = per_sample_grads(module, loss_fn, batch, self.chunk_size)
        for n, p in params:
            p.grad_sample = grads[n]
        return losses.mean()

    def finish(self, module: torch.nn.Module) -> None:
        """Detach opacus' hooks and drop per-example gradients (the module trains normally again)."""
        if self.hooks is not None and hasattr(self.hooks, "cleanup"):
            self.hooks.cleanup()
        for p in module.parameters():
            for attr in ("grad_sample", "summed_grad", "_current_grad_sample"):
                if hasattr(p, attr):
                    delattr(p, attr)

    def epsilon(self) -> float:
        """ε spent so far at ``delta`` (0 before the first step)."""
        if self.engine is None or len(self.engine.accountant) == 0:
            return 0.0
        return float(self.engine.get_epsilon(self.delta))

    def report(self) -> dict[str, Any]:
        steps = sum(n for _, _, n in self.engine.accountant.history) if self.engine is not None else 0
        return {
            "dp_epsilon": self.epsilon(),
            "dp_delta": self.delta,
            "dp_target_epsilon": self.target_epsilon,
            "dp_max_grad_norm": self.max_grad_norm,
            "dp_noise_multiplier": float(self.optimizer.noise_multiplier)
            if self.optimizer is not None
            else None,
            "dp_sample_rate": self.sample_rate,
            "dp_steps": int(steps),
            "dp_n_samples": self.n_samples,
            "dp_accountant": self.accountant,
        }
