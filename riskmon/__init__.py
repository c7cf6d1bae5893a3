"""riskmon: a live, tick-level risk monitor for trading firms, on Ray.

The Python API::

    from riskmon import RiskSystem, load_config, Tick, Fill, Order
    system = RiskSystem.start(load_config("config/risk_limits.yaml"))
"""

from driver.gate import OrderGate
from driver.system import RiskSystem
from riskcore.config import RiskConfig, load_config, parse_config
from riskcore.errors import ConfigError, InputError, RiskmonError
from riskcore.events import Cash, Fill, Tick
from riskcore.gate import Decision, Order, Reason

__all__ = [
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
    "Tick",
    "load_config",
    "parse_config",
]
