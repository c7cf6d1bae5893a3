"""riskmon: a live, tick-level risk monitor for trading firms, on Ray.

The Python API::

    from riskmon import RiskSystem, load_config, Tick, Fill, Order
    system = RiskSystem.start(load_config("config/risk_limits.yaml"))
"""

from riskcore.config import RiskConfig, load_config, parse_config
from riskcore.errors import ConfigError, InputError, RiskmonError
from riskcore.events import Cash, Fill, Tick
from riskcore.gate import Decision, Order, Reason
from supervisor.gate import OrderGate
from supervisor.system import RiskSystem

__all__ = [
    "ConfigError",
    "Decision",
    "Cash",
    "Fill",
    "InputError",
    "Order",
    "OrderGate",
    "Reason",
    "RiskConfig",
    "RiskSystem",
    "RiskmonError",
    "Tick",
    "load_config",
    "parse_config",
]
