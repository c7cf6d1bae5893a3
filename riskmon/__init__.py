"""riskmon: a live, tick-level risk monitor for trading firms, on Ray.

The Python API::

    from riskmon import RiskSystem, load_config, Tick, Fill, Order
    system = RiskSystem.start(load_config("config/risk_limits.yaml"))

Teams that embed the order gate test their order paths against each denial with :mod:`riskmon.testing`.
"""

from driver.gate import OrderGate
from driver.metrics import serve_metrics
from driver.system import RiskSystem
from riskcore.account import AccountState
from riskcore.config import RiskConfig, load_config, parse_config
from riskcore.errors import ConfigError, InputError, RiskmonError, TransitionError, UnknownAccountError
from riskcore.events import Cash, Fill, Tick
from riskcore.gate import Decision, Order, Reason
from riskcore.states import AlertLevel, BreakerState, Scope
from riskcore.wire import decode, encode_fills, encode_ticks

__all__ = [
    "AccountState",
    "AlertLevel",
    "BreakerState",
    "Cash",
    "ConfigError",
    "Decision",
    "Fill",
    "InputError",
    "Order",
    "OrderGate",
    "Reason",
    "RiskConfig",
    "RiskSystem",
    "RiskmonError",
    "Scope",
    "Tick",
    "TransitionError",
    "UnknownAccountError",
    "decode",
    "encode_fills",
    "encode_ticks",
    "load_config",
    "parse_config",
    "serve_metrics",
]
