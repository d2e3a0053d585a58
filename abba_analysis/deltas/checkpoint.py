"""Lazy, tensor-by-tensor access to model checkpoints on disk.

A :class:`Checkpoint` lists a checkpoint's tensors (names, shapes, dtypes) from file headers alone and
reads one tensor at a time, so a model never has to fit in memory. Sources:

- a ``.safetensors`` file, or a directory with ``model.safetensors`` or a sharded
  ``model.safetensors.index.json`` (read lazily with ``safetensors.safe_open``);
- a PyTorch ``.bin`` / ``.pt`` state dict, or a directory with ``pytorch_model.bin`` or its sharded
  index (loaded with ``weights_only=True`` and ``mmap=True``: no arbitrary unpickling, and pages are
  read only when a tensor is used);
- a Hugging Face hub id (``org/name``) when ``huggingface_hub`` is installed and the files are cached
  or reachable.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch

from .._validation import compile_pattern

MINILM = "minilm"  # the shortcut for the packaged all-MiniLM-L6-v2 (abba_analysis.deltas.minilm_path)
SAFETENSORS_INDEX = "model.safetensors.index.json"
TORCH_INDEX = "pytorch_model.bin.index.json"
SINGLE_FILES = ("model.safetensors", "pytorch_model.bin", "model.pt", "adapter_model.safetensors",
                "adapter_model.bin")


class CheckpointError(ValueError):
    """A checkpoint cannot be read: missing, corrupt or inconsistent files. The message names the file."""


@dataclass(frozen=True)
class TensorInfo:
    """Where a tensor lives and what it is, from the file header."""

    name: str
    file: Path
    shape: tuple[int, ...]
    dtype: str


def _safetensors_header(path: Path) -> dict[str, TensorInfo]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            infos = {}
            for name in f.keys():
                s = f.get_slice(name)
                infos[name] = TensorInfo(name, path, tuple(s.get_shape()), s.get_dtype())
            return infos
    except Exception as error:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"cannot read safetensors file {path}: {error}") from error


def _torch_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as error:  # legacy (non-zip) files cannot be memory-mapped
            if "mmap" not in str(error):
                raise
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"cannot read PyTorch file {path} (weights_only=True): {error}") from error
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} is not a state dict of tensors")
    return state


def _resolve_hub(source: str) -> Path:
    """Download (or find in the cache) a hub repository's weight files."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise CheckpointError(f"{source!r} is not a local path, and huggingface_hub is not installed to "
                              "treat it as a hub id (pip install huggingface_hub)") from None
    patterns = ["*.safetensors", "*.json", "*.bin"]
    try:
        return Path(snapshot_download(source, allow_patterns=patterns, local_files_only=True))
    except Exception:
        pass
    try:
        return Path(snapshot_download(source, allow_patterns=patterns))
    except Exception as error:
        raise CheckpointError(f"hub id {source!r} is neither cached nor reachable (offline?): {error}") from None


@dataclass
class Checkpoint:
    """A checkpoint's tensors, listed from headers and read one at a time.

    Build with :meth:`open`. ``tied`` lists names whose storage another tensor shares (PyTorch files;
    safetensors stores shared tensors once).
    """

    path: Path
    infos: dict[str, TensorInfo]
    tied: dict[str, str] = field(default_factory=dict)
    _torch_files: dict[Path, dict[str, torch.Tensor]] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, source: "str | os.PathLike | Checkpoint") -> "Checkpoint":
        """Open a file, a model directory, a hub id or ``"minilm"`` (the packaged all-MiniLM-L6-v2, when no
        such path exists); check every file it needs exists and parses.

        An already open :class:`Checkpoint` is returned as it is.
        """
        if isinstance(source, Checkpoint):
            return source
        path = Path(source)
        if not path.exists():
            if source == MINILM:
                from .packaged import minilm_path

                path = minilm_path()
            elif isinstance(source, str) and re.fullmatch(r"[\w.-]+/[\w.-]+", source) and not source.startswith("."):
                path = _resolve_hub(source)
            else:
                raise CheckpointError(f"checkpoint {str(source)!r} does not exist (expected a file, a model directory, "
                                      f"a hub id org/name or {MINILM!r})")
        files = cls._weight_files(path)
        infos: dict[str, TensorInfo] = {}
        torch_files: dict[Path, dict[str, torch.Tensor]] = {}
        tied: dict[str, str] = {}
        for file, expected in files:
            if file.suffix == ".safetensors":
                found = _safetensors_header(file)
            else:
                state = _torch_state_dict(file)
                torch_files[file] = state
                found = {k: TensorInfo(k, file, tuple(v.shape), str(v.dtype).replace("torch.", ""))
                         for k, v in state.items()}
                seen: dict[tuple[int, int, tuple[int, ...]], str] = {}
                for k, v in state.items():
                    key = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape))
                    if key in seen:
                        tied[k] = seen[key]
                    else:
                        seen[key] = k
            if expected is not None:
                missing = sorted(set(expected) - set(found))
                if missing:
                    raise CheckpointError(f"{file} lacks tensors its index assigns to it: {missing[:5]}")
            infos.update(found)
        return cls(path, infos, tied, torch_files)

    @staticmethod
    def _weight_files(path: Path) -> list[tuple[Path, list[str] | None]]:
        """The files to read, each with the tensor names an index expects in it (None: no index)."""
        if path.is_file():
            return [(path, None)]
        for index_name in (SAFETENSORS_INDEX, TORCH_INDEX):
            index = path / index_name
            if index.exists():
                try:
                    weight_map = json.loads(index.read_text())["weight_map"]
                except (ValueError, KeyError, TypeError) as error:
                    raise CheckpointError(f"index {index} is not valid JSON with a 'weight_map': {error}") from None
                by_file: dict[str, list[str]] = {}
                for name, file in weight_map.items():
                    by_file.setdefault(file, []).append(name)
                missing = [f for f in by_file if not (path / f).is_file()]
                if missing:
                    raise CheckpointError(f"index {index} names shard file(s) that do not exist: "
                                          f"{[str(path / f) for f in missing]}")
                return [(path / f, names) for f, names in sorted(by_file.items())]
        for name in SINGLE_FILES:
            if (path / name).is_file():
                return [(path / name, None)]
        found = sorted(p.name for p in path.glob("*.safetensors"))
        if len(found) == 1:
            return [(path / found[0], None)]
        raise CheckpointError(f"no weights found in {path}: expected one of {list(SINGLE_FILES)}, an index "
                              f"({SAFETENSORS_INDEX} or {TORCH_INDEX}) or a single .safetensors file")

    @property
    def directory(self) -> Path:
        """The model directory: ``path`` itself, or the folder of a single-file checkpoint (where a
        Hugging Face model's config and tokenizer live)."""
        return self.path.parent if self.path.is_file() else self.path

    def names(self) -> list[str]:
        """All tensor names, sorted."""
        return sorted(self.infos)

    def __contains__(self, name: str) -> bool:
        return name in self.infos

    def load(self, name: str) -> torch.Tensor:
        """Read one tensor (as stored: dtype unchanged) from disk."""
        info = self.infos[name]
        if info.file.suffix == ".safetensors":
            from safetensors import safe_open

            try:
                with safe_open(str(info.file), framework="pt") as f:
                    return f.get_tensor(name)
            except Exception as error:
                raise CheckpointError(f"cannot read tensor {name!r} from {info.file}: {error}") from error
        return self._torch_files[info.file][name]

    def matrices(self, include: str | None = None, exclude: str | None = None, *, required: bool = False) -> list[str]:
        """Names of the 2-D tensors whose names match ``include`` (regex search) and not ``exclude``.

        Raises
        ------
        ValueError
            If a pattern is not a valid regular expression (the message names it).
        CheckpointError
            With ``required``, if nothing is selected; the message shows some of the names there are.
        """
        keep = selector(include, exclude)
        chosen = [n for n in self.names() if len(self.infos[n].shape) == 2 and keep(n)]
        if required and not chosen:
            matrices = [n for n in self.names() if len(self.infos[n].shape) == 2]
            shown = ", ".join(matrices[:4]) + (f", ... ({len(matrices)} in all)" if len(matrices) > 4 else "")
            raise CheckpointError(f"include={include!r} exclude={exclude!r} select no 2-D tensor of {self.path}; "
                                  f"its 2-D tensors are {shown or 'none'}")
        return chosen


def selector(include: str | None, exclude: str | None) -> Callable[[str], bool]:
    """A test of whether a name matches ``include`` (if given) and not ``exclude`` (if given), by ``re.search``.

    Both patterns are compiled at once, so a bad one fails here (``ValueError`` naming it), not at the
    first name it meets.
    """
    inc, exc = compile_pattern(include, "include"), compile_pattern(exclude, "exclude")
    return lambda name: (inc is None or inc.search(name) is not None) and (exc is None or exc.search(name) is None)


def iter_matrices(checkpoint: Checkpoint, names: list[str], dtype: torch.dtype) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield ``(name, tensor as dtype)`` one at a time."""
    for name in names:
        yield name, checkpoint.load(name).to(dtype)
