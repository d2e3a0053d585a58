"""The ``abba-analysis`` command line.

    abba-analysis fit --kind orthogonal --size 256 --rank 24
    abba-analysis fit --target delta.npy --base w0.npy --rank 16
    abba-analysis reproduce [--quick] [--study all|main|inits]
    abba-analysis sweep BASE FINETUNED --include 'q_proj' --budgets 8 16 --out results/sweep
    abba-analysis inspect BASE FINETUNED --include '\\.(q|v)_proj\\.weight$'
    abba-analysis extract BASE FINETUNED --method abba --budget 16 --out results/adapter
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

from . import targets
from ._validation import compile_pattern, resolve_device
from ._version import __version__
from .budget import abba_ranks_for_lora
from .fit import EFFORTS, fit


METHODS = ("lora", "hira", "abba")


def _fit_target(args: argparse.Namespace) -> tuple[object, object | None, str]:
    """The target, HiRA's W0 (None when there is none) and a line saying what they are."""
    from .deltas import load_matrix

    base = load_matrix(args.base, args.base_tensor) if args.base else None
    if args.target:
        target = load_matrix(args.target, args.tensor)
        shape = "x".join(map(str, target.shape))
        what = f"{args.target}{f' [{args.tensor}]' if args.tensor else ''} ({shape}, {str(target.dtype)[6:]})"
    else:
        if args.tensor:
            raise ValueError("--tensor names a tensor of a --target file; no --target was given")
        n = args.n or args.size
        options = {"rank": args.target_rank} if args.kind == "low_rank" else {}
        target = targets.make(args.kind, args.size, n, seed=args.seed, **options)
        what = f"{args.kind} {args.size}x{n} (seed {args.seed})"
        if base is None:
            base = targets.gaussian(args.size, n, seed=args.seed + 1)
            what += f"; HiRA's W0: Gaussian (seed {args.seed + 1})"
    if base is not None and tuple(base.shape) != tuple(target.shape):
        raise ValueError(f"--base has shape {tuple(base.shape)} but the target has shape {tuple(target.shape)}")
    if args.base:
        what += f"; HiRA's W0: {args.base}"
    return target, base, what


def _fit_command(args: argparse.Namespace) -> int:
    """Fit LoRA, HiRA and ABBA at one budget to a generated target or a matrix from a file; print each fit."""
    if args.device is not None:
        resolve_device(args.device)
    target, base, what = _fit_target(args)
    methods = args.method or [m for m in METHODS if m != "hira" or base is not None]
    if "hira" in methods and base is None:
        raise ValueError("HiRA needs the pretrained weight W0: give --base FILE (same shape as the target)")
    r1, r2 = abba_ranks_for_lora(args.rank)
    common = {"device": args.device, "threads": args.threads}
    iterative = {k: v for k, v in (("max_iter", args.max_iter), ("rtol", args.rtol)) if v is not None}
    iterative["effort"] = args.effort
    ranks = {"lora": args.rank, "hira": args.rank, "abba": (r1, r2)}
    fits = [fit(target, m, ranks[m], base=base if m == "hira" else None, seed=None if m == "lora" else args.seed,
                **common, **({} if m == "lora" else iterative)) for m in methods]
    budget = fits[0].num_params
    print(f"target: {what}; budget {budget} parameters (LoRA rank {args.rank})")
    if base is None and args.method is None:
        print("HiRA skipped: it needs the pretrained weight W0 (--base FILE)")
    print(f"{'method':<6} {'ranks':<9} {'rel. error':>10}  {'status':<9} {'solver':<6} {'iters':>5} {'seconds':>7}")
    for f in fits:
        ranks_text = ",".join(map(str, f.ranks))
        print(f"{f.method:<6} {ranks_text:<9} {f.error:>10.5f}  {f.status:<9} {f.solver:<6} {f.iterations:>5} "
              f"{f.seconds:>7.2f}")
    for f in fits:
        if f.status == "max_iter":
            print(f"note: {f.method} stopped at the sweep limit ({f.iterations}) before its stopping rule was met; "
                  "its error may still fall (raise --max-iter)")
        elif f.status not in ("exact", "converged"):
            print(f"note: {f.method}: {f.message}")
    abba = next((f for f in fits if f.method == "abba"), None)
    if abba is not None and abba.bracket is not None:
        m, n = target.shape[-2:]
        b = abba.bracket
        print(f"ABBA bracket: SVD at rank {min(r1 * r2, m, n)} = {b.lower:.5f} <= ABBA <= "
              f"LoRA at rank {max(r1, r2)} = {b.upper:.5f}; position {abba.bracket_position:.3f}")
    return 0


def _inspect_command(args: argparse.Namespace) -> int:
    """Print one row per layer of a checkpoint pair: size and rank of ΔW, LoRA's error at a few ranks."""
    from .deltas import from_checkpoints, summarize

    _check_selection(args)
    pairs = from_checkpoints(args.base, args.finetuned, include=args.include, exclude=args.exclude,
                             allow_dtype_mismatch=args.allow_dtype_mismatch)
    print(pairs.report())
    ranks = args.ranks
    header = (f"{'layer':<48} {'shape':>11} {'|dW|/|W0|':>9} {'num.rank':>8} {'eff.rank':>8} {'st.rank':>7} "
              + " ".join(f"{'LoRA r' + str(r):>8}" for r in ranks))
    print(header)
    for layer in pairs:
        row = summarize(layer, ranks)
        shape = "x".join(map(str, row["shape"]))
        print(f"{row['name'][-48:]:<48} {shape:>11} {row['relative_norm']:>9.4f} {row['numerical_rank']:>8d} "
              f"{row['effective_rank']:>8.1f} {row['stable_rank']:>7.2f} "
              + " ".join(f"{row[f'lora_error_r{r}']:>8.4f}" for r in ranks))
    return 0


def _sweep_command(args: argparse.Namespace) -> int:
    """Fit LoRA / HiRA / ABBA to every selected layer of a checkpoint pair; one tidy row per fit."""
    from .experiments import parse, run

    _check_selection(args)
    target = {"kind": "checkpoint", "base": args.base}
    target.update({k: v for k, v in (("finetuned", args.finetuned), ("include", args.include),
                                     ("exclude", args.exclude)) if v})
    iterative = {"rtol": args.rtol, "max_iter": args.max_iter}
    config = parse({
        "experiment": {"name": args.name, "seeds": args.seeds, "dtype": args.dtype, "device": args.device,
                       "threads": args.threads},
        "targets": [target],
        "methods": [{"method": m, "budgets": args.budgets,
                     **({"options": iterative, "effort": args.effort} if m != "lora" else {})}
                    for m in args.methods],
    })
    tables = run(config, args.out, executor=_executor(args), progress=not args.no_progress)
    summary = tables.results.pivot_table(index="target", columns=["method", "budget"], values="error", aggfunc="mean")
    print(summary.round(4).to_string())
    if args.heatmap:
        import matplotlib

        matplotlib.use("Agg")
        from .plotting import layer_heatmap

        layer_heatmap(tables.results, relative_to_lora=True).savefig(args.heatmap, dpi=150, bbox_inches="tight")
        print(f"heatmap written to {args.heatmap}")
    print(f"{len(tables.results)} rows in {args.out}/results.csv")
    return 0


def _check_selection(args: argparse.Namespace) -> None:
    """Compile ``--include`` / ``--exclude`` at once, so that a bad pattern names its option."""
    compile_pattern(args.include, "--include")
    compile_pattern(args.exclude, "--exclude")


def _add_selection(p: argparse.ArgumentParser) -> None:
    p.add_argument("--include", default=None, help="regex on tensor names to keep")
    p.add_argument("--exclude", default=None, help="regex on tensor names to drop")


def _add_effort(p: argparse.ArgumentParser) -> None:
    p.add_argument("--effort", choices=EFFORTS, default="default",
                   help="search effort of the iterative fits: 'thorough' searches several starts and hops "
                        "for a lower minimum, at several times the cost (abba_analysis.search)")


def _add_runner_options(p: argparse.ArgumentParser) -> None:
    """The options of commands that fit on the experiment runner (sweep, extract)."""
    p.add_argument("--rtol", type=float, default=1e-5, help="stopping rule of the iterative fits")
    p.add_argument("--max-iter", type=int, default=300, help="sweep limit of the iterative fits")
    _add_effort(p)
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=0, help="run on this many local worker processes")
    p.add_argument("--scheduler", default=None, help="run on a Dask cluster: its scheduler address, tcp://host:port")
    p.add_argument("--no-progress", action="store_true")


def _executor(args: argparse.Namespace):
    """The executor chosen by ``--workers`` / ``--scheduler`` (None: in-process)."""
    if args.scheduler and args.workers:
        raise ValueError("give --scheduler or --workers, not both")
    if args.scheduler:
        from .experiments import Dask

        return Dask(address=args.scheduler)
    if args.workers:
        from .experiments import LocalProcesses

        return LocalProcesses(args.workers)
    return None


def _extract_command(args: argparse.Namespace) -> int:
    """Fit every selected layer's update of a checkpoint pair and write it as a PEFT adapter."""
    from .extract import extract, total_error

    _check_selection(args)
    resolve_device(args.device)
    options = {"rtol": args.rtol, "max_iter": args.max_iter}
    if args.total_params is not None and args.budget is not None:
        raise ValueError("give --budget (every layer) or --total-params (allocated over layers), not both")
    budget = None if args.total_params is not None else (args.budget if args.budget is not None else 16)
    result = extract(args.base, args.finetuned, args.out, method=args.method, budget=budget,
                     total_params=args.total_params, include=args.include, exclude=args.exclude, seed=args.seed,
                     strip_prefix=args.strip_prefix, options=options, effort=args.effort, device=args.device,
                     executor=_executor(args),
                     progress=not args.no_progress)
    layers = result.layers
    shown = ["layer", "m", "n", "budget", "r1", "r2", "params", "error", "lora_error", "status"]
    if args.total_params is not None:
        shown += ["uniform_budget", "uniform_error"]
    print(layers[shown].to_string(index=False))
    line = f"{len(layers)} layers, {layers['params'].sum()} parameters, total relative error {total_error(layers):.4f}"
    if args.total_params is not None:
        line += (f"; uniform budget {layers['uniform_budget'].iloc[0]} ({layers['uniform_params'].sum()} parameters): "
                 f"{total_error(layers, 'uniform_error'):.4f}")
    print(line)
    print(f"adapter written to {result.adapter}/, table to {Path(args.out) / 'layers.csv'}")
    return 0


def _reproduce_command(args: argparse.Namespace) -> int:
    """Rerun the paper's expressivity experiments and write every figure, table and a summary."""
    from .reproduce import reproduce
    from .threads import usable_cores

    studies = ["main", "inits"] if args.study == "all" else [args.study]
    if args.full:
        studies.append("full")
    start = time.perf_counter()
    summary = reproduce(args.out, work_dir=args.work_dir, quick=args.quick, studies=studies,
                        workers=args.workers or usable_cores(), progress=not args.no_progress)
    print(summary.read_text())
    print(f"figures and tables written to {summary.parent}/ in {time.perf_counter() - start:.0f} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="abba-analysis", description="Expressivity of LoRA, HiRA and ABBA updates.",
                                     allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fit", help=_fit_command.__doc__, description=_fit_command.__doc__, allow_abbrev=False)
    p.add_argument("--target", default=None, metavar="FILE",
                   help="fit this matrix: .npy, .pt/.pth (weights_only) or .safetensors (default: a generated one)")
    p.add_argument("--tensor", default=None, metavar="NAME", help="which tensor of a --target holding several")
    p.add_argument("--base", default=None, metavar="FILE", help="HiRA's pretrained weight W0, same forms as --target")
    p.add_argument("--base-tensor", default=None, metavar="NAME", help="which tensor of a --base holding several")
    p.add_argument("--method", nargs="+", default=None, choices=METHODS,
                   help="methods to fit (default: all three; HiRA only with a W0)")
    p.add_argument("--kind", default="orthogonal", choices=sorted(targets.KINDS), help="generated target's kind")
    p.add_argument("--size", type=int, default=256, help="generated target's rows m (and columns, unless --n)")
    p.add_argument("--n", type=int, default=None, help="generated target's columns n")
    p.add_argument("--target-rank", type=int, default=32, help="rank of a generated low_rank target")
    p.add_argument("--rank", type=int, default=24, help="LoRA/HiRA rank; ABBA gets the same budget")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-iter", type=int, default=None, help="sweep limit of HiRA and ABBA (default: the solver's)")
    p.add_argument("--rtol", type=float, default=None, help="stopping rule of HiRA and ABBA (default: the solver's)")
    _add_effort(p)
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads of each CPU fit (default: chosen by size; see abba_analysis.threads)")
    p.set_defaults(handler=_fit_command)

    p = sub.add_parser("inspect", help=_inspect_command.__doc__, description=_inspect_command.__doc__,
                       allow_abbrev=False)
    p.add_argument("base", help="base checkpoint: .safetensors/.bin file, model directory or hub id")
    p.add_argument("finetuned", help="fine-tuned checkpoint, same forms")
    _add_selection(p)
    p.add_argument("--ranks", type=int, nargs="+", default=[4, 16, 64], help="ranks for LoRA's error")
    p.add_argument("--allow-dtype-mismatch", action="store_true", help="accept different storage dtypes")
    p.set_defaults(handler=_inspect_command)

    p = sub.add_parser("sweep", aliases=["sweep-model"], help=_sweep_command.__doc__,
                       description=_sweep_command.__doc__, allow_abbrev=False)
    p.add_argument("base", help="base checkpoint: file, model directory, hub id, or 'minilm'")
    p.add_argument("finetuned", nargs="?", default=None,
                   help="fine-tuned checkpoint (targets are the deltas); omit to fit the base's own weights")
    _add_selection(p)
    p.add_argument("--budgets", type=int, nargs="+", default=[8, 16, 32], help="LoRA-equivalent ranks")
    p.add_argument("--methods", nargs="+", default=["lora", "hira", "abba"], choices=["lora", "hira", "abba"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads of each CPU fit (default: chosen by size; see abba_analysis.threads)")
    p.add_argument("--name", default="sweep", help="experiment name (a column of the table)")
    p.add_argument("--out", default="results/sweep", help="run directory (resumable)")
    p.add_argument("--heatmap", default=None, help="also draw a layer heatmap to this file (.png/.svg)")
    _add_runner_options(p)
    p.set_defaults(handler=_sweep_command)

    p = sub.add_parser("extract", help=_extract_command.__doc__, description=_extract_command.__doc__,
                       allow_abbrev=False)
    p.add_argument("base", help="base checkpoint: file, model directory, hub id, or 'minilm'")
    p.add_argument("finetuned", help="fine-tuned checkpoint, same forms")
    p.add_argument("--method", default="abba", choices=["lora", "abba", "hira"],
                   help="abba is written as a PEFT LoHa adapter, lora as LoRA, hira as PEFT's HiRA")
    p.add_argument("--budget", type=int, default=None, help="LoRA-equivalent rank of every layer (default 16)")
    p.add_argument("--total-params", type=int, default=None,
                   help="instead of --budget: this many parameters in all, allocated over layers for least error")
    p.add_argument("--out", required=True, help="output directory: adapter/, layers.csv and the resumable run/")
    _add_selection(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--strip-prefix", default="", help="prefix to drop from module names, e.g. 'bert.'")
    _add_runner_options(p)
    p.set_defaults(handler=_extract_command)

    p = sub.add_parser("reproduce", help=_reproduce_command.__doc__, description=_reproduce_command.__doc__,
                       allow_abbrev=False)
    p.add_argument("--quick", action="store_true", help="small sizes (under 2 minutes), for CI and smoke tests")
    p.add_argument("--study", choices=["all", "main", "inits"], default="all",
                   help="main: Fig. 2, solver convergence and real weights; inits: initialization studies")
    p.add_argument("--full", action="store_true",
                   help="also Fig. 2 at 768x768 on the constructions matching the paper's panels, with thorough "
                        "fits at r = 72 (about 25 minutes more on 2 cores)")
    p.add_argument("--work-dir", default="results", help="where runs keep their journals (resumable)")
    p.add_argument("--out", default=None, help="where figures, tables and summary.md go (default: WORK_DIR/figures)")
    p.add_argument("--workers", type=int, default=0,
                   help="local worker processes for the fits (default: one per core; 1: in this process)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(handler=_reproduce_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``abba-analysis`` script."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, TypeError, ImportError, OSError) as error:  # user errors: one line, no traceback
        message = " ".join(str(error).split("\n"))
        print(f"abba-analysis: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("abba-analysis: interrupted (finished work of a sweep or reproduce is kept; rerun to resume)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
