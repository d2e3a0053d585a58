"""Adam on the factors, with analytic gradients: no autograd graph of m x n intermediates.

Each step costs one pass of the parameterization's ``gradients`` (a few m x n products); the
relative error it yields is recorded for free. The best iterate is kept and returned, so a run that
meets NaN/Inf, or ends on an uptick, still answers with the lowest error it saw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .base import BestIterate, Callback, Factors, Problem, SolveOutput, check_range, stalled

SCHEDULES = ("cosine", "linear", "constant")


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

    def __post_init__(self) -> None:
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
        rng: np.random.Generator | None = None,
    ) -> SolveOutput:
        if factors is None:
            raise ValueError("the adam solver needs starting factors")
        params = {k: v.detach().clone() for k, v in factors.items()}
        state = AdamState(list(params.values()), options.betas, options.eps)
        target_norm2 = float(problem.target.square().sum())
        best, history = BestIterate(), []
        status, message = "max_iter", f"ran all {options.steps} steps"
        with torch.no_grad():
            for step in range(options.steps + 1):
                residual2, grads = problem.method.gradients(params, problem.target, problem.base)
                error = math.sqrt(float(residual2) / target_norm2)
                history.append(error)
                if not math.isfinite(error):
                    status, message = "diverged", f"NaN/Inf at step {step}; returned the best iterate"
                    break
                best.offer(error, params)
                if step > 0 and callback is not None and callback(step, error, params):
                    status, message = "stopped", f"stopped by the callback at step {step}"
                    break
                if error <= options.tol:
                    status, message = "converged", f"error {error:.3g} <= tol at step {step}"
                    break
                if stalled(history, options.patience, options.rtol):
                    status, message = "converged", f"improvement below rtol over {options.patience} steps"
                    break
                if step == options.steps:
                    break
                state.step([grads[name] for name in params], options.lr * lr_factor(step, options))
        return SolveOutput(best.factors, history, len(history) - 1, status, message)
