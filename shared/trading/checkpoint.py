"""Where a restarted bot starts reading its fills: just after the last moment it held nothing.

A full reconciliation rebuilds level holdings and the position from the bot's own fills. Reading
every fill a product ever had costs Delta rate budget (10 units a page of 50) that grows without
end, so the supervisor, which keeps every fill in SQLite, finds the newest fill after which the
bot held nothing: no level holdings and its own position flat. Fills up to that point change
nothing a restarted bot needs except realised PnL and fees, which travel as a baseline; the
bot then reads only fills from there on (with an overlap, whose already-counted fills it skips).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import msgspec

from shared.trading import client_order_id as coid
from shared.trading.levels import LevelHoldings, hold_fill
from shared.trading.pnl import Fill, Position, apply_fill, flat_position

# Fills reach the store in arrival order, which can trail the venue's time order by a fill poll
# (3 s); reading from a minute before the checkpoint covers that with room to spare.
OVERLAP_S = 60.0


class FillCheckpoint(msgspec.Struct, frozen=True, kw_only=True):
    since_ts: float  # read the venue's fills from here (the venue's clock, epoch seconds)
    skip_fill_ids: tuple[str, ...]  # fills at or after since_ts already folded into the baseline
    realised: str  # the bot's realised PnL (gross of fees) up to the checkpoint, decimal string
    fees: str
    fills: int  # own fills folded into the baseline
    # net contracts of the product's foreign fills (a trader's manual ones) up to the checkpoint:
    # the venue's account-wide position is the bot's plus these plus the foreign fills after it
    foreign_contracts: int = 0


def find_checkpoint(fills: Sequence[Fill], *, bot_id: str, symbol: str,
                    overlap_s: float = OVERLAP_S) -> FillCheckpoint | None:
    """The newest point in `fills` (the store's order) after which the bot held nothing; None
    if it never was flat after a fill of its own (then the bot reads everything)."""
    holdings = LevelHoldings()
    position: Position | None = None
    flat_at: tuple[int, Position, int] | None = None
    foreign = 0
    for i, f in enumerate(fills):
        if f.symbol != symbol:
            continue
        if coid.decode(f.client_order_id, bot_id=bot_id, symbol=symbol) is None:
            foreign += f.size if f.side == "buy" else -f.size  # the bot never trades on these
            continue
        holdings = hold_fill(holdings, f, bot_id=bot_id, symbol=symbol, grid_step=1.0)  # step: unused here
        position = apply_fill(position or flat_position(symbol, f.contract_value), f)
        if not holdings.held and position.contracts == 0:
            flat_at = (i, position, foreign)
    if flat_at is None:
        return None
    i, pos, foreign = flat_at
    since = fills[i].ts - overlap_s
    skip = tuple(f.fill_id for f in fills[: i + 1] if f.ts >= since)
    return FillCheckpoint(since_ts=since, skip_fill_ids=skip, realised=str(pos.realised), fees=str(pos.fees),
                          fills=pos.fills, foreign_contracts=foreign)


def baseline_position(symbol: str, contract_value: str, checkpoint: FillCheckpoint) -> Position:
    """The flat position a bot starts from at its checkpoint, carrying the PnL before it."""
    return msgspec.structs.replace(flat_position(symbol, contract_value), realised=Decimal(checkpoint.realised),
                                   fees=Decimal(checkpoint.fees), fills=checkpoint.fills)
