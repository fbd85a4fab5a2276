"""Built-in strategies: an Avellaneda-Stoikov market maker and a cross-venue hedger."""

from hftkit.strategies.hedger import CrossVenueHedger, HedgerConfig
from hftkit.strategies.market_maker import (
    AvellanedaStoikovModel,
    MarketMaker,
    MarketMakerConfig,
    volatility_per_sqrt_second,
)

__all__ = [
    "AvellanedaStoikovModel",
    "CrossVenueHedger",
    "HedgerConfig",
    "MarketMaker",
    "MarketMakerConfig",
    "volatility_per_sqrt_second",
]
