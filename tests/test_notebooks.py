"""Every notebook runs top to bottom (at its small default sizes) and is committed without outputs."""

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def test_there_are_five_notebooks():
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    assert all(not cell.get("outputs") for cell in nb.cells if cell.cell_type == "code"), "commit without outputs"
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("ABBA_NOTEBOOK_QUICK", "1")  # notebooks that fine-tune a model use a few steps
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    # Warnings, progress-widget notices and logging have no place in a teaching notebook's output.
    noise = [o.text for c in nb.cells if c.cell_type == "code" for o in c.outputs
             if o.output_type == "stream" and o.name == "stderr"]
    assert not noise, noise


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_structure(path):
    """Each notebook states its question first, ends with what it showed, and has exercises whose
    solutions run with it."""
    nb = nbformat.read(path, as_version=4)
    markdown = [c.source for c in nb.cells if c.cell_type == "markdown"]
    assert "**The question.**" in markdown[0]
    assert any(text.startswith("## What we learned") for text in markdown)
    assert any("## Exercises" in text for text in markdown)
    solutions = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith("# Solution to exercise")]
    assert len(solutions) >= 2
    assert all(c.metadata.get("jupyter", {}).get("source_hidden") for c in solutions)
