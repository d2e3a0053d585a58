"""A global parameter budget spread over layers so that the summed squared error of the updates is least.

Each layer has an error-versus-budget curve: fits at a few budgets ``b`` (``b (m + n)`` parameters),
plus budget 0 (the layer left out, error ``||ΔW||``). :func:`allocate` keeps each curve's lower convex
hull in (parameters, squared error) and spends the total greedily on the step that removes the most
squared error per parameter, the discrete form of water-filling: with convex curves every layer ends
where its marginal gain per parameter meets one common level.
"""

from __future__ import annotations

import pandas as pd

CURVE_COLUMNS = ["layer", "budget", "params", "squared_error"]


def lower_hull(curve: pd.DataFrame) -> pd.DataFrame:
    """The points of ``curve`` (``params``, ``squared_error``) on its lower convex hull, by parameters.

    A point above the hull is never worth choosing under a price per parameter: a mix of its
    neighbours removes more error for the same parameters.
    """
    points = curve.sort_values(["params", "squared_error"]).drop_duplicates("params")
    hull: list[int] = []
    xs, ys = points["params"].to_numpy(float), points["squared_error"].to_numpy(float)
    for i in range(len(points)):
        if hull and ys[i] >= ys[hull[-1]]:
            continue  # more parameters, no less error
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            # b lies above the chord from a to i: not on the lower hull. Points on the chord stay: they
            # are steps of equal rate, and a budget may afford some of them only.
            if (ys[b] - ys[a]) * (xs[i] - xs[a]) > (ys[i] - ys[a]) * (xs[b] - xs[a]):
                hull.pop()
            else:
                break
        hull.append(i)
    return points.iloc[hull]


def allocate(curves: pd.DataFrame, total_params: int) -> pd.DataFrame:
    """Choose one budget per layer, at most ``total_params`` parameters in all, least summed squared error.

    Parameters
    ----------
    curves : DataFrame
        Columns ``layer``, ``budget``, ``params``, ``squared_error`` (absolute: ``||ΔW - fit||_F²``); each
        layer needs a row at ``params = 0`` (budget 0: the layer is left out).
    total_params : int

    Returns
    -------
    DataFrame
        One row per layer: ``layer``, ``budget``, ``params``, ``squared_error``, in the layers' order.

    Examples
    --------
    >>> curves = pd.DataFrame({"layer": ["a"] * 3 + ["b"] * 3, "budget": [0, 1, 2] * 2,
    ...                        "params": [0, 10, 20] * 2, "squared_error": [9, 1, 0, 4, 3, 2.5]})
    >>> allocate(curves, 20)[["layer", "budget"]].to_dict("list")
    {'layer': ['a', 'b'], 'budget': [2, 0]}
    """
    missing = [c for c in CURVE_COLUMNS if c not in curves.columns]
    if missing:
        raise ValueError(f"curves needs columns {CURVE_COLUMNS}; missing {missing}")
    if total_params < 0:
        raise ValueError(f"total_params must be >= 0, got {total_params}")
    layers = list(dict.fromkeys(curves["layer"]))
    hulls = {}
    for layer in layers:
        hull = lower_hull(curves[curves["layer"] == layer])
        if hull["params"].iloc[0] != 0:
            raise ValueError(f"layer {layer!r} has no point at params = 0 (the layer left out)")
        hulls[layer] = hull.reset_index(drop=True)
    position = {layer: 0 for layer in layers}
    left = total_params
    while True:
        best, best_rate = None, 0.0
        for layer, hull in hulls.items():
            i = position[layer]
            if i + 1 < len(hull):
                cost = hull["params"].iloc[i + 1] - hull["params"].iloc[i]
                gain = hull["squared_error"].iloc[i] - hull["squared_error"].iloc[i + 1]
                if cost <= left and gain / cost > best_rate:
                    best, best_rate = layer, gain / cost
        if best is None:
            break
        i = position[best]
        left -= hulls[best]["params"].iloc[i + 1] - hulls[best]["params"].iloc[i]
        position[best] = i + 1
    return pd.DataFrame([hulls[layer].iloc[position[layer]][CURVE_COLUMNS] for layer in layers]).reset_index(drop=True)
