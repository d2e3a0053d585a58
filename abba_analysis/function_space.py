"""Does the compressed model behave like the fine-tuned one? Outputs compared on fixed inputs.

For a transformers encoder, :func:`output_error` runs the base model, the fine-tuned model and base +
an extracted adapter (merged) on the same sentences and measures how much of the fine-tune's change
of the last hidden states the adapter misses, and how close its sentence embeddings (mean pooling, as
all-MiniLM-L6-v2 uses) are to the fine-tuned model's.
"""

from __future__ import annotations

import codecs
import os
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch


def sentences() -> list[str]:
    """Fixed English inputs that ship with Python: the lines of the Zen of Python (module ``this``)."""
    import io
    from contextlib import redirect_stdout

    with redirect_stdout(io.StringIO()):
        import this
    text = codecs.decode(this.s, "rot13")
    return [line.strip() for line in text.splitlines()[2:] if line.strip()]


def _load(model_dir: str | os.PathLike, weights: str | os.PathLike | None = None):
    """An ``AutoModel`` from ``model_dir`` (config and architecture), with ``weights`` loaded over it."""
    from transformers import AutoModel

    from .deltas import Checkpoint, match_names

    model = AutoModel.from_pretrained(str(model_dir))
    if weights is not None:
        checkpoint = Checkpoint.open(weights)
        own = model.state_dict()
        mapping = match_names(list(own), checkpoint.names())
        if len(mapping) < len(own) // 2:
            raise ValueError(f"{weights} holds {len(mapping)} of the model's {len(own)} weights: another model?")
        # Weights neither file holds (e.g. an unused pooler) keep the base model's values.
        model.load_state_dict({name: checkpoint.load(source) for name, source in mapping.items()}, strict=False)
    return model.eval()


def _encode(model, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Last hidden states of the real tokens (flattened) and mean-pooled sentence embeddings."""
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    return hidden[batch["attention_mask"].bool()], pooled


def output_error(
    base_dir: str | os.PathLike,
    finetuned: str | os.PathLike,
    adapter_dir: str | os.PathLike,
    texts: Sequence[str] | None = None,
    *,
    max_length: int = 64,
) -> dict[str, float]:
    """Compare base + adapter with the fine-tuned model on ``texts``.

    Parameters
    ----------
    base_dir : path
        A Hugging Face model directory (config, weights and tokenizer) of the base model.
    finetuned : path
        The fine-tuned weights (a file or a directory), same architecture.
    adapter_dir : path
        A PEFT adapter for the base model (e.g. written by :func:`abba_analysis.extract.extract`).
    texts : sequence of str, optional
        Inputs (default :func:`sentences`).
    max_length : int
        Tokens per input.

    Returns
    -------
    dict
        ``hidden_error``: ``||H_adapter - H_finetuned||_F / ||H_finetuned - H_base||_F`` over all real
        tokens' last hidden states (0: the fine-tuned outputs; 1: no closer than the base model);
        ``embedding_cosine``: mean cosine between the adapter's and the fine-tuned model's sentence
        embeddings; ``base_embedding_cosine``: the same for the base model (the floor).
    """
    return _Reference(base_dir, finetuned, texts, max_length).compare(adapter_dir)


class _Reference:
    """The base and fine-tuned models' outputs on fixed inputs, computed once for many adapters."""

    def __init__(self, base_dir, finetuned, texts: Sequence[str] | None, max_length: int):
        from transformers import AutoTokenizer

        texts = list(texts) if texts is not None else sentences()
        if not texts:
            raise ValueError("texts is empty")
        tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
        self.base_dir = base_dir
        self.batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        self.base_hidden, self.base_pooled = _encode(_load(base_dir), self.batch)
        self.tuned_hidden, self.tuned_pooled = _encode(_load(base_dir, finetuned), self.batch)
        self.change = torch.linalg.matrix_norm(self.tuned_hidden - self.base_hidden)
        if self.change == 0:
            raise ValueError(f"{finetuned} gives the base model's outputs on these inputs: nothing to compare")

    def compare(self, adapter_dir) -> dict[str, float]:
        from peft import PeftModel

        adapted = PeftModel.from_pretrained(_load(self.base_dir), str(adapter_dir)).merge_and_unload().eval()
        hidden, pooled = _encode(adapted, self.batch)
        cosine = torch.nn.functional.cosine_similarity
        return {"hidden_error": float(torch.linalg.matrix_norm(hidden - self.tuned_hidden) / self.change),
                "embedding_cosine": float(cosine(pooled, self.tuned_pooled).mean()),
                "base_embedding_cosine": float(cosine(self.base_pooled, self.tuned_pooled).mean())}


def model_directory(checkpoint: str | os.PathLike) -> Path:
    """The model directory holding ``checkpoint`` (``"minilm"`` resolved), for :func:`output_error`."""
    from .deltas import Checkpoint

    return Checkpoint.open(checkpoint).directory


def compression_study(
    base: str | os.PathLike,
    finetuned: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    methods: Sequence[str] = ("lora", "abba"),
    uniform_budget: int = 8,
    include: str | None = None,
    options: dict | None = None,
    texts: Sequence[str] | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Compress a fine-tune into adapters at equal total budgets and measure each in weight and function space.

    For each method, :func:`abba_analysis.extract.extract` allocates ``uniform_budget * Σ(m + n)``
    parameters over the selected layers; its grid fits also give, for every budget ``b`` of the grid,
    the adapter with budget ``b`` on every layer. Each adapter is written and run (:func:`output_error`).

    Returns
    -------
    DataFrame
        One row per adapter: ``method``, ``allocation`` (``"uniform"`` or ``"allocated"``), ``budget``
        (uniform's; NaN when allocated), ``params``, ``weight_error`` (relative Frobenius error of all
        updates together, :func:`abba_analysis.extract.total_error`), ``hidden_error``,
        ``embedding_cosine``, ``base_embedding_cosine``.
    """
    from . import experiments
    from .extract import RUN_DIR, extract, total_error, write_adapter

    out = Path(out_dir)
    rows = []
    total = _total(base, finetuned, include, uniform_budget)
    reference = _Reference(model_directory(base), finetuned, texts, 64)
    for method in methods:
        work = out / method
        probe = extract(base, finetuned, work, method=method, budget=None, total_params=total, include=include,
                        options=options, progress=progress)
        adapters = [("allocated", float("nan"), probe.layers, probe.adapter)]
        grid = experiments.load_results(work / RUN_DIR).results.assign(layer=lambda f: f["target"])
        for budget, part in grid.groupby("budget"):
            adapter = write_adapter(part, work / RUN_DIR, work / f"uniform-{budget}", base)
            adapters.append(("uniform", float(budget), part, adapter))
        for allocation, budget, layers, adapter in adapters:
            measured = reference.compare(adapter)
            rows.append({"method": method, "allocation": allocation, "budget": budget,
                         "params": int(layers["params"].sum()), "weight_error": total_error(layers), **measured})
    return pd.DataFrame(rows)


def _total(base, finetuned, include, uniform_budget: int) -> int:
    from .extract import _shapes

    return uniform_budget * sum(m + n for m, n in _shapes(base, finetuned, include, None))


ENCODER_LAYERS = (r"encoder\.layer\.\d+\.(attention\.self\.(query|key|value)|attention\.output\.dense"
                  r"|intermediate\.dense|output\.dense)\.weight$")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m abba_analysis.function_space``: the compression study on all-MiniLM-L6-v2's encoder."""
    import argparse

    from .deltas.minilm import STEPS, cached_finetune

    parser = argparse.ArgumentParser(prog="python -m abba_analysis.function_space", description=main.__doc__,
                                     allow_abbrev=False)
    parser.add_argument("--out", default="results/compression-study", help="work and output directory")
    parser.add_argument("--steps", type=int, default=STEPS, help="AdamW steps of the masked-LM fine-tune "
                        "(reused from results/ when the same fine-tune was made there before)")
    parser.add_argument("--budget", type=int, default=8, help="uniform budget whose total is allocated")
    args = parser.parse_args(argv)
    out = Path(args.out)
    tuned = cached_finetune("results", steps=args.steps)
    table = compression_study("minilm", tuned, out, uniform_budget=args.budget, include=ENCODER_LAYERS,
                              options={"max_iter": 300, "rtol": 1e-5}, progress=True)
    table.to_csv(out / "table.csv", index=False)
    print(table.round(4).to_string(index=False))
    from scipy.stats import spearmanr

    print(f"Spearman rank correlation of weight and function error: "
          f"{spearmanr(table.weight_error, table.hidden_error).statistic:.3f} over {len(table)} adapters")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
