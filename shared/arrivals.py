"""When the paper market's trades arrive: the arrival model of the replayed ticks.

The paper venue replays 4 ticks a 1m bar per symbol (open, nearer extreme, farther extreme,
close); tick k of a bar belongs to the bar's k-th quarter of wall time and is stamped with the
quarter's market time (bar + 15k s) whatever the model. The model says only WHEN inside its
quarter each symbol's tick is sent:

- "independent" (the default): every tick at its own uniform phase in its quarter, drawn from
  (seed, symbol, bar, quarter) alone. One uniform point per interval is a Poisson process
  conditioned on one event in that interval, so the N symbols of a venue together send N
  independent uniform points a quarter: Poisson arrivals at the configured rate, with the chance
  clumps such a stream has, and no symbol's times depend on which other symbols are listed (as on
  an exchange, where each symbol trades on its own). Not modelled: the correlated bursts of a
  market-wide move (the lockstep model is that burst at its extreme).
- "lockstep": the quarter's ticks of all markets in LOCKSTEP_GROUPS fixed groups (markets i,
  i + G, i + 2G, ... together) at phases 0, 1/G, 2/G, ...: the burst case, kept to measure it.
  It is also the exact pace a test needs: with one symbol, every tick exactly a quarter apart.

Phases come from a counter-based generator, splitmix64 (Steele, Lea and Flood 2014): the symbol's
stream is a 64-bit key hashed from (seed, symbol) and the n-th draw is mix(key + n * golden), so
a quarter's phases for every market are one numpy expression and a restarted venue draws the
same times for the same bars. Pure: no clock, no I/O.
"""

from __future__ import annotations

import hashlib

import numpy as np

ARRIVALS = ("independent", "lockstep")
LOCKSTEP_GROUPS = 8  # sub-steps a quarter-bar tick of all markets is spread over in "lockstep"
# Ticks due this close together are sent in one wake-up: a wake-up costs the venue (and the
# gateway behind it) more than a tick, and 1 ms is the resolution of the event loop's timers
# (epoll waits in whole milliseconds).
SEND_WINDOW_S = 0.001
QUARTERS = 4

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_TO_UNIT = 2.0 ** -53


def check_arrivals(name: str) -> str:
    if name not in ARRIVALS:
        raise ValueError(f"arrivals must be one of {', '.join(repr(a) for a in ARRIVALS)}; got {name!r}")
    return name


def symbol_key(seed: int, symbol: str) -> int:
    """The symbol's own random stream (a 64-bit key), from the seed and its name only."""
    return int.from_bytes(hashlib.blake2b(f"{seed}:{symbol}".encode(), digest_size=8).digest(), "little")


def _mix(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    out: np.ndarray = z ^ (z >> np.uint64(31))
    return out


def independent_phases(keys: np.ndarray, bar: int, k: int) -> np.ndarray:
    """Each key's phase in [0, 1) for quarter `k` of bar number `bar` (market minutes since the
    epoch): the (4 * bar + k)-th draw of that key's splitmix64 stream."""
    n = np.uint64((QUARTERS * bar + k + 1) % 2**64)
    with np.errstate(over="ignore"):
        z = _mix(keys.astype(np.uint64, copy=False) + n * _GOLDEN)
    return (z >> np.uint64(11)).astype(np.float64) * _TO_UNIT


def lockstep_phases(count: int, groups: int = LOCKSTEP_GROUPS) -> np.ndarray:
    """Market i's phase: its group i mod G at G evenly spaced instants from the quarter's start."""
    g = max(1, min(groups, count))
    return (np.arange(count) % g) / g


def quarter_phases(arrivals: str, keys: np.ndarray, bar: int, k: int) -> np.ndarray:
    """Every market's phase in quarter `k` of `bar`, in listing order (the order of `keys`)."""
    if arrivals == "lockstep":
        return lockstep_phases(len(keys))
    return independent_phases(keys, bar, k)


def send_order(phases: np.ndarray) -> list[int]:
    """Market indices in the order their ticks are due (ties in listing order)."""
    order: list[int] = np.argsort(phases, kind="stable").tolist()
    return order
