"""A genuine fine-tuning update of a real pretrained model: all-MiniLM-L6-v2, from a PyPI package.

No data set can be downloaded here, so the fine-tuning task is synthetic but the update is real:
Adam steps on the pretrained network, through every layer, for the objective of rotating the
model's mean-pooled sentence embeddings of random token sequences by a fixed random orthogonal
matrix. ``ΔW`` per layer is then ``W_after - W_before``, as for any fine-tune.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .packaged import minilm_path


def load_minilm():
    """The pretrained all-MiniLM-L6-v2 encoder as a ``transformers.BertModel`` (offline)."""
    try:
        from transformers import BertConfig, BertModel
    except ImportError:
        raise ImportError("fine-tuning MiniLM needs transformers: pip install 'abba-analysis[real]'") from None
    from safetensors.torch import load_file

    path = minilm_path()
    model = BertModel(BertConfig.from_json_file(str(path.parent / "config.json")), add_pooling_layer=False)
    model.load_state_dict(load_file(str(path)), strict=False)  # the file also holds the unused pooler
    return model


def finetune_minilm(
    out_dir: str | os.PathLike,
    *,
    steps: int = 30,
    lr: float = 1e-4,
    batch: int = 16,
    seq_len: int = 32,
    seed: int = 0,
) -> Path:
    """Fine-tune MiniLM with Adam on the synthetic rotation task; save it as ``model.safetensors``.

    The file is written to a temporary name and renamed, so an interrupted run leaves no
    half-written checkpoint; the same seed gives the same checkpoint. Returns the path of the file.
    """
    out = Path(out_dir) / "model.safetensors"
    out.parent.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # dropout draws from the global generator: seed it, then restore it
        return _finetune(out, steps=steps, lr=lr, batch=batch, seq_len=seq_len, seed=seed)


def _finetune(out: Path, *, steps: int, lr: float, batch: int, seq_len: int, seed: int) -> Path:
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(seed)
    model = load_minilm()
    vocab, hidden = model.config.vocab_size, model.config.hidden_size
    rotation, _ = torch.linalg.qr(torch.randn(hidden, hidden, generator=gen))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        ids = torch.randint(1000, vocab, (batch, seq_len), generator=gen)
        with torch.no_grad():
            model.eval()
            goal = model(input_ids=ids).last_hidden_state.mean(1) @ rotation
            model.train()
        loss = (model(input_ids=ids).last_hidden_state.mean(1) - goal).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    tmp = out.with_suffix(".tmp")
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    os.replace(tmp, out)
    return out
