"""``effort="thorough"`` on the main job's own fits: every ABBA fit of Fig. 2 and of the real-weight panel.

For each ABBA work unit of ``reproduce`` (the Fig. 2 grid: four 512 x 512 targets, five budgets, three
seeds; the real panel: the MiniLM fine-tune's twelve matrices of layers 0 and 5 at budgets 8 and 32),
with the unit's own target, seed, dtype (float32) and solver options:

- ``thorough``: ``aa.fit(..., effort="thorough")``, whose record of starts also gives three of the
  others: its first ten starts are ``restarts=9``'s; its ``literature`` start is block-coordinate
  descent with the Hadamard-decomposition literature's per-block momentum (``aa.solvers.literature.literature_bcd``,
  500 sweeps) from the literature's own ``sqrt-target`` start; its ``adam`` start is Adam for
  ``aa.search.ADAM_STEPS`` steps (20,000) from the paper's init (``abba-paper``), as
  ``fit(solver="adam")`` runs it with the same seed (``tests/test_search.py`` checks all three against
  separate runs; Adam's chaotic path makes the last equal only to rounding: 2e-7 relative after
  20,000 steps on the test's target). A thorough fit that returns at the rank-``r1 r2`` floor has no
  such records (none of them can end lower);
- ``default``: the default fit, run again for its time.

Each case runs in a worker process on one thread (``--workers``, default: the usable cores) and is
appended to ``--out`` as it finishes; a rerun skips the cases already there, so an interrupted run
resumes. It then prints per case (medians over seeds) every final error, thorough's gain over the
default and its margin to the best other (negative: thorough is lower; the worst seed), and its time
over the default's. Margins within :data:`TIE` count as ties: thorough's error is recomputed from its
factors, while the records of its starts hold their solver's last error, and in float32 the two
computations of one iterate's error differ by about 1e-7.

    python benchmarks/bench_thorough_grid.py [--panels fig2 real] [--seeds 0 1 2] [--workers N]
                                             [--out FILE] [--quick]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import multiprocessing
import time
import warnings
from pathlib import Path

import torch

import abba_analysis as aa
from _timing import RESULTS, machine, median
from abba_analysis import experiments
from abba_analysis.experiments.units import load_target
from abba_analysis.reproduce import real_weight_config, real_weight_source


TIE = 1e-5  # relative margin below which two float32 errors count as equal


def units(quick: bool, panels: list[str], seeds: list[int] | None) -> list[experiments.units.WorkUnit]:
    """The main job's ABBA work units of ``panels`` (``"fig2"``, ``"real"``) at ``seeds`` (None: all;
    ``quick``: reproduce's quick grid)."""
    configs = []
    if "fig2" in panels:
        configs.append(experiments.config.builtin("fig2-quick" if quick else "fig2"))
    if "real" in panels:
        configs.append(real_weight_config(*real_weight_source(RESULTS, quick)[1:], quick=quick))
    return [u for config in configs for u in experiments.expand(config)
            if u.method == "abba" and (seeds is None or u.seed in seeds)]


def case_name(unit) -> str:
    """A row label: the target kind (or the real tensor's short name) and its shape."""
    if unit.target.kind == "checkpoint":
        return "real " + unit.target.tensor.removeprefix("encoder.").removesuffix(".weight")
    return f"{unit.target.kind} {unit.target.shape[0]}x{unit.target.shape[1]}"


def run_case(unit: experiments.units.WorkUnit) -> dict:
    """Fit one unit every way; return its record."""
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # restarts' and Adam's rank warnings are expected here
    target, _ = load_target(unit.target, unit.dtype)
    T = torch.as_tensor(target)
    options = dict(unit.options)
    begin = time.perf_counter()
    thorough = aa.fit(T, "abba", unit.ranks, seed=unit.seed, effort="thorough", **options)
    thorough_s = time.perf_counter() - begin
    begin = time.perf_counter()
    default = aa.fit(T, "abba", unit.ranks, seed=unit.seed, **options)
    default_s = time.perf_counter() - begin
    first = thorough.starts[: 1 + aa.search.RESTARTS]
    stage = {s.stage: s.error for s in thorough.starts if s.stage in ("literature", "adam", "polish")}
    return {"key": unit.key, "case": case_name(unit), "r": unit.ranks[0], "seed": unit.seed,
            "default": default.error, "restarts9": min(s.error for s in first), "thorough": thorough.error,
            "literature": stage.get("literature"), "adam": stage.get("adam"), "polish": stage.get("polish"),
            "default_s": default_s, "thorough_s": thorough_s, "starts": len(thorough.starts)}


def report(records: list[dict]) -> None:
    print(f"# ABBA, float32, CPU; {machine()}; one worker thread per case; medians over seeds; "
          f"Adam {aa.search.ADAM_STEPS} steps; '-': thorough returned at the rank-r1 r2 floor")
    print("| case | r1=r2 | seeds | default | thorough | restarts=9 | literature | adam | thorough vs default "
          "| thorough vs best other, worst seed | thorough time / default |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    groups: dict[tuple, list[dict]] = {}
    for rec in records:
        groups.setdefault((rec["case"], rec["r"]), []).append(rec)
    gains, margins, costs = [], [], []
    for (case, r), rows in groups.items():
        for row in rows:
            row["gain"] = row["thorough"] / row["default"] - 1
            others = [row[k] for k in ("restarts9", "literature", "adam") if row[k] is not None]
            row["margin"] = row["thorough"] / min(others) - 1
            row["cost"] = row["thorough_s"] / row["default_s"]
        cell = {k: median(values) if (values := [row[k] for row in rows if row[k] is not None]) else None
                for k in ("default", "thorough", "restarts9", "literature", "adam", "gain", "cost")}
        margin = max(row["margin"] for row in rows)
        gains += [row["gain"] for row in rows]
        margins.append(margin), costs.extend(row["cost"] for row in rows)
        print(f"| {case} | {r} | {len(rows)} | {cell['default']:.5f} | {cell['thorough']:.5f} "
              f"| {cell['restarts9']:.5f} | {_cell(cell['literature'])} | {_cell(cell['adam'])} "
              f"| {100 * cell['gain']:+.2f}% | {100 * margin:+.3f}% | {cell['cost']:.1f} |")
    above = sum(m > TIE for m in margins)
    print(f"thorough vs default over {len(gains)} fits: median {100 * median(gains):+.2f}%, best "
          f"{100 * min(gains):+.2f}%; cases where another ends lower (by more than {100 * TIE:g}%) in some seed: "
          f"{above} of {len(margins)}, worst {100 * max(margins):+.3f}%; time / default: median "
          f"{median(costs):.1f}, max {max(costs):.1f}")


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.5f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=aa.threads.usable_cores())
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_thorough_grid.jsonl",
                        help="cases done so far, one JSON object per line (resumed from)")
    parser.add_argument("--panels", nargs="+", choices=["fig2", "real"], default=["fig2", "real"])
    parser.add_argument("--seeds", type=int, nargs="+", help="only these seeds (default: all)")
    parser.add_argument("--quick", action="store_true", help="reproduce's quick grid")
    args = parser.parse_args()
    out = args.out.with_suffix(".quick.jsonl") if args.quick else args.out
    todo = units(args.quick, args.panels, args.seeds)
    done = {}
    if out.exists():
        # Records of a thorough search without the Adam leg (no "polish" field) are not resumed.
        done = {rec["key"]: rec for rec in map(json.loads, out.read_text().splitlines()) if "polish" in rec}
    pending = [u for u in todo if u.key not in done]
    # Seed by seed (a cut-short run covers every case), the costliest first within one.
    pending.sort(key=lambda u: (u.seed, -u.estimated_cost))
    out.parent.mkdir(parents=True, exist_ok=True)
    print(f"{len(todo) - len(pending)} of {len(todo)} cases already in {out}; running {len(pending)} "
          f"on {args.workers} workers", flush=True)
    with cf.ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(run_case, u) for u in pending]
        for i, future in enumerate(cf.as_completed(futures), 1):
            rec = future.result()
            done[rec["key"]] = rec
            with out.open("a") as f:
                f.write(json.dumps(rec) + "\n")
            print(f"[{i}/{len(pending)}] {rec['case']} r={rec['r']} seed {rec['seed']}: thorough "
                  f"{rec['thorough']:.5f} default {rec['default']:.5f} ({rec['thorough_s']:.0f} s)", flush=True)
    report([done[u.key] for u in todo])


if __name__ == "__main__":
    main()
