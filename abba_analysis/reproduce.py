"""The project's main job: rerun the paper's expressivity experiments and draw every figure.

``reproduce()`` (CLI: ``abba-analysis reproduce``) runs, resumably, into ``work_dir`` (default
``results/``):

- ``main``: the Fig. 2 experiment (four random target kinds, LoRA / HiRA / ABBA at equal budgets,
  three seeds), a solver-convergence experiment (exact block-coordinate vs Adam), and a real-weight
  panel: genuine fine-tuning deltas of all-MiniLM-L6-v2 when the ``real`` extra is installed, else
  of a generated MLP checkpoint pair;
- ``inits``: the initialization studies (step-0 gradient flow, the scaling law, fit quality by scheme);
- ``full`` (CLI: ``--full``, about 25 minutes on 2 cores): Fig. 2 at the paper's apparent size, 768 x 768,
  each panel on the construction whose LoRA error matches the paper's (``fig2-full.toml``), with
  thorough ABBA fits (``effort="thorough"``) at the top budget beside the default ones.

Figures (PNG and SVG), the tidy tables (CSV) and ``summary.md`` go to ``out_dir`` (default
``results/figures/``). Those tables carry no timing columns, so a rerun on the same machine and
versions writes the same numbers; times stay in the run directories' own tables.
``scripts/refresh_figures.sh`` writes them to the repository's ``figures/`` (a maintainers' step).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from . import experiments, init_study, inits, metrics
from .deltas import minilm_available
from .deltas.checkpoint import MINILM

STUDIES = ("main", "inits", "full")
STAGES = {"main": 3, "inits": 3, "full": 2}
# Columns that change from run to run on the same machine; dropped from the tables written to out_dir.
TIMING_COLUMNS = ("seconds", "seconds_to_threshold")

# The paper's Fig. 2 at r = 72, read off the figure (ABBA, LoRA).
PAPER_R72 = {"orthogonal": (0.42, 0.95), "low_rank": (0.26, 0.44), "sparse": (0.18, 0.72), "gaussian": (0.12, 0.19)}

# Fig. 2 at 768 x 768 (study "full"): the construction standing for each of the paper's panels.
PAPER_PANELS = {"orthogonal": "orthogonal", "low_rank": "low_rank", "sparse": "sparse", "exp_decay": "gaussian"}

MINILM_LAYERS = (r"encoder\.layer\.({layers})\.(attention\.self\.(query|key|value)|attention\.output\.dense"
                 r"|intermediate\.dense|output\.dense)\.weight$")


def _save(fig, out_dir: Path, name: str) -> list[Path]:
    import matplotlib.pyplot as plt

    paths = []
    for ext in ("png", "svg"):
        path = out_dir / f"{name}.{ext}"
        tmp = path.with_name(f".{path.name}")
        fig.savefig(tmp, dpi=150, bbox_inches="tight", format=ext, metadata={"Date": None} if ext == "svg" else None)
        os.replace(tmp, path)
        paths.append(path)
    plt.close(fig)
    return paths


def _write_table(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` without its timing columns (they change on every run; the run directory keeps them)."""
    frame.drop(columns=[c for c in TIMING_COLUMNS if c in frame.columns]).to_csv(path, index=False)


def _copy_tables(run_dir: Path, out_dir: Path, prefix: str) -> None:
    for name in ("results.csv", "spectra.csv", "histories.csv"):
        src = run_dir / name
        if src.exists() and src.stat().st_size > 1:
            _write_table(pd.read_csv(src), out_dir / f"{prefix}_{name}")


class _Stages:
    """Numbered stage headings, each closed with its time, so a long run says where it is."""

    def __init__(self, total: int, show: bool):
        self.total, self.show, self.count = total, show, 0

    @contextlib.contextmanager
    def __call__(self, title: str):
        self.count += 1
        if self.show:
            print(f"[{self.count}/{self.total}] {title}", flush=True)
        start = time.perf_counter()
        yield
        if self.show:
            print(f"[{self.count}/{self.total}] done in {time.perf_counter() - start:.0f} s", flush=True)


def real_weight_source(work_dir: Path, quick: bool) -> tuple[str, str, str, str]:
    """``(label, base, finetuned, include)`` of the real-weight panel, fine-tuning on first use."""
    if minilm_available():
        try:
            from .deltas.minilm import STEPS, cached_finetune

            tuned = cached_finetune(work_dir, steps=3 if quick else STEPS)
            layers = "0" if quick else "0|5"
            return ("all-MiniLM-L6-v2 (masked-LM fine-tune)", MINILM, str(tuned.parent),
                    MINILM_LAYERS.format(layers=layers))
        except ImportError:
            pass
    from .deltas.synthetic import make_checkpoint_pair

    pair_dir = work_dir / ("synthetic-mlp-quick" if quick else "synthetic-mlp")
    if not (pair_dir / "finetuned" / "model.safetensors").exists():
        print(f"training and fine-tuning a generated MLP into {pair_dir}", flush=True)
        sizes = (64, 128, 64) if quick else (256, 512, 512, 256)
        make_checkpoint_pair(pair_dir, sizes=sizes, pretrain_steps=50 if quick else 300,
                             finetune_steps=20 if quick else 100)
    return ("generated MLP (fine-tuned)", str(pair_dir / "base" / "model.safetensors"),
            str(pair_dir / "finetuned" / "model.safetensors"), r"weight$")


def real_weight_config(base: str, finetuned: str, include: str, quick: bool) -> experiments.Config:
    budgets = [8] if quick else [8, 32]
    iterative = {"rtol": 1e-5, "max_iter": 300}
    return experiments.parse({
        "experiment": {"name": "real-quick" if quick else "real", "seeds": [0], "dtype": "float32", "spectra": True},
        "targets": [{"kind": "checkpoint", "base": base, "finetuned": finetuned, "include": include}],
        "methods": [{"method": "lora", "budgets": budgets},
                    {"method": "abba", "budgets": budgets, "options": iterative},
                    {"method": "hira", "budgets": budgets, "options": iterative}],
    })


def _mean_sd(errors: pd.Series) -> str:
    """``mean ± s.d.`` over seeds (s.d. 0 for one seed), as the summaries print it."""
    return f"{errors.mean():.3f} ± {errors.std(ddof=1) if len(errors) > 1 else 0:.3f}"


def _panel_name(kind: str) -> str:
    """The paper's Fig. 2 panel that a 768² construction stands for ("" if none), as the paper names it."""
    return PAPER_PANELS.get(kind, "").replace("gaussian", "random").replace("_", "-")


def _fig2_summary(results: pd.DataFrame) -> pd.DataFrame:
    top = results["budget"].max()
    rows = []
    for kind in dict.fromkeys(results["target_kind"]):
        row = {"target": kind, "r": int(top)}
        for method in ("lora", "hira", "abba"):
            row[method] = _mean_sd(results[(results.target_kind == kind) & (results.method == method)
                                           & (results.budget == top)]["error"])
        paper = PAPER_R72.get(kind)
        row["paper ABBA / LoRA (r = 72)"] = f"{paper[0]:.2f} / {paper[1]:.2f}" if paper else ""
        rows.append(row)
    return pd.DataFrame(rows)


def _real_summary(results: pd.DataFrame) -> pd.DataFrame:
    frame = results.copy()
    # "encoder.layer.5.attention.self.query.weight" -> "attention.self.query": one row per module type.
    frame["module"] = frame["target"].str.replace(r"^.*layer\.\d+\.", "", regex=True).str.replace(
        r"\.weight$", "", regex=True)
    table = frame.pivot_table(index="module", columns=["budget", "method"], values="error", aggfunc="mean")
    table.columns = [f"{m.upper() if m != 'abba' else 'ABBA'} r={b}".replace("HIRA", "HiRA").replace("LORA", "LoRA")
                     for b, m in table.columns]
    return table.round(3).reset_index()


def run_main(out_dir: Path, work_dir: Path, quick: bool, progress: bool, stage: _Stages,
             executor: experiments.LocalProcesses | None = None) -> list[str]:
    from . import plotting

    suffix = "-quick" if quick else ""
    lines = []
    with stage("Fig. 2: LoRA, HiRA and ABBA on four random target kinds"):
        fig2 = experiments.run(experiments.builtin(f"fig2{suffix}"), work_dir / f"fig2{suffix}",
                               executor=executor, progress=progress)
    _copy_tables(work_dir / f"fig2{suffix}", out_dir, "fig2")
    first = fig2.results.iloc[0]
    about = f"{first.m}x{first.n} targets, {fig2.results['seed'].nunique()} seeds"
    figure = plotting.error_vs_rank(fig2.results)
    figure.suptitle(f"Fig. 2: relative error at equal budgets, {about} (mean ± s.d.); grey: ABBA's bracket",
                    fontsize=10)
    _save(figure, out_dir, "fig2_reconstruction")
    figure = plotting.error_vs_params(fig2.results)
    figure.axes[0].set_title(f"Error against trainable parameters, {about} (mean)", fontsize=9)
    _save(figure, out_dir, "fig2_params")
    import matplotlib.pyplot as plt

    kinds = list(dict.fromkeys(fig2.results["target_kind"]))
    fig, axes = plt.subplots(1, len(kinds), figsize=(3.8 * len(kinds), 3.2), constrained_layout=True)
    for ax, kind in zip(np.atleast_1d(axes), kinds, strict=True):
        target = fig2.results[fig2.results.target_kind == kind]["target"].iloc[0]
        plotting.spectra(fig2.spectra, target, ax=ax)
    _save(fig, out_dir, "fig2_spectra")
    summary = _fig2_summary(fig2.results)
    lines += [f"## Matrix reconstruction (Fig. 2), mean ± s.d. over {fig2.results['seed'].nunique()} seeds",
              "", summary.to_markdown(index=False), ""]

    with stage("solver convergence: exact block-coordinate against Adam"):
        conv = experiments.run(experiments.builtin(f"convergence{suffix}"), work_dir / f"convergence{suffix}",
                               executor=executor, progress=progress)
    _copy_tables(work_dir / f"convergence{suffix}", out_dir, "convergence")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), constrained_layout=True)
    plotting.convergence(conv.histories, x="iteration", ax=axes[0])
    plotting.convergence(conv.histories, x="seconds", ax=axes[1])
    first = conv.results.iloc[0]
    fig.suptitle(f"ABBA ({first.r1}, {first.r2}) on {first.target_kind} {first.m}x{first.n} targets, "
                 f"{conv.results['seed'].nunique()} seeds: exact block-coordinate (als) against Adam", fontsize=10)
    _save(fig, out_dir, "solver_convergence")
    c = conv.results.groupby("solver").agg(error=("error", "median"),
                                           iterations=("iterations", "median")).reset_index()
    lines += ["## Solver convergence (ABBA, Gaussian target, r1 = r2 = 8), medians over seeds", "",
              c.to_markdown(index=False, floatfmt=".4f"), "",
              "Times: `solver_convergence.png` (right panel); benchmarks/RESULTS.md for measured speeds.", ""]

    with stage("real weight deltas: fine-tune (first run only), then fit each layer"):
        label, base, tuned, include = real_weight_source(work_dir, quick)
        real_cfg = real_weight_config(base, tuned, include, quick)
        real = experiments.run(real_cfg, work_dir / real_cfg.name, executor=executor, progress=progress)
    _copy_tables(work_dir / real_cfg.name, out_dir, "real")
    heatmap = plotting.layer_heatmap(real.results, relative_to_lora=True)
    heatmap.axes[0].set_title(f"{label}: error / LoRA's error at the same budget (below 1: better)", fontsize=9)
    _save(heatmap, out_dir, "real_weights_heatmap")
    lines += [f"## Real weight deltas: {label}, relative error, mean over layers", "",
              _real_summary(real.results).to_markdown(index=False), ""]
    layers = _real_layers(base, tuned, include, budgets=sorted(real.results["budget"].unique()))
    _write_table(layers, out_dir / "real_layers.csv")
    lines += _real_layer_lines(layers, Path(tuned))
    _save(_real_spectra_figure(real.results, real.spectra, label), out_dir, "real_spectra")
    return lines


def _real_layers(base: str, tuned: str, include: str, budgets: list[int]) -> pd.DataFrame:
    """Per layer: ``‖ΔW‖/‖W0‖``, ranks of ΔW, and LoRA's error at each budget (``real_layers.csv``)."""
    from .deltas import from_checkpoints, summarize

    pairs = from_checkpoints(base, tuned, include=include)
    rows = [summarize(pairs.load(name), ranks=[int(b) for b in budgets]) for name in pairs.names]
    return pd.DataFrame(rows).drop(columns=["shape"]).round(4)


def _real_layer_lines(layers: pd.DataFrame, tuned: Path) -> list[str]:
    lines = []
    if (tuned / "finetune.json").exists():  # the MiniLM fine-tune; a generated pair has no record
        from .deltas.minilm import finetune_report

        report = finetune_report(tuned)
        s = report["settings"]
        lines.append(f"Fine-tune: masked LM on the standard library's docstrings and pydoc topics ({s['text']}; "
                     f"{report['sequences']} sequences of {s['seq_len']} tokens), all weights, {s['steps']} AdamW steps "
                     f"of {s['batch']} sequences ({report['epochs']} epochs), peak lr "
                     f"{s['lr']:g}; held-out masked-token accuracy {report['held_out_accuracy']:.3f}.")
    r = layers["relative_norm"]
    lines += [f"Per layer (`real_layers.csv`): ‖ΔW‖/‖W0‖ from {r.min():.4f} to {r.max():.4f} (median "
              f"{r.median():.4f}); stable rank of ΔW from {layers.stable_rank.min():.2f} to "
              f"{layers.stable_rank.max():.2f}.", ""]
    return lines


def _real_spectra_figure(results: pd.DataFrame, spectra: pd.DataFrame, label: str):
    """Spectra of the layers where ABBA does best and worst against LoRA, at the largest budget."""
    import matplotlib.pyplot as plt

    from . import plotting

    top = results["budget"].max()
    at_top = results[results.budget == top].pivot_table(index="target", columns="method", values="error")
    ratio = (at_top["abba"] / at_top["lora"]).sort_values()
    shown = list(dict.fromkeys([ratio.index[0], ratio.index[-1]]))
    fig, axes = plt.subplots(1, len(shown), figsize=(4.6 * len(shown), 3.4), constrained_layout=True)
    for ax, target in zip(np.atleast_1d(axes), shown, strict=True):
        plotting.spectra(spectra, target, budget=int(top), ax=ax)
        name = target.split(":")[-1].replace("encoder.", "").replace(".weight", "")
        ax.set_title(f"{name}: ABBA / LoRA error {ratio[target]:.3f}", fontsize=9)
    fig.suptitle(f"{label}: ΔW spectra where ABBA does best and worst against LoRA (r = {top})\n"
                 "LoRA keeps the top r singular values exactly: there its line covers the target's", fontsize=10)
    return fig


def _real_query_delta(work_dir: Path, quick: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """``(ΔW, W0)`` of the fine-tuned MiniLM's layer-0 query weight, or None without the ``real`` extra."""
    if not minilm_available():
        return None
    try:
        _, base, tuned, _ = real_weight_source(work_dir, quick)
    except ImportError:
        return None
    from .deltas import from_checkpoints

    pair = next(iter(from_checkpoints(base, tuned, include=r"encoder\.layer\.0\.attention\.self\.query\.weight$")))
    return pair.delta.numpy(), pair.base.numpy()


def run_inits(out_dir: Path, work_dir: Path, quick: bool, progress: bool, stage: _Stages,
              executor: experiments.LocalProcesses | None = None) -> list[str]:
    from . import plotting, targets

    lines = []
    size = 64 if quick else 128
    ranks = (4, 4)
    W0 = targets.gaussian(size, seed=1)
    with stage("initialization: step-0 gradient flow"):
        real = _real_query_delta(work_dir, quick)
        flow_target, flow_base = real if real is not None else (targets.gaussian(size, seed=0), W0)
        flow = init_study.gradient_flow(flow_target, (8, 8), base=flow_base, alpha=16.0, seed=0)
    flow.to_csv(out_dir / "inits_gradient_flow.csv", index=False)
    figure = plotting.gradient_flow(flow)
    figure.axes[0].set_title(f"Step-0 gradients of ABBA (8, 8), α = 16, on "
                             f"{'a MiniLM query delta' if real is not None else 'a Gaussian target'}, by init scheme",
                             fontsize=9)
    _save(figure, out_dir, "inits_gradient_flow")
    trains = flow.groupby("scheme")["trains"].first()
    lines += ["## Initialization: step-0 gradient flow (r1 = r2 = 8, α = 16)", "",
              f"Schemes that never train (all gradients exactly zero): {sorted(trains[~trains].index)}.", ""]

    with stage("initialization: the scaling law of Theorem 2"):
        moments = init_study.scaling_moments((1, 4, 16, 64) if quick else (1, 4, 16, 64, 256, 1024),
                                             size=(128, 128) if quick else (256, 256), draws=4 if quick else 8, seed=0)
    moments.to_csv(out_dir / "inits_scaling.csv", index=False)
    figure = plotting.scaling_moments(moments)
    figure.axes[0].set_title("Theorem 2: output second moment against r1 r2, by scale law", fontsize=9)
    _save(figure, out_dir, "inits_scaling")
    slopes = {name: np.polyfit(np.log(p.r1r2), np.log(p.forward), 1)[0] for name, p in moments.groupby("scale")}
    lines += ["## Initialization: scaling law (Thm 2), log-log slope of E[y²] against r1 r2", "",
              pd.DataFrame({"scale": list(slopes), "measured slope": [f"{v:.3f}" for v in slopes.values()],
                            "theory": [f"{1 - 2 * init_study.SCALES[k]:.3f}" for k in slopes]}).to_markdown(index=False),
              ""]

    quality_targets = {kind: (targets.make(kind, size, seed=0, **opts), W0) for kind, opts in
                       (("orthogonal", {}), ("low_rank", {"rank": size // 4}), ("sparse", {"density": 0.05}),
                        ("gaussian", {}))}
    if real is not None:
        quality_targets["MiniLM q delta"] = real
    thresholds = {k: metrics.truncated_svd_error(t, sum(ranks)) for k, (t, _) in quality_targets.items()}
    steps = 100 if quick else 500
    with stage("initialization: Adam fits from every scheme"):
        quality = init_study.fit_quality(quality_targets, ranks, inits.names("abba"),
                                         seeds=(0, 1) if quick else (0, 1, 2), checkpoints=(50, 200),
                                         threshold=thresholds, steps=steps, executor=executor,
                                         progress=progress)
    # Whether a fit reached LoRA's error is kept; when it did (seconds_to_threshold) is a timing.
    quality["reached_lora"] = np.isfinite(quality["seconds_to_threshold"])
    _write_table(quality, out_dir / "inits_quality.csv")
    figure = plotting.init_quality(quality, value="final_error")
    figure.axes[0].set_title(f"ABBA ({ranks[0]}, {ranks[1]}) fitted by Adam ({steps} steps) from each init scheme: "
                             f"final error, mean ± s.d. over {quality['seed'].nunique()} seeds", fontsize=9)
    _save(figure, out_dir, "inits_quality")
    table = quality.groupby("scheme").agg(final=("final_error", "mean"), at_50=("error_at_50", "mean"),
                                          beats_lora=("reached_lora", "sum"),
                                          fits=("seed", "size")).sort_values("final").reset_index()
    lines += [f"## Initialization: Adam fits by scheme (r1 = r2 = {ranks[0]}, {size}x{size} random targets"
              f"{' and a MiniLM delta' if real is not None else ''}), mean relative error", "",
              table.to_markdown(index=False, floatfmt=".4f"),
              "", "`beats_lora`: fits that reached LoRA's error at the same budget.", ""]
    return lines


def thorough_config(config: experiments.Config) -> experiments.Config:
    """Thorough ABBA fits (``effort="thorough"``) at ``config``'s top ABBA budget, on its first seed only.

    A thorough fit costs tens of default fits (``bench_thorough_grid``): on Fig. 2's grid it gives the
    lowest error the toolkit finds where that matters most, beside the default fits of every seed.
    """
    abba = next(spec for spec in config.methods if spec.method == "abba")
    spec = dataclasses.replace(abba, budgets=(max(abba.budgets),), ranks=(), effort="thorough")
    return dataclasses.replace(config, name=f"{config.name}-thorough", seeds=config.seeds[:1], spectra=False,
                               history=False, methods=(spec,))


def _construction(spec: experiments.TargetSpec) -> str:
    options = ", ".join(f"{k} {v:g}" for k, v in spec.options.items())
    return f"{spec.kind}{f' ({options})' if options else ''}"


def _full_summary(config: experiments.Config, grid: pd.DataFrame, thorough: pd.DataFrame) -> pd.DataFrame:
    """Per target kind at the top budget: LoRA, HiRA and ABBA (default, thorough), beside the paper's panel."""
    top = int(thorough["budget"].max())
    seed = int(thorough["seed"].iloc[0])
    rows = []
    for spec in config.targets:
        at_top = grid[(grid.target_kind == spec.kind) & (grid.budget == top)]
        errors = {method: at_top[at_top.method == method]["error"] for method in ("lora", "hira", "abba")}
        best = thorough[thorough.target_kind == spec.kind]["error"].iloc[0]
        default = at_top[(at_top.method == "abba") & (at_top.seed == seed)]["error"].iloc[0]
        panel = PAPER_PANELS.get(spec.kind)
        row = {"construction": _construction(spec), "paper panel": _panel_name(spec.kind),
               "LoRA": _mean_sd(errors["lora"]), "HiRA": _mean_sd(errors["hira"]), "ABBA": _mean_sd(errors["abba"]),
               f"ABBA thorough (seed {seed})": f"{best:.3f}" if best >= 5e-4 else f"{best:.1e}",
               "thorough vs default": f"{100 * (best / default - 1):+.2f}%"}
        if top == 72 and panel:  # the paper's values are read off its figure at r = 72 only
            row["ABBA (paper)"], row["LoRA (paper)"] = (f"{v:.2f}" for v in PAPER_R72[panel])
        rows.append(row)
    return pd.DataFrame(rows)


def run_full(out_dir: Path, work_dir: Path, quick: bool, progress: bool, stage: _Stages,
             executor: experiments.LocalProcesses | None = None) -> list[str]:
    from . import plotting

    config = experiments.builtin("fig2-full-quick" if quick else "fig2-full")
    size = "x".join(map(str, config.targets[0].shape))
    with stage(f"Fig. 2 at {size} on the constructions matching the paper's panels"):
        grid = experiments.run(config, work_dir / config.name, executor=executor, progress=progress)
    _copy_tables(work_dir / config.name, out_dir, "fig2_full")
    extra = thorough_config(config)
    top, seed = extra.methods[0].budgets[0], extra.seeds[0]
    with stage(f"Fig. 2 at {size}: thorough ABBA fits at r = {top}, seed {seed} (the longest stage)"):
        # One fit per unit: an interruption loses at most the thorough fits in flight.
        thorough = experiments.run(extra, work_dir / extra.name, executor=executor, progress=progress, batch=False)
    _write_table(thorough.results, out_dir / "fig2_full_thorough_results.csv")

    figure = plotting.error_vs_rank(grid.results)
    kinds = list(dict.fromkeys(grid.results["target_kind"]))
    for axis, kind in zip(figure.axes, kinds, strict=False):
        best = thorough.results[thorough.results.target_kind == kind]["error"]
        axis.plot([top] * len(best), best, "kx", ms=7, label=f"ABBA thorough (seed {seed})")
        panel = PAPER_PANELS.get(kind)
        if panel and top == 72:
            abba_paper, lora_paper = PAPER_R72[panel]
            axis.plot([top, top], [abba_paper, lora_paper], "k*", ms=7, mfc="none", label="paper, r = 72")
            axis.set_title(f"{axis.get_title()} (paper: {_panel_name(kind)})", fontsize=9)
    figure.axes[len(kinds) - 1].legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    seeds = grid.results["seed"].nunique()
    figure.suptitle(f"Fig. 2 at {size}, {seeds} seeds (mean ± s.d.); "
                    "x: thorough fit; stars: the paper's ABBA and LoRA at r = 72", fontsize=10)
    _save(figure, out_dir, "fig2_full_reconstruction")
    table = _full_summary(config, grid.results, thorough.results)
    return [f"## Matrix reconstruction (Fig. 2) at {size}, r = {top}: mean ± s.d. over {seeds} seeds, "
            f"thorough fits on seed {seed}", "",
            table.to_markdown(index=False, disable_numparse=True), ""]


def reproduce(
    out_dir: str | os.PathLike | None = None,
    *,
    work_dir: str | os.PathLike = "results",
    quick: bool = False,
    studies: Iterable[str] = ("main", "inits"),
    workers: int = 1,
    progress: bool = True,
) -> Path:
    """Run the studies; write figures, tables and ``summary.md`` to ``out_dir``; return the summary's path.

    Parameters
    ----------
    out_dir : path, optional
        Where figures (PNG, SVG), tables (CSV, without timing columns) and ``summary.md`` go;
        default ``work_dir / "figures"``.
    work_dir : path
        Each experiment's run directory (journal and full tables) lives here, so an interrupted run
        resumes where it stopped.
    quick : bool
        Small sizes (CI and smoke tests).
    studies : iterable of {"main", "inits", "full"}
        ``"full"`` (about 25 minutes on 2 cores) is not run unless asked for: the CLI's ``--full``.
    workers : int
        Local worker processes for the fits, one torch thread each (the CLI's default: one per
        usable core, :func:`abba_analysis.threads.usable_cores`); 1 runs them in this process. The
        errors do not depend on it beyond float rounding (batches are cut to keep every worker
        busy). With as many workers as cores, the solver-convergence study's times are those of a
        fit beside another single-threaded fit, each on its own core. Workers are spawned: a script
        that asks for them must call this under ``if __name__ == "__main__":``.
    progress : bool
        Print a numbered heading per stage (with its time) and a progress bar per long stage.
    """
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "abba-analysis"  # stable SVG ids: reruns give the same files
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    studies = list(studies)
    unknown = sorted(set(studies) - set(STUDIES))
    if unknown:
        raise ValueError(f"studies must be among {list(STUDIES)}, got {unknown}")
    work = Path(work_dir)
    out = Path(out_dir) if out_dir is not None else work / "figures"
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    stage = _Stages(sum(STAGES[s] for s in studies), progress)
    flags = " --quick" * quick + " --full" * ("full" in studies)
    lines = [f"# abba-analysis reproduce{flags}", ""]
    # One pool of workers for every stage: starting them costs seconds. In-process: no executor (None).
    pool = experiments.LocalProcesses(workers) if workers > 1 else contextlib.nullcontext()
    with pool as executor:
        if "main" in studies:
            lines += run_main(out, work, quick, progress, stage, executor)
        if "inits" in studies:
            lines += run_inits(out, work, quick, progress, stage, executor)
        if "full" in studies:
            lines += run_full(out, work, quick, progress, stage, executor)
    summary = out / "summary.md"
    summary.write_text("\n".join(lines) + "\n")
    return summary
