"""Sphinx configuration: the API reference is generated from the package's numpydoc docstrings."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from abba_analysis import __version__  # noqa: E402

project = "abba-analysis"
author = "the abba-analysis developers"
copyright = "the abba-analysis developers, MIT licence"
version = release = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3

napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_ivar = True  # attributes as fields of their class: no second entry beside a documented property
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": False}
# Type hints name third-party classes (torch.Tensor, numpy.ndarray, ...) that have no pages here.
nitpicky = False

html_theme = "furo"
html_title = f"abba-analysis {release}"
