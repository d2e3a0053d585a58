import itertools

import numpy as np
import pandas as pd
import pytest

from abba_analysis.allocation import allocate, lower_hull


def _convex_curves(rng, layers, steps, step_params):
    rows = []
    for layer, cost in zip(range(layers), step_params, strict=True):
        gains = np.sort(rng.exponential(1.0, steps))[::-1]  # decreasing gains: a convex curve
        errors = gains.sum() + 0.1 - np.concatenate([[0.0], np.cumsum(gains)])
        rows += [{"layer": f"l{layer}", "budget": b, "params": b * cost, "squared_error": e}
                 for b, e in enumerate(errors)]
    return pd.DataFrame(rows)


def _brute_force(curves, total):
    options = [list(part.itertuples()) for _, part in curves.groupby("layer", sort=False)]
    best = min((combo for combo in itertools.product(*options) if sum(p.params for p in combo) <= total),
               key=lambda combo: sum(p.squared_error for p in combo))
    return sum(p.squared_error for p in best)


@pytest.mark.parametrize("seed", range(8))
def test_greedy_water_filling_is_optimal_on_convex_curves_with_equal_steps(seed):
    rng = np.random.default_rng(seed)
    curves = _convex_curves(rng, layers=4, steps=5, step_params=[7] * 4)
    for total in (0, 7, 20, 49, 140):
        chosen = allocate(curves, total)
        assert chosen["params"].sum() <= total
        assert chosen["squared_error"].sum() == pytest.approx(_brute_force(curves, total))


def test_allocation_beats_a_uniform_rank_where_energy_is_concentrated():
    # Layer a's update has its energy spread over many directions, layer b's in a few: a uniform rank
    # wastes parameters on b.
    spectra = {"a": np.full(16, 1.0), "b": np.array([4.0, 2.0] + [0.01] * 14)}
    rows = [{"layer": k, "budget": r, "params": 10 * r, "squared_error": float((s[r:] ** 2).sum())}
            for k, s in spectra.items() for r in range(17)]
    curves = pd.DataFrame(rows)
    uniform = curves[curves.budget == 4]["squared_error"].sum()
    chosen = allocate(curves, 80)
    assert chosen["params"].sum() <= 80 and chosen["squared_error"].sum() < uniform
    assert dict(zip(chosen.layer, chosen.budget, strict=True)) == {"a": 6, "b": 2}


def test_points_above_the_hull_are_skipped_and_bad_input_is_named():
    curve = pd.DataFrame({"layer": "x", "budget": [0, 1, 2, 3], "params": [0, 1, 2, 3],
                          "squared_error": [10.0, 9.5, 5.0, 4.0]})
    assert list(lower_hull(curve)["budget"]) == [0, 2, 3]  # budget 1 lies above the chord from 0 to 2
    with pytest.raises(ValueError, match="no point at params = 0"):
        allocate(curve[curve.budget > 0], 3)
    with pytest.raises(ValueError, match="missing"):
        allocate(curve.drop(columns="params"), 3)
