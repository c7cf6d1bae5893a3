"""riskmon's Ray-free core: the risk arithmetic, limit checks, breaker transitions and order gate.

Nothing here imports Ray or reads a clock; time is always an argument.
"""

from riskcore.account import AccountBook, AccountState, fill_position
from riskcore.config import AccountLimits, AggregateLimits, RiskConfig, load_config, parse_config
from riskcore.engine import BatchedEngine, EventBatch, ReferenceEngine, TickColumns
from riskcore.errors import (
    ConfigError,
    InputError,
    RiskmonError,
    SnapshotError,
    TransitionError,
    UnknownAccountError,
)
from riskcore.events import AlertEvent, BreakerEvent, Cash, Fill, Tick
from riskcore.states import AlertLevel, Breaker, BreakerState, KillSwitchMode, Scope

__all__ = [
    "AccountBook",
    "AccountLimits",
    "AccountState",
    "AggregateLimits",
    "AlertEvent",
    "AlertLevel",
    "BatchedEngine",
    "Breaker",
    "BreakerEvent",
    "BreakerState",
    "Cash",
    "ConfigError",
    "EventBatch",
    "Fill",
    "InputError",
    "KillSwitchMode",
    "ReferenceEngine",
    "RiskConfig",
    "RiskmonError",
    "Scope",
    "SnapshotError",
    "Tick",
    "TickColumns",
    "TransitionError",
    "UnknownAccountError",
    "fill_position",
    "load_config",
    "parse_config",
]
