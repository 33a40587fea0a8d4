"""The contract suite's shared part: the recorded Delta samples (tests/fixtures/delta/*.json) and
the shape comparison both sides are held to.

Shape = the same keys and the same JSON types (string, number, bool, object, array), never the
same values. Each fixture may loosen that, naming the paths (dotted keys; list levels and a
leading `result` are left out):
- `nullable`: the key may be null where the sample has a value,
- `optional`: the key may be absent (live bodies lack it at times),
- `venue_extra`: a key the paper venue sends that the sample lacks, each with its reason,
- `free`: an object whose keys vary from answer to answer (an error's context, a ledger entry's
  meta_data): only its JSON type is compared.
A null in the sample pins no type. A list is compared item by item against the sample's first
item, unless the sample's items differ in shape (then position by position).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "delta"


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())  # type: ignore[no-any-return]


def names(kind: str | None = None) -> list[str]:
    out = []
    for path in sorted(FIXTURES.glob("*.json")):
        if kind is None or json.loads(path.read_text())["kind"] == kind:
            out.append(path.stem)
    return out


def jtype(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    raise TypeError(f"not JSON: {type(v).__name__}")


def _shape(v: Any) -> Any:
    if isinstance(v, dict):
        return tuple(sorted((k, _shape(x)) for k, x in v.items()))
    if isinstance(v, list):
        return ("array", _shape(v[0]) if v else None)
    return jtype(v)


def shape_diff(fixture: dict[str, Any], actual: Any) -> list[str]:
    """Every way `actual` departs from the fixture's body in shape; [] when it conforms."""
    nullable = set(fixture.get("nullable", ()))
    optional = set(fixture.get("optional", ()))
    extra = set(fixture.get("venue_extra") or {})
    free = set(fixture.get("free", ()))
    problems: list[str] = []

    def named(path: str, allowed: set[str]) -> bool:
        return path in allowed or path.removeprefix("result.") in allowed

    def walk(exp: Any, act: Any, path: str) -> None:
        te, ta = jtype(exp), jtype(act)
        if te == "null":
            return
        if ta == "null":
            if not named(path, nullable):
                problems.append(f"{path or '<root>'}: null, the sample has a {te}")
            return
        if te != ta:
            problems.append(f"{path or '<root>'}: {ta}, the sample has a {te}")
            return
        if te == "object" and named(path, free):
            return
        if te == "object":
            for k in exp:
                p = f"{path}.{k}" if path else k
                if k not in act:
                    if not named(p, optional):
                        problems.append(f"{p}: missing")
                    continue
                walk(exp[k], act[k], p)
            for k in act:
                p = f"{path}.{k}" if path else k
                if k not in exp and not named(p, extra):
                    problems.append(f"{p}: not in the sample")
        elif te == "array":
            if not exp:
                return
            if not act:
                if path == "result":
                    problems.append("result: empty, nothing to compare")
                return
            if len(exp) > 1 and len({_shape(x) for x in exp}) > 1:
                if len(act) != len(exp):
                    problems.append(f"{path}: {len(act)} items, the sample has {len(exp)}")
                for e, a in zip(exp, act):
                    walk(e, a, path)
            else:
                for a in act:
                    walk(exp[0], a, path)
    walk(fixture["body"], actual, "")
    return problems
