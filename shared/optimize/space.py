"""The search space of `orchestrate optimize`: config keys with ranges or choices, checked against
the live config schema (`shared.config.Config`) before a single trial runs.

`space.toml` maps dotted config keys to a range or a list of choices:

    "grid.width" = {low = 0.002, high = 0.03, log = true}
    "grid.levels" = {low = 2, high = 12}            # an int field gives an int range
    "grid.spacing_mode" = ["fixed", "atr"]
    "signal.consensus_weights.rl" = {low = 0.0, high = 2.0, step = 0.25}

Pure: no I/O beyond what the caller hands in. Every refusal is a `SpaceError` naming the key.
"""

from __future__ import annotations

import difflib
import math
import tomllib
import typing
from typing import Any, Literal

import msgspec

from ..config import Config

# Sections whose keys change what a backtest does. The rest (run, processes, supervision, budgets,
# status, testing) steer processes, not trading, so a search over them would only burn trials.
TRADING_SECTIONS = ("grid", "risk", "signal", "market")

Scalar = bool | int | float | str


class SpaceError(ValueError):
    """A bad search space; the message names the file and the key."""


class Dimension(msgspec.Struct, frozen=True, kw_only=True):
    key: str  # dotted config key, e.g. "grid.width"
    kind: Literal["int", "float", "choice"]
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: float | None = None
    choices: tuple[Scalar, ...] = ()


def _leaf_fields(struct_type: type) -> dict[str, Any]:
    return typing.get_type_hints(struct_type)


def _struct_default(struct_type: type, name: str) -> Any:
    return getattr(struct_type(), name)


def resolve_key(key: str) -> Any:
    """The schema type of a dotted config key, or SpaceError naming the key (with the nearest valid
    keys). `signal.consensus_weights.trend` reaches into the dict of consensus weights."""
    parts = key.split(".")
    if parts[0] not in TRADING_SECTIONS:
        if parts[0] in Config.__struct_fields__:
            raise SpaceError(f"key '{key}': [{parts[0]}] does not change what a backtest trades; "
                             f"search keys under {', '.join(TRADING_SECTIONS)}")
        raise SpaceError(f"key '{key}': unknown config section '{parts[0]}'"
                         f"{_hint(parts[0], TRADING_SECTIONS)}")
    t: Any = Config
    walked: list[str] = []
    for i, part in enumerate(parts):
        if isinstance(t, type) and issubclass(t, msgspec.Struct):
            hints = _leaf_fields(t)
            if part not in hints:
                prefix = ".".join(walked)
                known = [f"{prefix}.{f}" if prefix else f for f in t.__struct_fields__]
                raise SpaceError(f"key '{key}': unknown config key{_hint('.'.join(walked + [part]), known)}")
            parent, t = t, hints[part]
            if typing.get_origin(t) is dict and i + 1 < len(parts):
                # a dict of named numbers (signal.consensus_weights): its keys are the default's
                names = list(_struct_default(parent, part))
                sub = parts[i + 1]
                if sub not in names or i + 2 != len(parts):
                    known = [f"{'.'.join(walked + [part])}.{n}" for n in names]
                    raise SpaceError(f"key '{key}': unknown config key{_hint(key, known)}")
                return typing.get_args(t)[1]
            walked.append(part)
        else:
            raise SpaceError(f"key '{key}': '{'.'.join(walked)}' is a single value, not a table")
    if isinstance(t, type) and issubclass(t, msgspec.Struct):
        raise SpaceError(f"key '{key}': is a table; name one of its keys "
                         f"({', '.join(f'{key}.{f}' for f in t.__struct_fields__)})")
    return t


def _hint(key: str, known: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=3, cutoff=0.5)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def _is_number_type(t: Any) -> bool:
    return t is int or t is float


def _type_name(t: Any) -> str:
    if typing.get_origin(t) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(t))
    return getattr(t, "__name__", str(t))


_RANGE_KEYS = frozenset({"low", "high", "log", "step"})


def parse_dimension(key: str, spec: Any) -> Dimension:
    t = resolve_key(key)
    if isinstance(spec, list):
        return _choices(key, t, spec)
    if not isinstance(spec, dict):
        raise SpaceError(f"key '{key}': expected a range {{low = .., high = ..}} or a list of choices, "
                         f"got {type(spec).__name__}")
    extra = set(spec) - _RANGE_KEYS
    if extra:
        raise SpaceError(f"key '{key}': unknown range option(s) {', '.join(sorted(extra))} "
                         f"(a range takes low, high, log, step)")
    if not _is_number_type(t):
        raise SpaceError(f"key '{key}': is {_type_name(t)}, not a number, so it takes a list of "
                         f"choices, not a range")
    if "low" not in spec or "high" not in spec:
        raise SpaceError(f"key '{key}': a range needs both low and high")
    low, high, log, step = spec["low"], spec["high"], spec.get("log", False), spec.get("step")
    for name, v in (("low", low), ("high", high)) + ((("step", step),) if step is not None else ()):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise SpaceError(f"key '{key}': {name} must be a finite number, got {v!r}")
        if t is int and not float(v).is_integer():
            raise SpaceError(f"key '{key}': is an integer key, so {name} must be whole, got {v!r}")
    if not isinstance(log, bool):
        raise SpaceError(f"key '{key}': log must be true or false, got {log!r}")
    if not low < high:
        raise SpaceError(f"key '{key}': empty range (low {low} must be below high {high})")
    if log and low <= 0:
        raise SpaceError(f"key '{key}': a log range needs low > 0, got {low}")
    if step is not None:
        if step <= 0:
            raise SpaceError(f"key '{key}': step must be > 0, got {step}")
        if log:
            raise SpaceError(f"key '{key}': a range takes log or step, not both")
    return Dimension(key=key, kind="int" if t is int else "float", low=float(low), high=float(high),
                     log=log, step=None if step is None else float(step))


def _choices(key: str, t: Any, spec: list[Any]) -> Dimension:
    if not spec:
        raise SpaceError(f"key '{key}': empty list of choices")
    if typing.get_origin(t) in (list, dict, tuple):
        raise SpaceError(f"key '{key}': is a {_type_name(typing.get_origin(t))} in the config; only "
                         f"single values (numbers, true/false, names) can be searched")
    out: list[Scalar] = []
    for v in spec:
        try:
            converted = msgspec.convert(v, t, strict=t is not float)
        except msgspec.ValidationError:
            raise SpaceError(f"key '{key}': choice {v!r} is not a valid {_type_name(t)}") from None
        if converted in out:
            raise SpaceError(f"key '{key}': choice {v!r} is listed twice")
        out.append(converted)
    return Dimension(key=key, kind="choice", choices=tuple(out))


def parse_space(doc: dict[str, Any], source: str) -> list[Dimension]:
    """Every dimension of a parsed space.toml, in file order; SpaceError names source and key.
    TOML tables are flattened, so `[grid] width = {..}` means the same as `"grid.width" = {..}`."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, table: dict[str, Any]) -> None:
        for k, v in table.items():
            key = f"{prefix}{k}"
            if isinstance(v, dict) and not (set(v) & _RANGE_KEYS):
                walk(f"{key}.", v)
            else:
                flat[key] = v

    walk("", doc)
    if not flat:
        raise SpaceError(f"{source}: no keys to search")
    dims = []
    for key, spec in flat.items():
        try:
            dims.append(parse_dimension(key, spec))
        except SpaceError as exc:
            raise SpaceError(f"{source}: {exc}") from None
    return dims


def load_space(text: str, source: str) -> list[Dimension]:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpaceError(f"{source}: not valid TOML ({exc})") from None
    return parse_space(doc, source)


def params_to_overrides(params: dict[str, Any]) -> dict[str, Any]:
    """{"grid.width": 0.01} -> {"grid": {"width": 0.01}}: the shape `build_config` merges."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        node = out
        *path, leaf = key.split(".")
        for p in path:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out
