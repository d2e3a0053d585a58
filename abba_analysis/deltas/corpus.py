"""Real English text that ships with Python: the standard library's docstrings and the documentation
topics of ``pydoc``. No download is needed, and a given Python version always gives the same text."""

from __future__ import annotations

import ast
import functools
import hashlib
import os
import sys
import sysconfig
from pathlib import Path

# Test suites, demos and vendored code are not documentation prose.
_SKIPPED_DIRS = frozenset({"test", "tests", "idlelib", "lib2to3", "turtledemo", "site-packages", "dist-packages"})
MIN_CHARS = 40  # shorter docstrings are mostly "Return x." one-liners


def _source_files() -> tuple[Path, list[Path]]:
    """The standard library's root and the Python files :func:`docstring_corpus` reads, sorted."""
    root = Path(sysconfig.get_paths()["stdlib"])
    paths = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in _SKIPPED_DIRS]  # site-packages alone holds thousands of files
        paths.extend(Path(folder, f) for f in files if f.endswith(".py"))
    return root, sorted(paths)


def source_fingerprint() -> str:
    """A short SHA-256 of the Python version and the name and size of every file the corpus is read
    from: about 100x cheaper than :func:`docstring_corpus` (no parsing), so a cached fine-tune can be
    recognised at once; the same files give the same corpus."""
    root, paths = _source_files()
    digest = hashlib.sha256(sys.version.encode())
    for path in paths:
        digest.update(f"{path.relative_to(root).as_posix()}\0{path.stat().st_size}\0".encode())
    try:
        from pydoc_data import topics
    except ImportError:
        pass
    else:
        digest.update(str(Path(topics.__file__).stat().st_size).encode())
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def docstring_corpus() -> tuple[str, ...]:
    """Every docstring of at least ``MIN_CHARS`` characters in the standard library's Python files
    (modules, classes, functions; test suites and demos left out), then ``pydoc``'s topic texts.

    Files are read in sorted order, so the corpus is the same on every run of one Python version
    (:func:`corpus_digest` identifies it).
    """
    texts = []
    for path in _source_files()[1]:
        try:
            tree = ast.parse(path.read_bytes())
        except (SyntaxError, ValueError):  # a few files are templates or use another encoding
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) >= MIN_CHARS:
                    texts.append(doc)
    try:
        from pydoc_data.topics import topics
    except ImportError:  # some distributions strip pydoc_data
        topics = {}
    texts.extend(topics[key] for key in sorted(topics))
    return tuple(texts)


def corpus_digest(texts: tuple[str, ...]) -> str:
    """A short SHA-256 of ``texts``, to tell whether a cached fine-tune saw the same text."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]
