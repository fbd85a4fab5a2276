"""The exchange simulator: a pure matching engine and accounts, with venue servers on top.

What the simulator may import from the client side (``hftkit.venues``): only documented
facts about the venues, never client code. The simulator writes its own wire formats,
request-signature checks (Binance HMAC-SHA256 and Ed25519, ``binance.signatures``) and
login-token verification (Thalex RS512 JWT, ``thalex.tokens``) from the venues'
documentation, independently of the client's codecs and signers, so that a bug in a client
codec or signer fails against the simulator as it would against the venue instead of being
shared by both. The facts it may import are data with one home: the Thalex error codes
(``hftkit.venues.thalex.errors.ThalexErrorCode``, used everywhere in ``sim``: no bare ints,
no second table), the Binance hosts, weights and ``Market`` enum
(``hftkit.venues.binance.endpoints``) and the recorded-data reader
(``hftkit.venues.binance.recording``). Tests may sign with the client and verify with the
simulator: that cross-check is the point.

Layout: ``engine`` is venue-neutral and sans-I/O (``matching`` the order path, ``liquidity``
the replayed market's background volume, ``book`` their shared data, ``accounts``, ``venue``,
``faults``, ``errors``, market drivers); ``binance`` and ``thalex`` are the venue-compatible
servers that turn engine results into wire messages (reject reasons map to venue codes in
``engine.errors``).
"""

from hftkit.sim.engine.accounts import (
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
from hftkit.sim.engine.errors import (
    BINANCE_ERRORS,
    THALEX_ERRORS,
    CloseReason,
    RejectReason,
    SimulatorConfigurationError,
    SimulatorInputError,
    binance_error,
    thalex_error,
)
from hftkit.sim.engine.matching import (
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
