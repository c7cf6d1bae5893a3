"""Configuration: validated once, at the edge, into frozen dataclasses.

Every refusal is a :class:`ConfigError` that names the key path, e.g.
``accounts[3].limits.drawdown_warning: must be below max_daily_drawdown (0.005)``.
Limits cascade: the top-level ``limits`` are the defaults, a portfolio's
``account_limits`` override them for its accounts, an account's ``limits``
override both.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import yaml

from riskcore import config_checks as check
from riskcore.errors import ConfigError
from riskcore.states import KillSwitchMode

# --------------------------------------------------------------------------- sections


@dataclass(frozen=True, slots=True)
class AccountLimits:
    """An account's limits after the defaults / portfolio / account cascade."""

    max_daily_drawdown: float = 0.02
    drawdown_warning: float = 0.01
    max_account_leverage: float = 5.0
    leverage_warning: float = 3.0
    kill_switch_mode: KillSwitchMode = KillSwitchMode.AUTO
    recovery_cooldown_seconds: float = 60.0
    auto_reset: bool = False
    release_on_day_roll: bool = False
    reduce_only_when_halted: bool = True
    max_order_notional: float | None = None
    max_position_notional: float | None = None
    max_orders_per_second: int | None = None


_ACCOUNT_LIMITS_SPEC = check.spec(AccountLimits, {
    "max_daily_drawdown": check.fraction,
    "drawdown_warning": check.fraction,
    "max_account_leverage": check.positive,
    "leverage_warning": check.positive,
    "kill_switch_mode": check.mode,
    "recovery_cooldown_seconds": check.non_negative,
    "auto_reset": check.boolean,
    "release_on_day_roll": check.boolean,
    "reduce_only_when_halted": check.boolean,
    "max_order_notional": check.optional(check.positive),
    "max_position_notional": check.optional(check.positive),
    "max_orders_per_second": check.optional(check.positive_int),
})


def _account_limits(path: str, raw: Any, base: Mapping[str, Any] | None) -> dict[str, Any]:
    values = check.checked(path, raw, _ACCOUNT_LIMITS_SPEC, base)
    given = set(raw or {})
    pairs = (("drawdown_warning", "max_daily_drawdown"), ("leverage_warning", "max_account_leverage"))
    for warning, hard in pairs:
        # Overriding only a hard limit keeps the inherited warning's ratio to it, so
        # `limits: {max_daily_drawdown: 0.005}` under a 0.01/0.02 default warns at 0.0025.
        if base is not None and hard in given and warning not in given and values[warning] >= values[hard]:
            values[warning] = values[hard] * (base[warning] / base[hard])
        # A warning at or above its hard limit would never warn before the kill switch.
        if values[warning] >= values[hard]:
            raise ConfigError(
                check.join(path, warning), f"must be below {hard} ({values[hard]}), got {values[warning]}"
            )
    return values


@dataclass(frozen=True, slots=True)
class AggregateLimits:
    """Limits of a portfolio or of the firm; ``None`` means not limited."""

    max_gross_exposure: float | None = None
    max_net_exposure_per_symbol: float | None = None
    max_daily_loss: float | None = None
    kill_switch_mode: KillSwitchMode = KillSwitchMode.AUTO
    recovery_cooldown_seconds: float = 60.0
    auto_reset: bool = False
    reduce_only_when_halted: bool = True


_AGGREGATE_LIMITS_SPEC = check.spec(AggregateLimits, {
    "max_gross_exposure": check.optional(check.positive),
    "max_net_exposure_per_symbol": check.optional(check.positive),
    "max_daily_loss": check.optional(check.positive),
    "kill_switch_mode": check.mode,
    "recovery_cooldown_seconds": check.non_negative,
    "auto_reset": check.boolean,
    "reduce_only_when_halted": check.boolean,
})


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    symbol: str
    multiplier: float = 1.0
    price_band_pct: float | None = None


@dataclass(frozen=True, slots=True)
class PositionSpec:
    symbol: str
    qty: float
    avg_price: float


@dataclass(frozen=True, slots=True)
class AccountSpec:
    id: str
    portfolio: str
    balance: float
    positions: tuple[PositionSpec, ...]
    limits: AccountLimits


@dataclass(frozen=True, slots=True)
class PortfolioSpec:
    id: str
    limits: AggregateLimits


@dataclass(frozen=True, slots=True)
class TradingDayConfig:
    roll_time: str = "17:00"
    timezone: str = "America/New_York"


@dataclass(frozen=True, slots=True)
class BatchingConfig:
    max_ticks: int = 4096
    max_delay_ms: float = 5.0
    max_in_flight: int = 4


@dataclass(frozen=True, slots=True)
class PlacementConfig:
    accounts_per_actor: int = 1
    actor_num_cpus: float = 0.0


@dataclass(frozen=True, slots=True)
class GateConfig:
    max_staleness_ms: float = 1000.0
    poll_interval_ms: float = 200.0


@dataclass(frozen=True, slots=True)
class DurabilityConfig:
    """How journals are written: ``fsync`` puts every record on disk before it is acknowledged (survives the
    machine, not only the process); a journal longer than ``snapshot_mb`` is compacted into a snapshot."""

    fsync: bool = False
    snapshot_mb: float = 64.0


@dataclass(frozen=True, slots=True)
class RiskConfig:
    limits: AccountLimits
    symbols: Mapping[str, SymbolSpec]
    portfolios: Mapping[str, PortfolioSpec]
    firm: AggregateLimits
    accounts: tuple[AccountSpec, ...]
    trading_day: TradingDayConfig = field(default_factory=TradingDayConfig)
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    placement: PlacementConfig = field(default_factory=PlacementConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    durability: DurabilityConfig = field(default_factory=DurabilityConfig)
    source: str = "<memory>"

    def account(self, account_id: str) -> AccountSpec:
        for spec in self.accounts:
            if spec.id == account_id:
                return spec
        raise KeyError(account_id)

    def symbol_ids(self) -> dict[str, int]:
        """Stable small integers for the columnar wire: the order of ``symbols:``."""
        return {name: index for index, name in enumerate(self.symbols)}


_TOP_KEYS = ("limits", "symbols", "portfolios", "firm", "accounts", "trading_day", "batching", "placement",
             "gate", "durability")


_SYMBOL_SPEC = check.spec(
    SymbolSpec, {"multiplier": check.positive, "price_band_pct": check.optional(check.fraction)},
    supplied=("symbol",),
)
_POSITION_SPEC = check.spec(
    PositionSpec, {"qty": check.number, "avg_price": check.positive}, supplied=("symbol",)
)
_TRADING_DAY_SPEC = check.spec(TradingDayConfig, {"roll_time": check.roll_time, "timezone": check.timezone})
_BATCHING_SPEC = check.spec(BatchingConfig, {
    "max_ticks": check.positive_int, "max_delay_ms": check.non_negative, "max_in_flight": check.positive_int,
})
_PLACEMENT_SPEC = check.spec(PlacementConfig, {
    "accounts_per_actor": check.positive_int, "actor_num_cpus": check.non_negative,
})
_GATE_SPEC = check.spec(GateConfig, {"max_staleness_ms": check.positive, "poll_interval_ms": check.positive})
_DURABILITY_SPEC = check.spec(DurabilityConfig, {"fsync": check.boolean, "snapshot_mb": check.positive})


def _section(path: str, raw: Any, cls: type, spec: Mapping[str, tuple[check.Check, Any]]) -> Any:
    return cls(**check.checked(path, raw, spec))


def parse_config(raw: Any, source: str = "<memory>") -> RiskConfig:
    """Validate a ``yaml.safe_load`` result; raise :class:`ConfigError` naming the key path."""
    root = check.mapping("", {} if raw is None else raw)
    unknown = sorted(set(root) - set(_TOP_KEYS))
    if unknown:
        raise ConfigError(unknown[0], f"unknown key (allowed: {', '.join(_TOP_KEYS)})")

    default_limits = _account_limits("limits", root.get("limits"), None)

    symbols: dict[str, SymbolSpec] = {}
    raw_symbols = check.mapping("symbols", check.or_empty(root.get("symbols"), {}))
    for name, body in raw_symbols.items():
        path = f"symbols.{name}"
        if not re.fullmatch(r"[A-Za-z0-9._:/-]{1,32}", name):
            raise ConfigError(path, "symbol names are 1-32 characters of letters, digits and . _ : / -")
        values = check.checked(path, body, _SYMBOL_SPEC)
        symbols[name] = SymbolSpec(symbol=name, **values)

    portfolios: dict[str, PortfolioSpec] = {}
    portfolio_account_limits: dict[str, dict[str, Any]] = {}
    for name, body in check.mapping("portfolios", check.or_empty(root.get("portfolios"), {})).items():
        path = f"portfolios.{name}"
        sections = {"limits": (check.as_given, None), "account_limits": (check.as_given, None)}
        body = check.checked(path, body, sections)
        aggregate = check.checked(f"{path}.limits", body["limits"], _AGGREGATE_LIMITS_SPEC)
        limits = AggregateLimits(**aggregate)
        portfolios[name] = PortfolioSpec(id=name, limits=limits)
        portfolio_account_limits[name] = _account_limits(
            f"{path}.account_limits", body["account_limits"], default_limits
        )

    firm_body = check.checked("firm", root.get("firm"), {"limits": (check.as_given, None)})
    firm = AggregateLimits(**check.checked("firm.limits", firm_body["limits"], _AGGREGATE_LIMITS_SPEC))

    raw_accounts = check.or_empty(root.get("accounts"), [])
    if not isinstance(raw_accounts, list):
        raise ConfigError("accounts", f"must be a list, got {type(raw_accounts).__name__}")
    accounts: list[AccountSpec] = []
    seen: set[str] = set()
    for index, body in enumerate(raw_accounts):
        path = f"accounts[{index}]"
        values = check.checked(
            path,
            body,
            {
                "id": (check.text, check.REQUIRED),
                "portfolio": (check.text, check.REQUIRED),
                "balance": (check.positive, check.REQUIRED),
                "positions": (lambda p, v: check.mapping(p, check.or_empty(v, {})), {}),
                "limits": (check.as_given, None),
            },
        )
        if values["id"] in seen:
            raise ConfigError(f"{path}.id", f"duplicate account id {values['id']!r}")
        seen.add(values["id"])
        if values["portfolio"] not in portfolios:
            raise ConfigError(
                f"{path}.portfolio", f"unknown portfolio {values['portfolio']!r} (define it under portfolios)"
            )
        positions = []
        for symbol, pos in values["positions"].items():
            pos_path = f"{path}.positions.{symbol}"
            if symbol not in symbols:
                raise ConfigError(pos_path, f"unknown symbol {symbol!r} (define it under symbols)")
            pos_values = check.checked(pos_path, pos, _POSITION_SPEC)
            positions.append(PositionSpec(symbol=symbol, **pos_values))
        inherited = portfolio_account_limits[values["portfolio"]]
        merged = _account_limits(f"{path}.limits", values["limits"], inherited)
        accounts.append(
            AccountSpec(
                id=values["id"],
                portfolio=values["portfolio"],
                balance=values["balance"],
                positions=tuple(positions),
                limits=AccountLimits(**merged),
            )
        )

    trading_day = _section("trading_day", root.get("trading_day"), TradingDayConfig, _TRADING_DAY_SPEC)
    batching = _section("batching", root.get("batching"), BatchingConfig, _BATCHING_SPEC)
    placement = _section("placement", root.get("placement"), PlacementConfig, _PLACEMENT_SPEC)
    gate = _section("gate", root.get("gate"), GateConfig, _GATE_SPEC)
    durability = _section("durability", root.get("durability"), DurabilityConfig, _DURABILITY_SPEC)
    if gate.poll_interval_ms >= gate.max_staleness_ms:
        raise ConfigError(
            "gate.poll_interval_ms",
            f"must be below gate.max_staleness_ms ({gate.max_staleness_ms}) or every gate would go stale "
            "between pushes",
        )
    return RiskConfig(
        limits=AccountLimits(**default_limits),
        symbols=symbols,
        portfolios=portfolios,
        firm=firm,
        accounts=tuple(accounts),
        trading_day=trading_day,
        batching=batching,
        placement=placement,
        gate=gate,
        durability=durability,
        source=source,
    )


def config_to_raw(config: RiskConfig) -> dict[str, Any]:
    """The YAML-safe mapping :func:`parse_config` turns back into ``config`` (every account's limits written
    out in full, so no cascade is needed). A restarted actor reads its config from this, kept in the state
    directory."""

    def plain(obj: Any) -> dict[str, Any]:
        return {name: str(value) if isinstance(value, KillSwitchMode) else value
                for name, value in ((n, getattr(obj, n)) for n in obj.__slots__)}

    return {
        "limits": plain(config.limits),
        "symbols": {name: {"multiplier": s.multiplier, "price_band_pct": s.price_band_pct}
                    for name, s in config.symbols.items()},
        "portfolios": {pid: {"limits": plain(p.limits)} for pid, p in config.portfolios.items()},
        "firm": {"limits": plain(config.firm)},
        "accounts": [
            {"id": a.id, "portfolio": a.portfolio, "balance": a.balance,
             "positions": {p.symbol: {"qty": p.qty, "avg_price": p.avg_price} for p in a.positions},
             "limits": plain(a.limits)}
            for a in config.accounts
        ],
        "trading_day": plain(config.trading_day),
        "batching": plain(config.batching),
        "placement": plain(config.placement),
        "gate": plain(config.gate),
        "durability": plain(config.durability),
    }


def load_config(path: str | Path) -> RiskConfig:
    """Read and validate a YAML file (``yaml.safe_load``: no object construction)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError("", f"{path} is not valid YAML: {exc}") from None
    return parse_config(raw, source=str(path))



def save_config(config: RiskConfig, path: str | Path) -> None:
    """Keep ``config`` beside the journals (msgpack of :func:`config_to_raw`), written whole or not at all: an
    actor Ray restarts reads it from there, so a restart needs neither the process that started the service
    nor anything it held in Ray's object store."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    stored = {"source": config.source, "config": config_to_raw(config)}
    tmp.write_bytes(msgpack.packb(stored, use_bin_type=True))
    os.replace(tmp, path)


def resolve_config(config: RiskConfig | str | Path) -> RiskConfig:
    """An actor's config: given, or the path of one :func:`save_config` wrote (validated again on reading)."""
    if isinstance(config, RiskConfig):
        return config
    try:
        stored = msgpack.unpackb(Path(config).read_bytes(), raw=False)
    except (OSError, ValueError, msgpack.UnpackException) as exc:
        raise ConfigError("", f"cannot read the stored config {config}: {exc}") from None
    return parse_config(stored["config"], source=stored["source"])
