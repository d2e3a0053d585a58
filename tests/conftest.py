import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic_threads():
    # Small problems: one thread keeps timings stable and results bitwise reproducible.
    torch.set_num_threads(1)
    yield


def exact_abba(m, n, r1, r2, seed):
    """A target that is exactly (B1 A1) ⊙ (B2 A2) with Gaussian factors, and those factors."""
    rng = np.random.default_rng(seed)
    f = {
        "B1": rng.standard_normal((m, r1)),
        "A1": rng.standard_normal((r1, n)),
        "B2": rng.standard_normal((m, r2)),
        "A2": rng.standard_normal((r2, n)),
    }
    return (f["B1"] @ f["A1"]) * (f["B2"] @ f["A2"]), f
