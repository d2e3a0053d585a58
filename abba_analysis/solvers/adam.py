"""Adam on the factors, with analytic gradients: no autograd graph of m x n intermediates.

Each step costs one pass of the parameterization's ``gradients`` (a few m x n products); the
relative error it yields is recorded for free. The best iterate is kept and returned, so a run that
meets NaN/Inf, or ends on an uptick, still answers with the lowest error it saw. A batch of targets
runs as one set of batched products; a target that meets a stopping rule leaves the batch.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np
import torch

from ..workspace import Workspace
from .base import BestIterate, Callback, Factors, Problem, SolveOutput, check_range, unbatch

SCHEDULES = ("cosine", "linear", "constant")
PRECISIONS = ("float32", "tf32", "bf16")


@dataclass(frozen=True)
class AdamOptions:
    """Options of the Adam solver.

    Attributes
    ----------
    steps : int
        Number of Adam steps (default 3000, the paper-style recipe).
    lr : float
        Peak learning rate (default 1e-2). Iterative fits see the target scaled to unit RMS, so the
        same ``lr`` suits targets of any scale.
    schedule : {"cosine", "linear", "constant"}
        Decay of the learning rate from ``lr`` to 0 over ``steps`` (after ``warmup``).
    warmup : int
        Steps of linear warm-up from 0 to ``lr``.
    betas : tuple of float
        Adam's moment decay rates.
    eps : float
        Adam's denominator guard.
    tol : float
        Stop once the relative error is at most ``tol``.
    rtol : float
        Stop once the error improved by less than ``rtol`` (relative) over ``patience`` steps; 0 disables.
    patience : int
        The window of ``rtol``.
    precision : {"float32", "tf32", "bf16"}
        Precision of the gradient matmuls of a float32 fit; factors, Adam's moments and the
        element-wise products stay float32 (the accumulators), and the returned error is recomputed
        in float32. ``"tf32"`` lets CUDA matmuls use TensorFloat-32 (no effect on CPU);
        ``"bf16"`` runs them in bfloat16 under ``torch.autocast`` (on CPU too, where it is slow: it
        is meant for GPUs). The history then carries bf16-rounded errors (about 3 digits).
    """

    steps: int = 3000
    lr: float = 1e-2
    schedule: str = "cosine"
    warmup: int = 0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    tol: float = 0.0
    rtol: float = 0.0
    patience: int = 100
    precision: str = "float32"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        check_range("steps", self.steps, 1)
        check_range("lr", self.lr, 0.0, low_open=True)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        check_range("warmup", self.warmup, 0, self.steps)
        for i, beta in enumerate(self.betas):
            check_range(f"betas[{i}]", beta, 0.0, 1.0)
        check_range("eps", self.eps, 0.0)
        check_range("tol", self.tol, 0.0)
        check_range("rtol", self.rtol, 0.0)
        check_range("patience", self.patience, 1)


def lr_factor(step: int, options: AdamOptions) -> float:
    """Multiplier of ``lr`` at ``step`` (0-based) for the chosen warm-up and schedule."""
    if step < options.warmup:
        return (step + 1) / options.warmup
    progress = (step - options.warmup) / max(1, options.steps - options.warmup)
    if options.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if options.schedule == "linear":
        return 1.0 - progress
    return 1.0


class AdamState:
    """Adam's moments for a list of tensors, updated in place with ``torch._foreach`` kernels.

    The same arithmetic as ``torch.optim.Adam`` (no weight decay, no amsgrad), without its
    per-step dispatch overhead and its first-call import cost.
    """

    def __init__(self, params: list[torch.Tensor], betas: tuple[float, float], eps: float) -> None:
        self.params = params
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.step_count = 0

    def step(self, grads: list[torch.Tensor], lr: float) -> None:
        self.step_count += 1
        torch._foreach_lerp_(self.exp_avg, grads, 1 - self.beta1)
        torch._foreach_mul_(self.exp_avg_sq, self.beta2)
        torch._foreach_addcmul_(self.exp_avg_sq, grads, grads, 1 - self.beta2)
        bias1 = 1 - self.beta1**self.step_count
        bias2 = 1 - self.beta2**self.step_count
        denom = torch._foreach_sqrt(self.exp_avg_sq)
        torch._foreach_div_(denom, math.sqrt(bias2))
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(self.params, self.exp_avg, denom, -lr / bias1)

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only the batch entries ``rows`` (leading axis) of the parameters and moments."""
        for group in (self.params, self.exp_avg, self.exp_avg_sq):
            group[:] = [t[rows] for t in group]


@contextlib.contextmanager
def matmul_precision(precision: str, device: torch.device):
    """Allow TensorFloat-32 CUDA matmuls for ``"tf32"`` within the block; the global flag is restored."""
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32" and device.type == "cuda" or previous
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous


class Adam:
    """Adam with a warm-up and decay schedule, on any torch device."""

    name = "adam"
    methods = ("lora", "hira", "abba")
    iterative = True
    Options = AdamOptions

    def solve(
        self,
        problem: Problem,
        factors: Factors | None,
        options: AdamOptions,
        callback: Callback | None = None,
        rngs: list[np.random.Generator] | None = None,
    ) -> list[SolveOutput]:
        if factors is None:
            raise ValueError("the adam solver needs starting factors")
        if options.precision != "float32" and problem.target.dtype != torch.float32:
            raise ValueError(f"precision={options.precision!r} applies to float32 fits, not {problem.target.dtype}")
        with matmul_precision(options.precision, problem.target.device):
            return self._solve(problem, factors, options, callback)

    def _solve(self, problem: Problem, factors: Factors, options: AdamOptions,
               callback: Callback | None) -> list[SolveOutput]:
        names = list(factors)
        state = AdamState([factors[k].detach().clone() for k in names], options.betas, options.eps)
        target, base = problem.target, problem.base
        target_norm2 = target.square().sum((-2, -1)).double().cpu()
        batch = problem.batch
        best = BestIterate(factors)
        history = torch.zeros((options.steps + 1, batch), dtype=torch.float64)
        recorded = torch.zeros(batch, dtype=torch.long)  # steps in target k's history
        statuses, messages = ["max_iter"] * batch, [f"ran all {options.steps} steps"] * batch
        active = torch.arange(batch)  # targets still stepping; state.params hold only these
        # The steps' m x n temporaries, allocated once (not under autocast: out= products are not cast).
        workspace = None if options.precision == "bf16" else Workspace()
        with torch.no_grad():
            for step in range(options.steps + 1):
                params = dict(zip(names, state.params, strict=True))
                with torch.autocast(target.device.type, dtype=torch.bfloat16, enabled=options.precision == "bf16"):
                    residual2, grads = problem.method.gradients(params, target, base, workspace)
                if options.precision == "bf16":  # the moments and factors stay float32
                    grads = {k: g.float() for k, g in grads.items()}
                errors = (residual2.double().cpu() / target_norm2[active]).sqrt()
                history[step, active] = errors
                recorded[active] += 1
                best.offer(errors, params, active)
                diverged = ~torch.isfinite(errors)
                reached = errors <= options.tol
                flat = torch.zeros_like(reached)
                if options.rtol > 0 and step >= options.patience:
                    before = history[step - options.patience, active]
                    flat = before - errors <= options.rtol * errors.clamp_min(1e-300)
                done = diverged | reached | flat
                for i in done.nonzero()[:, 0].tolist():
                    k = int(active[i])
                    statuses[k], messages[k] = (
                        ("diverged", f"NaN/Inf at step {step}; returned the best iterate") if diverged[i] else
                        ("converged", f"error {float(errors[i]):.3g} <= tol at step {step}") if reached[i] else
                        ("converged", f"improvement below rtol over {options.patience} steps"))
                if step > 0 and callback is not None and callback(step, errors.numpy(), params):
                    for k in active[~done].tolist():
                        statuses[k], messages[k] = "stopped", f"stopped by the callback at step {step}"
                    break
                if step == options.steps or bool(done.all()):
                    break
                if bool(done.any()):
                    keep = ~done
                    active, target = active[keep], target[keep]
                    base = base if base is None or base.shape[0] == 1 else base[keep]
                    state.keep(keep)
                    grads = {k: g[keep] for k, g in grads.items()}
                state.step([grads[name] for name in names], options.lr * lr_factor(step, options))
        histories = [history[:length, k].tolist() for k, length in enumerate(recorded.tolist())]
        return unbatch(best.factors, histories, statuses, messages)

