import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from abba_analysis.cli import main


@pytest.fixture
def pair(tmp_path):
    gen = torch.Generator().manual_seed(0)
    base = {"model.q_proj.weight": torch.randn(40, 32, generator=gen), "model.up_proj.weight": torch.randn(48, 32, generator=gen)}
    tuned = {k[len("model."):]: v + 0.05 * torch.randn(v.shape, generator=gen) for k, v in base.items()}
    save_file(base, str(tmp_path / "base.safetensors"))
    save_file(tuned, str(tmp_path / "tuned.safetensors"))
    return tmp_path / "base.safetensors", tmp_path / "tuned.safetensors"


def test_fit(capsys):
    assert main(["fit", "--kind", "gaussian", "--size", "48", "--rank", "8"]) == 0
    out = capsys.readouterr().out
    for method in ("lora", "hira", "abba", "ABBA bracket"):
        assert method in out


def test_inspect(pair, capsys):
    assert main(["inspect", str(pair[0]), str(pair[1]), "--include", "q_proj", "--ranks", "2", "8"]) == 0
    out = capsys.readouterr().out
    assert "1 matched" in out and "model.q_proj.weight" in out and "LoRA r8" in out


def test_sweep(pair, tmp_path, capsys):
    out_dir = tmp_path / "sweep"
    assert main(["sweep", str(pair[0]), str(pair[1]), "--budgets", "4", "8", "--out", str(out_dir), "--no-progress",
                 "--heatmap", str(tmp_path / "heat.png"), "--max-iter", "30"]) == 0
    table = pd.read_csv(out_dir / "results.csv")
    assert len(table) == 2 * 2 * 3 and set(table.method) == {"lora", "hira", "abba"}
    assert (tmp_path / "heat.png").stat().st_size > 0


def test_errors_are_reported_not_raised(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "missing"), str(tmp_path / "missing2")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_reproduce_quick(tmp_path, capsys):
    """The main job on its quick settings: every figure, table and the summary are written."""
    out, work = tmp_path / "figures", tmp_path / "work"
    assert main(["reproduce", "--quick", "--out", str(out), "--work-dir", str(work), "--no-progress"]) == 0
    for name in ("fig2_reconstruction", "fig2_params", "fig2_spectra", "solver_convergence", "real_weights_heatmap",
                 "inits_gradient_flow", "inits_scaling", "inits_quality"):
        for ext in ("png", "svg"):
            assert (out / f"{name}.{ext}").stat().st_size > 1000, name
    summary = (out / "summary.md").read_text()
    assert "Matrix reconstruction" in summary and "lora-both" in summary
    results = pd.read_csv(out / "fig2_results.csv")
    assert results.groupby(["target_kind", "method", "budget"]).size().min() == 3  # three seeds everywhere
