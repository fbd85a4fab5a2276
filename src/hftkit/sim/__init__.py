"""The exchange simulator: a pure matching engine and accounts, with venue servers on top.

``matching`` and ``accounts`` are sans-I/O; the Binance- and Thalex-compatible servers turn
their results into wire messages (reject reasons map to venue codes in ``errors``).
"""

from hftkit.sim.accounts import (
    FEE_ACCOUNT,
    MARKET_ACCOUNT,
    Account,
    Accounts,
    Balance,
    FeeSchedule,
    InstrumentTerms,
    LedgerEntry,
    Position,
)
from hftkit.sim.errors import (
    BINANCE_ERRORS,
    THALEX_ERRORS,
    CloseReason,
    RejectReason,
    SimulatorConfigurationError,
    SimulatorInputError,
    binance_error,
    thalex_error,
)
from hftkit.sim.matching import (
    NO_ORDER_ID,
    BookUpdate,
    CancelAllResult,
    DepthSnapshot,
    Execution,
    MarketResult,
    MatchingEngine,
    OrderResult,
    OrderUpdate,
    SelfTradePrevention,
    SimOrder,
    TradePrint,
)

__all__ = [
    "BINANCE_ERRORS",
    "FEE_ACCOUNT",
    "MARKET_ACCOUNT",
    "NO_ORDER_ID",
    "THALEX_ERRORS",
    "Account",
    "Accounts",
    "Balance",
    "BookUpdate",
    "CancelAllResult",
    "CloseReason",
    "DepthSnapshot",
    "Execution",
    "FeeSchedule",
    "InstrumentTerms",
    "LedgerEntry",
    "MarketResult",
    "MatchingEngine",
    "OrderResult",
    "OrderUpdate",
    "Position",
    "RejectReason",
    "SelfTradePrevention",
    "SimOrder",
    "SimulatorConfigurationError",
    "SimulatorInputError",
    "TradePrint",
    "binance_error",
    "thalex_error",
]
