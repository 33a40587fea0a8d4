"""Pure matching engine of the paper venue (no I/O): see engine.py for the fill rules."""

from .engine import (
                     Event,
                     Fill,
                     FillEvent,
                     FundingEvent,
                     FundingPayment,
                     MatchingEngine,
                     Order,
                     OrderEvent,
                     OrderRequest,
                     Position,
                     PositionEvent,
                     Wallet,
                     dec,
                     money,
)
from .errors import VenueError, bad_schema

__all__ = ["Event", "Fill", "FillEvent", "FundingEvent", "FundingPayment", "MatchingEngine",
           "Order", "OrderEvent", "OrderRequest",
           "Position", "PositionEvent", "VenueError", "Wallet", "bad_schema", "dec", "money"]
