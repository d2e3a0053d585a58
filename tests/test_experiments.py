import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import abba_analysis as aa
from abba_analysis import experiments
from abba_analysis.experiments import ConfigError

SMALL = """
[experiment]
name = "small"
seeds = [0, 1]
spectra = true
history = true

[[targets]]
kind = "orthogonal"
shape = [40, 32]

[[targets]]
kind = "sparse"
shape = [40, 32]
options = { density = 0.1 }

[[methods]]
method = "lora"
budgets = [4, 8]

[[methods]]
method = "abba"
budgets = [4, 8]
options = { max_iter = 30 }

[[methods]]
method = "hira"
budgets = [4]
options = { max_iter = 30 }
"""


def with_change(text, old, new):
    assert old in text
    return text.replace(old, new, 1)


@pytest.mark.parametrize(
    "change,match",
    [
        (('name = "small"', 'name = "small"\ncolour = "red"'), r"\[experiment\]: unknown key\(s\) \['colour'\]"),
        (('method = "abba"', 'method = "abbba"'), r"methods\[1\]\.method: method must be one of"),
        (('budgets = [4, 8]\noptions = { max_iter = 30 }', 'budgets = [4, -8]\noptions = { max_iter = 30 }'),
         r"methods\[1\]\.budgets must be a non-empty list of positive ints"),
        (('options = { max_iter = 30 }', 'options = { max_iters = 30 }'), r"no option\(s\) \['max_iters'\]"),
        (('options = { max_iter = 30 }', 'options = { max_iter = 0 }'), "max_iter must be in"),
        (('kind = "sparse"', 'kind = "sparce"'), r"targets\[1\]\.kind must be one of"),
        (('options = { density = 0.1 }', 'options = { densty = 0.1 }'), r"targets\[1\]\.options: sparse takes no option"),
        (('options = { density = 0.1 }', 'options = { density = 2.0 }'), "density must be in"),
        (('shape = [40, 32]', 'shape = [40]'), r"targets\[0\]\.shape must be \[m, n\]"),
        (('seeds = [0, 1]', 'seeds = "0"'), "seeds must be a non-empty list"),
        (('seeds = [0, 1]', 'seeds = [0, 1]\nthreads = 0'), r"threads must be an int >= 1"),
        (('seeds = [0, 1]', 'seeds = [0, 1]\nthreads = "2"'), r"threads must be an int >= 1"),
        (('method = "lora"', 'method = "lora"\ninit = "svd"'), "closed-form and takes no init"),
        (('method = "abba"', 'method = "abba"\ninits = ["lora-style"]'), "applies to"),
        (('method = "abba"', 'method = "abba"\nsolver = "sgd"'), "solver must be 'auto' or one of"),
        (('[[methods]]\nmethod = "hira"', '[[method]]\nmethod = "hira"'), r"config: unknown key\(s\) \['method'\]"),
    ],
)
def test_bad_configs_fail_before_any_fit(tmp_path, monkeypatch, change, match):
    monkeypatch.setattr(experiments.runner, "run_batch", lambda batch: pytest.fail("a fit ran"))
    with pytest.raises(ConfigError, match=match):
        cfg = experiments.load(with_change(SMALL, *change))
        experiments.run(cfg, tmp_path, progress=False)
    assert not (tmp_path / "journal.jsonl").exists()


def test_ranks_beyond_the_target_fail_before_any_fit(tmp_path):
    cfg = experiments.load(with_change(SMALL, "budgets = [4]", "budgets = [40]"))
    with pytest.raises(ConfigError, match="exceed min"):
        experiments.run(cfg, tmp_path, progress=False)


def test_run_writes_documented_tables_and_resumes(tmp_path, monkeypatch):
    cfg = experiments.load(SMALL)
    units = experiments.expand(cfg)
    assert len(units) == 2 * 2 * (2 + 2 + 1)
    result = experiments.run(cfg, tmp_path, progress=False)
    table = pd.read_csv(tmp_path / "results.csv")
    assert len(table) == len(units) and table["key"].is_unique
    documented = experiments.__doc__
    for column in table.columns:
        assert column in documented, column
    assert set(pd.read_csv(tmp_path / "spectra.csv")["source"]) == {"target", "lora", "abba", "hira"}
    assert len(pd.read_csv(tmp_path / "histories.csv")) > 0
    # Bounds hold row by row.
    assert (table.error >= table.lower_bound - 1e-6).all()
    abba = table[table.method == "abba"]
    assert (abba.error <= abba.upper_bound + 1e-6).all()
    lora = table[table.method == "lora"]
    np.testing.assert_allclose(lora.error, lora.lora_error, atol=1e-6)
    # Rerun: nothing left to do.
    monkeypatch.setattr(experiments.runner, "run_batch", lambda batch: pytest.fail("a finished fit ran again"))
    again = experiments.run(cfg, tmp_path, progress=False)
    pd.testing.assert_frame_equal(again.results, result.results)


def test_a_new_package_version_gives_new_keys(monkeypatch):
    """Solver defaults are not in a unit's options, so a run made by another version is not reused."""
    unit = experiments.expand(experiments.load(SMALL))[0]
    before = unit.key
    monkeypatch.setattr(experiments.units, "__version__", "0.0.0-other")
    assert unit.key != before


class StopAfter:
    """An executor that is interrupted (as by Ctrl-C) after a number of fits."""

    def __init__(self, count):
        self.count = count

    def map_unordered(self, function, units):
        for i, unit in enumerate(units):
            if i == self.count:
                raise KeyboardInterrupt
            yield function(unit)


def test_interrupted_run_keeps_finished_rows_and_reruns_the_rest(tmp_path):
    cfg = experiments.load(SMALL)
    with pytest.raises(KeyboardInterrupt):
        experiments.run(cfg, tmp_path, executor=StopAfter(7), progress=False)
    assert len(pd.read_csv(tmp_path / "results.csv")) == 7
    calls = []
    original = experiments.runner.run_batch

    def counting(batch):
        calls.extend(u.key for u in batch.units)
        return original(batch)

    experiments.runner.run_batch = counting
    try:
        result = experiments.run(cfg, tmp_path, progress=False)
    finally:
        experiments.runner.run_batch = original
    assert len(calls) == len(experiments.expand(cfg)) - 7
    assert len(result.results) == len(experiments.expand(cfg)) and result.results["key"].is_unique


def test_a_torn_last_line_is_dropped_and_redone(tmp_path):
    cfg = experiments.load(SMALL)
    with pytest.raises(KeyboardInterrupt):
        experiments.run(cfg, tmp_path, executor=StopAfter(3), progress=False)
    with open(tmp_path / "journal.jsonl", "a") as f:
        f.write('{"row": {"key": "abc", "err')  # a write cut short
    with pytest.warns(UserWarning, match="incomplete record"):
        result = experiments.run(cfg, tmp_path, progress=False)
    assert len(result.results) == len(experiments.expand(cfg))


def test_killed_process_loses_no_finished_row(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(with_change(SMALL, "seeds = [0, 1]", "seeds = [0, 1, 2, 3]"))
    out = tmp_path / "out"
    script = textwrap.dedent(f"""
        import abba_analysis as aa
        aa.experiments.run(aa.experiments.load({str(config)!r}), {str(out)!r}, progress=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    journal = out / "journal.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:
        if journal.exists() and len(journal.read_text().splitlines()) >= 5:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    lines = journal.read_text().splitlines()
    assert len(lines) >= 5
    assert all(json.loads(line)["row"]["key"] for line in lines)  # every line is whole
    result = experiments.run(experiments.load(config), out, progress=False)
    assert len(result.results) == len(experiments.expand(experiments.load(config)))
    assert result.results["key"].is_unique


FIG2_SMALL = """
[experiment]
name = "fig2-test"
seeds = [0, 1, 2]
dtype = "float64"

[[targets]]
kind = "orthogonal"
shape = [96, 96]

[[targets]]
kind = "sparse"
shape = [96, 96]
options = { density = 0.05 }

[[targets]]
kind = "gaussian"
shape = [96, 96]

[[targets]]
kind = "low_rank"
shape = [96, 96]
options = { rank = 24 }

[[methods]]
method = "lora"
budgets = [8, 16, 24]

[[methods]]
method = "abba"
budgets = [8, 16, 24]
options = { rtol = 1e-5 }
"""


def test_fig2_qualitative_result_at_a_small_size(tmp_path):
    table = experiments.run(experiments.load(FIG2_SMALL), tmp_path, progress=False).results
    lora = table[table.method == "lora"].set_index(["target", "budget"])["error"]
    abba = table[table.method == "abba"]
    for _, row in abba.iterrows():
        # Never above LoRA at rank r1 (the upper bound) on any kind.
        assert row.error <= aa.metrics.truncated_svd_error(
            aa.targets.make(row.target_kind, 96, seed=row.seed,
                            **({"rank": 24} if row.target_kind == "low_rank" else
                               {"density": 0.05} if row.target_kind == "sparse" else {})), row.r1) + 1e-9
        if row.target_kind != "low_rank" and row.budget >= 16:
            assert row.error < lora[(row.target, row.budget)], (row.target, row.budget)


def test_batched_runs_give_the_unbatched_table(tmp_path):
    cfg = experiments.load(FIG2_SMALL.replace("budgets = [8, 16, 24]", "budgets = [8]"))
    units = experiments.expand(cfg)
    batches = experiments.make_batches(units)
    assert len(batches) < len(units) and max(len(b) for b in batches) == 12  # 4 kinds x 3 seeds
    assert sorted(u.key for b in batches for u in b.units) == sorted(u.key for u in units)
    batched = experiments.run(cfg, tmp_path / "batched", progress=False).results.set_index("key")
    single = experiments.run(cfg, tmp_path / "single", progress=False, batch=False).results.set_index("key")
    single = single.loc[batched.index]
    np.testing.assert_allclose(batched.error, single.error, rtol=1e-9, atol=0)
    assert (batched.iterations == single.iterations).all()


def test_batches_respect_size_memory_and_parallelism():
    units = experiments.expand(experiments.load(FIG2_SMALL))
    assert all(len(b) == 1 for b in experiments.make_batches(units, max_size=1))
    assert max(len(b) for b in experiments.make_batches(units, max_elements=3 * 96 * 96)) == 3
    split = experiments.make_batches(units, parallelism=4)
    assert max(len(b) for b in split) == 3  # 12 units per group, over 4 workers
    history = experiments.expand(experiments.load(SMALL))  # records histories: never batched
    assert all(len(b) == 1 for b in experiments.make_batches(history))


def _mutations(rng, raw):
    """Every (path, value) one-field mutation candidate of a parsed TOML table, drawn at random."""
    pool = [float("nan"), float("inf"), -1, 0, 1, 2.5, 10**9, 10**18, "x", "", "(", True, [], [0], [10**9, 10**9],
            [[1, 2]], {}, {"a": 1}, ["a"], [1.5, 2], None]

    def paths(x, prefix=()):
        if prefix:
            yield prefix
        children = x.items() if isinstance(x, dict) else enumerate(x) if isinstance(x, list) else ()
        for key, value in children:
            yield from paths(value, prefix + (key,))

    candidates = list(paths(raw))
    while True:
        yield candidates[rng.integers(len(candidates))], pool[rng.integers(len(pool))]


def test_fuzzed_configs_give_config_errors_or_valid_configs(monkeypatch):
    import copy
    import functools

    raw = experiments.config.tomllib.loads(
        (Path(experiments.__file__).parent / "configs" / "fig2-quick.toml").read_text())
    # Parsing must not draw a target (a huge shape would allocate before any check could reject it).
    for kind, generator in list(aa.targets.KINDS.items()):
        monkeypatch.setitem(aa.targets.KINDS, kind, functools.wraps(generator)(
            lambda *a, **k: pytest.fail("a target was drawn while parsing")))
    outcomes = {"valid": 0, "error": 0}
    rng = np.random.default_rng(27)
    for (path, value), _ in zip(_mutations(rng, raw), range(400), strict=False):
        mutated = copy.deepcopy(raw)
        parent = mutated
        for key in path[:-1]:
            parent = parent[key]
        if value is None:
            del parent[path[-1]]
        else:
            parent[path[-1]] = value
        try:
            experiments.parse(mutated)
            outcomes["valid"] += 1
        except ConfigError as error:
            assert "\n" not in str(error)
            outcomes["error"] += 1
    assert outcomes["valid"] > 10 and outcomes["error"] > 300


def test_a_huge_shape_is_rejected_without_allocating():
    with pytest.raises(ConfigError, match=r"targets\[0\]\.shape .* entries; at most"):
        experiments.load(with_change(SMALL, "shape = [40, 32]", "shape = [1000000000, 1000]"))
    cfg = experiments.load(with_change(SMALL, "shape = [40, 32]", "shape = [40000, 40000]"))  # parses, draws nothing
    assert cfg.targets[0].shape == (40000, 40000)


def test_estimated_costs_order_fits_as_their_work_does():
    units = {(u.method, u.budget): u for u in experiments.expand(experiments.builtin("fig2"))}
    cost = {k: u.estimated_cost for k, u in units.items()}
    assert cost[("lora", 72)] < cost[("hira", 8)] < cost[("hira", 72)]
    assert cost[("abba", 8)] < cost[("abba", 40)] < cost[("abba", 72)]
    conv = {u.solver: u.estimated_cost for u in experiments.expand(experiments.builtin("convergence"))}
    assert conv["adam"] > conv["als"]  # 3000 Adam steps against a few dozen sweeps


def test_progress_bar_counts_fits_and_ends_at_100_percent(tmp_path, capsys):
    cfg = experiments.load(SMALL)
    experiments.run(cfg, tmp_path, progress=True)
    err = capsys.readouterr().err
    n = len(experiments.expand(cfg))
    assert "100%" in err and f"{n}/{n} fits" in err


def test_time_left_waits_for_five_percent_then_extrapolates_the_average_rate():
    from abba_analysis.experiments.runner import _time_left

    assert _time_left(30.0, 0.04, 1.0) == "estimating the time left"
    assert _time_left(60.0, 0.5, 1.0) == "about 60 s left"
    assert _time_left(600.0, 0.5, 1.0) == "about 10 min left"
    assert _time_left(60.0, 0.25, 0.5) == "about 60 s left"  # a resumed run: half the work was already done


def test_fig2_constructions_match_the_papers_lora_errors():
    """The built-in fig2-constructions config holds, for each of the paper's Fig. 2 panels, a target whose
    LoRA error at r = 72 is the paper's (orthogonal 0.95, low-rank 0.44, sparse 0.72, random 0.19), and
    the i.i.d. candidates for "random" that are not."""
    config = experiments.builtin("fig2-constructions")
    lora = {}
    for spec in config.targets:
        target = aa.targets.make(spec.kind, *spec.shape, seed=0, **spec.options)
        lora[spec.kind] = aa.metrics.truncated_svd_error(target, 72)
    for kind, paper in {"orthogonal": 0.95, "low_rank": 0.44, "sparse": 0.72, "exp_decay": 0.19,
                        "power_law": 0.19}.items():
        assert lora[kind] == pytest.approx(paper, abs=0.025), (kind, lora[kind])
    assert lora["gaussian"] > 0.8 and lora["uniform"] > 0.4  # far from the 'random' panel's 0.19


def test_fig2_full_targets_are_the_constructions_matching_the_panels():
    """``reproduce --full`` runs, per paper panel, the candidate of fig2-constructions chosen for it."""
    from abba_analysis.reproduce import PAPER_PANELS, PAPER_R72

    full = experiments.builtin("fig2-full")
    candidates = {spec.kind: spec for spec in experiments.builtin("fig2-constructions").targets}
    for spec in full.targets:
        chosen = candidates[spec.kind]
        assert spec.shape == chosen.shape
        np.testing.assert_array_equal(aa.targets.make(spec.kind, *spec.shape, seed=0, **spec.options),
                                      aa.targets.make(chosen.kind, *chosen.shape, seed=0, **chosen.options))
    assert [spec.kind for spec in full.targets] == list(PAPER_PANELS)
    assert sorted(PAPER_PANELS.values()) == sorted(PAPER_R72)
