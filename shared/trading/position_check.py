"""The bot's position against the venue's, at every resync: never trade on a position the exchange
contradicts.

The venue's position for a product is the whole account's. The bot's is built from its own fills
only, so the check compares the venue's with the bot's plus every foreign fill on the product the
bot has seen (a trader's manual fills; the store and the venue's fill list carry them, and a
restarted bot's checkpoint carries their sum up to it). In paper mode the bots are the only
traders of their products, so the foreign part is 0 there.

A difference can be innocent: a fill the venue has made but the gateway has not delivered yet
(fills are polled every few seconds), or a venue position that lags its fills (Delta's may, by
up to ~10 s). So a first difference only makes the bot stop placing orders and read its fills
again (a full reconciliation, whose position and fills come from one read); a difference that
survives the re-reads (`limit` consecutive resyncs, the second re-read ignoring the restart
checkpoint and reading the account's whole fill list) halts the symbol: its entries are
cancelled, its protective stop stays. The halt lifts when the positions agree again.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Verdict = Literal["agree", "reread", "reread_all", "halt"]
MISMATCH_LIMIT = 3  # consecutive resyncs with a difference before the symbol halts


class PositionCheck(msgspec.Struct, frozen=True, kw_only=True):
    mismatches: int = 0  # consecutive resyncs whose positions differed
    halted: str = ""  # the reason, once the difference persisted; "" while trading

    @property
    def doubtful(self) -> bool:
        """A difference is being looked into or halted on: place no new orders."""
        return self.mismatches > 0


def mismatch_text(bot: int, foreign: int, venue: int) -> str:
    mine = f"bot {bot:+d}" + (f" + manual {foreign:+d}" if foreign else "")
    return f"position mismatch: {mine} vs venue {venue:+d}"


def check_position(state: PositionCheck, *, bot: int, foreign: int, venue: int,
                   limit: int = MISMATCH_LIMIT) -> tuple[PositionCheck, Verdict]:
    """The state after one resync's comparison, and what to do: `agree` (trade on), `reread`
    (a full reconciliation from the restart checkpoint), `reread_all` (one from the account's
    first fill), `halt` (cancel entries, keep the stop, say why)."""
    if limit < 2:
        raise ValueError(f"limit must be >= 2 (one re-read before a halt), got {limit}")
    if bot + foreign == venue:
        return PositionCheck(), "agree"
    n = state.mismatches + 1
    if n >= limit:
        return PositionCheck(mismatches=n, halted=mismatch_text(bot, foreign, venue)), "halt"
    return PositionCheck(mismatches=n), ("reread_all" if n == limit - 1 and n > 1 else "reread")


__all__ = ["MISMATCH_LIMIT", "PositionCheck", "Verdict", "check_position", "mismatch_text"]
