"""One row of numbers describing a layer's update."""

from __future__ import annotations

from typing import Sequence

import torch

from .. import metrics
from .pairs import LayerDelta


def summarize(layer: LayerDelta, ranks: Sequence[int] = (4, 16, 64)) -> dict[str, object]:
    """Size and rank structure of ``layer.delta``, and LoRA's optimal error at ``ranks``.

    Returns
    -------
    dict
        ``name``, ``shape``, ``relative_norm`` (``||ΔW||_F / ||W0||_F``, NaN without W0),
        ``numerical_rank`` (tolerance ``max(m, n) eps sigma_max`` in the delta's dtype),
        ``effective_rank``, ``stable_rank`` and ``lora_error_r<k>`` for each rank k. A zero update
        (the layer did not change) has ranks 0 and NaN errors.
    """
    delta = layer.delta
    spectrum = metrics.singular_values(delta)
    if spectrum[0] == 0:  # identical weights: ranks are 0 and relative errors undefined
        return {"name": layer.name, "shape": tuple(delta.shape), "relative_norm": 0.0, "numerical_rank": 0,
                "effective_rank": 0.0, "stable_rank": 0.0, **{f"lora_error_r{r}": float("nan") for r in ranks}}
    eps = torch.finfo(delta.dtype).eps
    row: dict[str, object] = {
        "name": layer.name,
        "shape": tuple(delta.shape),
        "relative_norm": (float(torch.linalg.matrix_norm(delta) / torch.linalg.matrix_norm(layer.base))
                          if layer.base is not None else float("nan")),
        "numerical_rank": metrics.numerical_rank(spectrum, tol=max(delta.shape) * eps * spectrum[0]),
        "effective_rank": metrics.effective_rank(spectrum),
        "stable_rank": metrics.stable_rank(spectrum),
    }
    for r in ranks:
        row[f"lora_error_r{r}"] = metrics.truncated_svd_error(spectrum, min(r, spectrum.size))
    return row
