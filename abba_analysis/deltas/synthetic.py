"""A small generated checkpoint pair whose deltas are genuine gradient-descent updates.

Used where no real pretrained model is installed: an MLP is trained on a random teacher network
(the "pretraining"), saved, then trained on a second, related teacher (the "fine-tuning") and saved
again. Every ΔW is the sum of Adam steps on real losses, like a fine-tune's.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import torch


def _mlp(sizes: tuple[int, ...]) -> torch.nn.Sequential:
    layers: list[torch.nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(torch.nn.GELU())
    return torch.nn.Sequential(*layers)


def _train(model, teacher, gen, steps: int, lr: float, batch: int) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        x = torch.randn(batch, model[0].in_features, generator=gen)
        with torch.no_grad():
            y = teacher(x)
        loss = (model(x) - y).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def _save(model, path: Path) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    os.replace(tmp, path)  # never a half-written checkpoint


def make_checkpoint_pair(
    out_dir: str | os.PathLike,
    *,
    sizes: tuple[int, ...] = (256, 512, 512, 256),
    pretrain_steps: int = 300,
    finetune_steps: int = 100,
    seed: int = 0,
) -> tuple[Path, Path]:
    """Pretrain an MLP on one random teacher, fine-tune it on a perturbed one; save both.

    Returns the paths of ``base/model.safetensors`` and ``finetuned/model.safetensors`` under
    ``out_dir``. The fine-tuning teacher is the pretraining teacher with its weights perturbed by 20%.
    """
    out = Path(out_dir)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    teacher = _mlp(sizes)
    model = _mlp(sizes)
    _train(model, teacher, gen, pretrain_steps, 1e-3, 128)
    base = out / "base" / "model.safetensors"
    _save(model, base)
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(0.2 * p.std() * torch.randn(p.shape, generator=gen))
    _train(model, teacher, gen, finetune_steps, 3e-4, 128)
    tuned = out / "finetuned" / "model.safetensors"
    _save(model, tuned)
    return base, tuned
