"""The exchange side of Delta's dead-man switch, as a pure state machine (no I/O, no clock of its
own): the paper venue (workers/venue/deadman.py) keeps one `DeadmanSwitches` per API key and
asks it, on its timer, which heartbeats have lapsed.

Delta's documented behaviour (docs: slatedocs `_deadman_switch.md`; api spec §5 "Others"):
- `POST /v2/heartbeat/create {heartbeat_id, impact, contract_types | product_symbols,
  underlying_assets?, config: [{action, unhealthy_count, value?}]}` registers a heartbeat and
  answers `{heartbeat_id}`. It carries no TTL: a heartbeat is armed by its first ack.
- `POST /v2/heartbeat {heartbeat_id, ttl}` (ttl in milliseconds, integer or string) keeps it
  alive for `ttl` more; `ttl` 0 disables it. Answers `{heartbeat_timestamp, process_enabled}`.
- On lapse the configured actions run; `cancel_orders` "cancels all open orders".

What the venue decides where Delta says nothing (each UNCONFIRMED):
- `unhealthy_count` counts missed TTL periods: an action runs once the heartbeat has been
  silent for `unhealthy_count` x ttl, and once per lapse (an ack re-arms it).
- Re-creating an existing heartbeat_id replaces its scope and actions and keeps it armed as it
  was (a restarted client re-registers the same id; refusing would leave it unable to).
- Protective stops: "open orders" is read as Delta's order state `open`; untriggered stop
  orders are state `pending` and are KEPT. That is also the safe side when nobody is watching: a
  position left without its stop is the worse failure. Delta's UI counts stop orders among
  "open orders", so the live exchange may cancel them too.
- `heartbeat_timestamp` is the next expiry in microseconds, as a string (the docs' example
  "1243453435" fits no unit); `process_enabled` the string "true"/"false" as in the docs.
- `spreads` is accepted and stored but does nothing here (the paper venue has no spreads to add).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from shared.delta.constants import (
    HEARTBEAT_ACTIONS,
    HEARTBEAT_IMPACTS,
    HEARTBEAT_MAX_SYMBOLS,
)
from shared.matching.errors import VenueError, bad_schema
from shared.products import ProductSpec

MAX_HEARTBEATS = 64  # per key: bounded (Delta's own limit is not documented)
MAX_TTL_MS = 86_400_000  # a day; longer is a mistake, not a dead-man switch
MAX_LIST = HEARTBEAT_MAX_SYMBOLS  # contract_types / product_symbols / underlying_assets entries


class Action(msgspec.Struct, frozen=True, kw_only=True):
    action: str
    unhealthy_count: int = 1
    value: str | int | float | None = None


class Heartbeat(msgspec.Struct, frozen=True, kw_only=True):
    heartbeat_id: str
    impact: str
    contract_types: tuple[str, ...] = ()
    underlying_assets: tuple[str, ...] = ()
    product_symbols: tuple[str, ...] = ()
    config: tuple[Action, ...] = ()
    ttl_ms: int = 0  # of the last ack; 0: not armed (never acked, or disabled)
    last_ack_us: int = 0  # wall time of the last ack (µs)
    fired: tuple[str, ...] = ()  # actions already run in this lapse

    @property
    def armed(self) -> bool:
        return self.ttl_ms > 0

    @property
    def expires_us(self) -> int | None:
        return self.last_ack_us + self.ttl_ms * 1000 if self.armed else None

    def covers(self, spec: ProductSpec) -> bool:
        """Whether the product is in this heartbeat's scope."""
        if self.impact == "products":
            return spec.symbol in self.product_symbols
        if spec.contract_type not in self.contract_types:
            return False
        return not self.underlying_assets or spec.underlying_asset in self.underlying_assets

    def public(self, user_id: int | str) -> dict[str, Any]:
        """The shape GET /v2/heartbeat lists."""
        return {"user_id": user_id, "heartbeat_id": self.heartbeat_id, "impact": self.impact,
                "contract_types": list(self.contract_types), "underlying_assets": list(self.underlying_assets),
                "product_symbols": list(self.product_symbols),
                "config": [{"action": a.action, "unhealthy_count": a.unhealthy_count}
                           | ({"value": a.value} if a.value is not None else {}) for a in self.config]}


class Lapse(msgspec.Struct, frozen=True, kw_only=True):
    """An action due now: run `action` over the products `heartbeat` covers."""
    heartbeat: Heartbeat
    action: str


def _strings(body: Mapping[str, Any], key: str, *, required: bool) -> tuple[str, ...]:
    raw = body.get(key)
    if raw is None:
        if required:
            raise bad_schema(f"{key} is required", key)
        return ()
    if not isinstance(raw, list) or not all(isinstance(x, str) and x for x in raw) or len(raw) > MAX_LIST:
        raise bad_schema(f"{key} must be a list of at most {MAX_LIST} non-empty strings", key)
    if required and not raw:
        raise bad_schema(f"{key} must not be empty", key)
    return tuple(raw)


def _heartbeat_id(body: Mapping[str, Any]) -> str:
    hid = body.get("heartbeat_id")
    if not isinstance(hid, str) or not hid or len(hid) > 64:
        raise bad_schema("heartbeat_id must be a non-empty string of at most 64 characters", "heartbeat_id")
    return hid


def _actions(body: Mapping[str, Any]) -> tuple[Action, ...]:
    raw = body.get("config")
    if not isinstance(raw, list) or not raw or len(raw) > len(HEARTBEAT_ACTIONS) * 4:
        raise bad_schema("config must be a non-empty list of {action, unhealthy_count}", "config")
    out = []
    for item in raw:
        try:
            a = msgspec.convert(item, Action, strict=False)
        except msgspec.ValidationError as exc:
            raise bad_schema(f"config: {exc}", "config") from None
        if a.action not in HEARTBEAT_ACTIONS:
            raise bad_schema(f"config action must be one of {', '.join(HEARTBEAT_ACTIONS)}", "config")
        if not 1 <= a.unhealthy_count <= 1000:
            raise bad_schema("config unhealthy_count must be within [1, 1000]", "config")
        out.append(a)
    return tuple(out)


def ttl_ms_of(body: Mapping[str, Any]) -> int:
    """`ttl` in milliseconds, integer or numeric string (the docs type it integer/string)."""
    raw = body.get("ttl")
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise bad_schema("ttl is required: milliseconds, 0 disables the heartbeat", "ttl")
    try:
        ttl = int(raw)
    except ValueError:
        raise bad_schema("ttl must be a whole number of milliseconds", "ttl") from None
    if not 0 <= ttl <= MAX_TTL_MS:
        raise bad_schema(f"ttl must be within [0, {MAX_TTL_MS}] milliseconds", "ttl")
    return ttl


class DeadmanSwitches:
    """One key's heartbeats. Times are wall-clock microseconds, given by the caller."""

    def __init__(self, heartbeats: Iterable[Heartbeat] = ()) -> None:
        self.heartbeats: dict[str, Heartbeat] = {h.heartbeat_id: h for h in heartbeats}

    def create(self, body: Mapping[str, Any]) -> Heartbeat:
        hid = _heartbeat_id(body)
        impact = body.get("impact")
        if impact not in HEARTBEAT_IMPACTS:
            raise bad_schema(f"impact must be one of {', '.join(HEARTBEAT_IMPACTS)}", "impact")
        by_products = impact == "products"
        new = Heartbeat(heartbeat_id=hid, impact=impact,
                        contract_types=_strings(body, "contract_types", required=not by_products),
                        underlying_assets=_strings(body, "underlying_assets", required=False),
                        product_symbols=_strings(body, "product_symbols", required=by_products),
                        config=_actions(body))
        old = self.heartbeats.get(hid)
        if old is None and len(self.heartbeats) >= MAX_HEARTBEATS:
            raise VenueError("heartbeat_limit_exceeded", {"limit": MAX_HEARTBEATS}, 400)
        if old is not None:  # same id again: new scope, the arming it had
            new = msgspec.structs.replace(new, ttl_ms=old.ttl_ms, last_ack_us=old.last_ack_us, fired=old.fired)
        self.heartbeats[hid] = new
        return new

    def ack(self, body: Mapping[str, Any], now_us: int) -> Heartbeat:
        hid = _heartbeat_id(body)
        ttl = ttl_ms_of(body)
        hb = self.heartbeats.get(hid)
        if hb is None:
            # Delta's code for an unknown heartbeat is UNCONFIRMED; clients re-create on any 4xx.
            raise VenueError("heartbeat_not_found", {"heartbeat_id": hid}, 404)
        hb = msgspec.structs.replace(hb, ttl_ms=ttl, last_ack_us=now_us, fired=())
        self.heartbeats[hid] = hb
        return hb

    def due(self, now_us: int) -> list[Lapse]:
        """Actions whose heartbeat has been silent for unhealthy_count x ttl, not yet run in
        this lapse; each is marked run (the caller runs it)."""
        out = []
        for hid, hb in list(self.heartbeats.items()):
            if not hb.armed:
                continue
            silent_us = now_us - hb.last_ack_us
            fired = list(hb.fired)
            for a in hb.config:
                if a.action in fired or silent_us < a.unhealthy_count * hb.ttl_ms * 1000:
                    continue
                fired.append(a.action)
                out.append(Lapse(heartbeat=hb, action=a.action))
            if len(fired) != len(hb.fired):
                self.heartbeats[hid] = msgspec.structs.replace(hb, fired=tuple(fired))
        return out

    def next_due_us(self) -> int | None:
        """When the next action falls due (None: nothing armed), for the caller's timer."""
        times = [hb.last_ack_us + a.unhealthy_count * hb.ttl_ms * 1000
                 for hb in self.heartbeats.values() if hb.armed for a in hb.config if a.action not in hb.fired]
        return min(times) if times else None

    def listing(self, heartbeat_id: str | None, user_id: int | str) -> list[dict[str, Any]]:
        return [h.public(user_id) for h in self.heartbeats.values()
                if heartbeat_id is None or h.heartbeat_id == heartbeat_id]

    def encode(self) -> bytes:
        return msgspec.json.encode(list(self.heartbeats.values()))

    @classmethod
    def decode(cls, data: bytes) -> DeadmanSwitches:
        return cls(msgspec.json.decode(data, type=list[Heartbeat]))


def ack_answer(hb: Heartbeat) -> dict[str, str]:
    """POST /v2/heartbeat's result: the next expiry (µs, as a string) and whether it is on."""
    expires = hb.expires_us
    return {"heartbeat_timestamp": str(expires if expires is not None else 0),
            "process_enabled": "true" if hb.armed else "false"}

