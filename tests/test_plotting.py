import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest

import abba_analysis as aa
from abba_analysis import experiments, init_study, plotting
from test_experiments import SMALL


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    return experiments.run(experiments.load(SMALL), tmp_path_factory.mktemp("run"), progress=False)


@pytest.fixture(autouse=True)
def no_fitting(monkeypatch):
    """Plots draw tables; they must never fit anything."""
    yield
    plt.close("all")


def _forbid_fits(monkeypatch):
    monkeypatch.setattr(aa.fit_module if hasattr(aa, "fit_module") else aa, "fit",
                        lambda *a, **k: pytest.fail("a plot called fit"))
    monkeypatch.setattr(aa.solvers.ALS, "solve", lambda *a, **k: pytest.fail("a plot called a solver"))
    monkeypatch.setattr(aa.solvers.Adam, "solve", lambda *a, **k: pytest.fail("a plot called a solver"))


def test_every_plot_returns_a_figure_and_accepts_ax(tables, monkeypatch):
    _forbid_fits(monkeypatch)
    r = tables
    cases = [
        (plotting.error_vs_rank, (r.results,), {"kinds": ["sparse"]}),
        (plotting.error_vs_params, (r.results,), {}),
        (plotting.spectra, (r.spectra,), {}),
        (plotting.layer_heatmap, (r.results,), {"relative_to_lora": True}),
        (plotting.convergence, (r.histories,), {"x": "seconds"}),
    ]
    for function, args, kwargs in cases:
        fig = function(*args, **kwargs)
        assert isinstance(fig, plt.Figure)
        fig2, ax = plt.subplots()
        assert function(*args, ax=ax, **kwargs) is fig2
        assert ax.has_data()
    assert len(plotting.error_vs_rank(r.results).axes) == 2  # one panel per target kind


def test_init_study_plots(monkeypatch):
    T = aa.targets.gaussian(32, seed=0)
    flow = init_study.gradient_flow(T, (2, 2), ["abba-paper", "lora-both"])
    moments = init_study.scaling_moments((1, 4), size=(16, 16), draws=2)
    quality = init_study.fit_quality({"g": (T, None)}, (2, 2), ["abba-paper"], seeds=(0,), steps=5, checkpoints=(2,))
    _forbid_fits(monkeypatch)
    for function, table in ((plotting.gradient_flow, flow), (plotting.scaling_moments, moments),
                            (plotting.init_quality, quality)):
        assert isinstance(function(table), plt.Figure)


def test_plot_errors_are_clear(tables):
    with pytest.raises(ValueError, match="needs columns"):
        plotting.error_vs_rank(tables.spectra)
    with pytest.raises(ValueError, match="choose one target kind"):
        plotting.error_vs_rank(tables.results, ax=plt.subplots()[1])
    with pytest.raises(ValueError, match="x must be"):
        plotting.convergence(tables.histories, x="time")


def test_relative_heatmap_leaves_out_lora_and_draws_without_warnings(tables, tmp_path):
    import warnings

    one_layer = tables.results[tables.results.target == tables.results.target.iloc[0]]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # e.g. "constrained_layout not applied" on a small heatmap
        fig = plotting.layer_heatmap(one_layer, relative_to_lora=True)
        fig.savefig(tmp_path / "h.png", bbox_inches="tight")
    columns = [label.get_text() for label in fig.axes[0].get_xticklabels()]
    assert columns and not any(c.startswith("LoRA") for c in columns)  # 1 by construction: not drawn
    with pytest.raises(ValueError, match="needs HiRA or ABBA rows"):
        plotting.layer_heatmap(one_layer[one_layer.method == "lora"], relative_to_lora=True)
