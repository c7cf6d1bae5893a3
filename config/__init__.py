"""Bundled configuration files (``risk_limits.yaml``, ``replay_demo.yaml``).

Shipped with the package, so `riskmon demo` needs no setup.
"""

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent
DEFAULT_CONFIG = CONFIG_DIR / "risk_limits.yaml"
