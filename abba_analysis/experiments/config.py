"""Experiment configurations: TOML in, a validated :class:`Config` out, every error before any fit.

A configuration names the targets, the methods with their budgets (or ranks), solvers, inits and
solver options, and the seeds; :func:`expand` turns it into self-describing work units.

.. code-block:: toml

    [experiment]
    name = "fig2"
    seeds = [0, 1, 2]
    dtype = "float32"          # or "float64"
    device = "cpu"             # any torch device
    threads = 1                # torch threads of each CPU fit (default: chosen by size, abba_analysis.threads)
    spectra = true             # record singular spectra of targets and fits
    history = false            # record each fit's error after every iteration

    [hira]
    base = "gaussian"          # W0 for random targets: a random matrix of this kind (seed + 10000)

    [[targets]]
    kind = "low_rank"          # orthogonal | low_rank | sparse | gaussian | power_law | uniform | exp_decay | checkpoint
    shape = [512, 512]
    options = { rank = 32 }    # passed to the generator

    [[targets]]
    kind = "checkpoint"        # real weights: ΔW of a pair, or the weights themselves
    base = "minilm"            # a path, a hub id, or "minilm" (the packaged all-MiniLM-L6-v2)
    finetuned = "path/to/finetuned"   # optional; without it the targets are the base's weights
    include = 'layer\\.0\\.'

    [[methods]]
    method = "abba"
    budgets = [8, 16]          # LoRA-equivalent ranks (ABBA: r1 + r2 = budget, split evenly)
    solvers = ["auto"]
    inits = ["svd-ones"]       # optional; default: the solver's default
    options = { rtol = 1e-5 }  # solver options
    effort = "thorough"        # optional; "default" or "thorough" (abba_analysis.search)
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import inits as init_registry
from ..fit import check_effort
from .._validation import compile_pattern, resolve_device
from .. import targets as target_generators
from ..parameterizations import get_method
from ..solvers import get_solver, make_options

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class ConfigError(ValueError):
    """An invalid experiment configuration; the message names the key and the bad value."""


RANDOM_KINDS = tuple(sorted(target_generators.KINDS))
# Larger than any single weight matrix of today's LLMs; a generated target this size needs 8 GiB in float32.
MAX_TARGET_ENTRIES = 2**31


@dataclass(frozen=True)
class TargetSpec:
    """One ``[[targets]]`` entry."""

    kind: str
    shape: tuple[int, int] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    base: str | None = None
    finetuned: str | None = None
    include: str | None = None
    exclude: str | None = None


@dataclass(frozen=True)
class MethodSpec:
    """One ``[[methods]]`` entry: a method at several budgets, solvers and inits."""

    method: str
    budgets: tuple[int, ...] = ()
    ranks: tuple[tuple[int, ...], ...] = ()
    solvers: tuple[str, ...] = ("auto",)
    inits: tuple[str | None, ...] = (None,)
    options: dict[str, Any] = field(default_factory=dict)
    effort: str = "default"


@dataclass(frozen=True)
class Config:
    """A validated experiment configuration."""

    name: str
    targets: tuple[TargetSpec, ...]
    methods: tuple[MethodSpec, ...]
    seeds: tuple[int, ...] = (0,)
    dtype: str = "float32"
    device: str = "cpu"
    threads: int | None = None
    spectra: bool = False
    history: bool = False
    hira_base: str = "gaussian"


_SECTIONS = {"experiment", "hira", "targets", "methods"}
_EXPERIMENT_KEYS = {"name", "seeds", "dtype", "device", "threads", "spectra", "history"}
_TARGET_KEYS = {"kind", "shape", "options", "base", "finetuned", "include", "exclude"}
_METHOD_KEYS = {"method", "budgets", "ranks", "solver", "solvers", "init", "inits", "options", "effort"}


def _table(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table, got {value!r}")
    return value


def _check_keys(table: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def _int_list(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                                           for v in value):
        raise ConfigError(f"{where} must be a non-empty list of positive ints, got {value!r}")
    return tuple(value)


def _str_list(table: dict, one: str, many: str, where: str, default: tuple) -> tuple:
    if one in table and many in table:
        raise ConfigError(f"{where}: give {one!r} or {many!r}, not both")
    if one in table:
        value = [table[one]]
    elif many in table:
        value = table[many]
    else:
        return default
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}.{many} must be a non-empty list of names, got {value!r}")
    return tuple(value)


def _parse_target(raw: Any, where: str) -> TargetSpec:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table, got {raw!r}")
    _check_keys(raw, _TARGET_KEYS, where)
    kind = raw.get("kind")
    if kind not in RANDOM_KINDS + ("checkpoint",):
        raise ConfigError(f"{where}.kind must be one of {list(RANDOM_KINDS) + ['checkpoint']}, got {kind!r}")
    options = raw.get("options", {})
    if not isinstance(options, dict):
        raise ConfigError(f"{where}.options must be a table, got {options!r}")
    if kind == "checkpoint":
        extra = sorted(k for k in ("shape", "options") if k in raw)
        if extra:
            raise ConfigError(f"{where}: {extra} do not apply to kind 'checkpoint'")
        if not isinstance(raw.get("base"), str):
            raise ConfigError(f"{where}.base must name a checkpoint (path, hub id or 'minilm'), got {raw.get('base')!r}")
        if not isinstance(raw.get("finetuned", ""), str):
            raise ConfigError(f"{where}.finetuned must name a checkpoint (path or hub id), got {raw['finetuned']!r}")
        for key in ("include", "exclude"):
            try:
                compile_pattern(raw.get(key), f"{where}.{key}")
            except (TypeError, ValueError) as error:
                raise ConfigError(str(error)) from None
        return TargetSpec(kind, base=raw["base"], finetuned=raw.get("finetuned"), include=raw.get("include"),
                          exclude=raw.get("exclude"))
    extra = sorted(k for k in ("base", "finetuned", "include", "exclude") if k in raw)
    if extra:
        raise ConfigError(f"{where}: {extra} apply only to kind 'checkpoint'")
    shape = raw.get("shape")
    if not (isinstance(shape, list) and len(shape) == 2):
        raise ConfigError(f"{where}.shape must be [m, n], got {shape!r}")
    shape = _int_list(shape, f"{where}.shape")
    if shape[0] * shape[1] > MAX_TARGET_ENTRIES:
        raise ConfigError(f"{where}.shape {list(shape)} has {shape[0] * shape[1]:.3g} entries; at most "
                          f"{MAX_TARGET_ENTRIES:.3g} (2^31) are supported")
    try:  # checked without drawing: a huge shape must fail here, not allocate
        target_generators.check(kind, *shape, **options)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{where}.options: {error}") from None
    return TargetSpec(kind, shape=(shape[0], shape[1]), options=dict(options))


def _parse_method(raw: Any, where: str) -> MethodSpec:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table, got {raw!r}")
    _check_keys(raw, _METHOD_KEYS, where)
    try:
        param = get_method(raw.get("method"))
    except ValueError as error:
        raise ConfigError(f"{where}.method: {error}") from None
    if ("budgets" in raw) == ("ranks" in raw):
        raise ConfigError(f"{where}: give exactly one of 'budgets' (LoRA-equivalent ranks) or 'ranks'")
    budgets = _int_list(raw["budgets"], f"{where}.budgets") if "budgets" in raw else ()
    ranks: tuple[tuple[int, ...], ...] = ()
    if "ranks" in raw:
        value = raw["ranks"]
        if not isinstance(value, list) or not value:
            raise ConfigError(f"{where}.ranks must be a non-empty list, got {value!r}")
        ranks = tuple(tuple(_int_list(r if isinstance(r, list) else [r], f"{where}.ranks")) for r in value)
        want = 2 if param.name == "abba" else 1
        bad = [r for r in ranks if len(r) != want]
        if bad:
            raise ConfigError(f"{where}.ranks: {param.name} takes {'pairs [r1, r2]' if want == 2 else 'ints'}, got {bad}")
    if param.name == "abba" and any(b < 2 for b in budgets):
        raise ConfigError(f"{where}.budgets: ABBA needs budgets >= 2 to split between its pairs, got {list(budgets)}")
    solvers = _str_list(raw, "solver", "solvers", where, ("auto",))
    inits = _str_list(raw, "init", "inits", where, (None,))
    options = raw.get("options", {})
    if not isinstance(options, dict):
        raise ConfigError(f"{where}.options must be a table, got {options!r}")
    for solver in solvers:
        try:
            chosen = get_solver(solver, param.name)
            make_options(chosen, options)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{where}: {error}") from None
        for init in inits:
            if init is None:
                continue
            if not chosen.iterative:
                raise ConfigError(f"{where}: solver {chosen.name!r} is closed-form and takes no init, got {init!r}")
            try:
                scheme = init_registry.get(init)
            except ValueError as error:
                raise ConfigError(f"{where}.inits: {error}") from None
            if param.name not in scheme.methods:
                raise ConfigError(f"{where}.inits: {init!r} applies to {list(scheme.methods)}, not {param.name!r}")
    effort = raw.get("effort", "default")
    try:
        check_effort(effort)
    except ValueError as error:
        raise ConfigError(f"{where}.{error}") from None
    return MethodSpec(param.name, budgets=budgets, ranks=ranks, solvers=solvers, inits=inits, options=dict(options),
                      effort=effort)


def parse(raw: dict[str, Any]) -> Config:
    """Validate a configuration given as nested dicts (as ``tomllib`` returns)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"a configuration must be a table, got {type(raw).__name__}")
    _check_keys(raw, _SECTIONS, "config")
    experiment = _table(raw.get("experiment", {}), "[experiment]")
    _check_keys(experiment, _EXPERIMENT_KEYS, "[experiment]")
    name = experiment.get("name", "experiment")
    if not isinstance(name, str) or not name or any(c in name for c in "/\\"):
        raise ConfigError(f"[experiment].name must be a non-empty name without slashes, got {name!r}")
    seeds = experiment.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                                           for s in seeds):
        raise ConfigError(f"[experiment].seeds must be a non-empty list of ints >= 0, got {seeds!r}")
    dtype = experiment.get("dtype", "float32")
    if dtype not in ("float32", "float64"):
        raise ConfigError(f"[experiment].dtype must be 'float32' or 'float64', got {dtype!r}")
    device = experiment.get("device", "cpu")
    if not isinstance(device, str):
        raise ConfigError(f"[experiment].device must be a string such as 'cpu' or 'cuda', got {device!r}")
    try:
        resolve_device(device)
    except ValueError as error:
        raise ConfigError(f"[experiment].device: {error}") from None
    threads = experiment.get("threads")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise ConfigError(f"[experiment].threads must be an int >= 1 (omit it to choose by size), got {threads!r}")
    for flag in ("spectra", "history"):
        if not isinstance(experiment.get(flag, False), bool):
            raise ConfigError(f"[experiment].{flag} must be true or false, got {experiment[flag]!r}")
    hira = _table(raw.get("hira", {}), "[hira]")
    _check_keys(hira, {"base"}, "[hira]")
    hira_base = hira.get("base", "gaussian")
    if hira_base not in RANDOM_KINDS:
        raise ConfigError(f"[hira].base must be one of {list(RANDOM_KINDS)}, got {hira_base!r}")
    raw_targets, raw_methods = raw.get("targets"), raw.get("methods")
    if not isinstance(raw_targets, list) or not raw_targets:
        raise ConfigError("config needs at least one [[targets]] entry")
    if not isinstance(raw_methods, list) or not raw_methods:
        raise ConfigError("config needs at least one [[methods]] entry")
    return Config(
        name=name,
        targets=tuple(_parse_target(t, f"targets[{i}]") for i, t in enumerate(raw_targets)),
        methods=tuple(_parse_method(m, f"methods[{i}]") for i, m in enumerate(raw_methods)),
        seeds=tuple(seeds), dtype=dtype, device=device, threads=threads,
        spectra=experiment.get("spectra", False), history=experiment.get("history", False), hira_base=hira_base,
    )


def load(path_or_text: str | Path) -> Config:
    """Read and validate a TOML configuration from a file path or a TOML string."""
    # A string with a newline (or starting like TOML) is the configuration itself, anything else a path.
    text_given = isinstance(path_or_text, str) and ("\n" in path_or_text or path_or_text.lstrip().startswith(("[", "#")))
    path = None if text_given else Path(path_or_text)
    try:
        text = path.read_text() if path is not None else str(path_or_text)
        raw = tomllib.loads(text)
    except OSError as error:
        raise ConfigError(f"cannot read config {path}: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config is not valid TOML: {error}") from None
    return parse(raw)


def builtin(name: str) -> Config:
    """One of the configurations shipped with the package (``configs/<name>.toml``)."""
    path = Path(__file__).parent / "configs" / f"{name}.toml"
    if not path.is_file():
        available = sorted(p.stem for p in path.parent.glob("*.toml"))
        raise ConfigError(f"no built-in config {name!r}; available: {available}")
    return load(path)


def replace(config: Config, **changes: Any) -> Config:
    """A copy of ``config`` with some fields changed."""
    return dataclasses.replace(config, **changes)
