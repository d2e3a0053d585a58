"""Progress bars: tqdm's notebook widget where ipywidgets is installed, its text bar otherwise."""

from __future__ import annotations

import importlib.util


def progress_bar(**options):
    """A ``tqdm`` bar with ``options``.

    ``tqdm.auto`` picks the notebook widget in Jupyter, but without ipywidgets it warns ("IProgress not
    found") into every notebook's output before falling back to the text bar; this goes to the text bar
    directly in that case.
    """
    if importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.auto import tqdm
    else:
        from tqdm.std import tqdm
    return tqdm(**options)
