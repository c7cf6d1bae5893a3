"""Configuration: validated once, at the edge, into frozen dataclasses.

Every refusal is a :class:`ConfigError` that names the key path, e.g.
``accounts[3].limits.drawdown_warning: must be below max_daily_drawdown (0.005)``.
Limits cascade: the top-level ``limits`` are the defaults, a portfolio's
``account_limits`` override them for its accounts, an account's ``limits``
override both.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgpack
import yaml

from riskcore.errors import ConfigError
from riskcore.states import KillSwitchMode

_MISSING = object()
Check = Callable[[str, Any], Any]  # checks a value at a key path, returns it normalised or raises ConfigError


# --------------------------------------------------------------------------- value checks


def _number(path: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(path, f"must be a number, got {type(value).__name__} {value!r}")
    result = float(value)
    if not math.isfinite(result):
        raise ConfigError(path, f"must be finite, got {value!r}")
    return result


def _positive(path: str, value: Any) -> float:
    result = _number(path, value)
    if result <= 0:
        raise ConfigError(path, f"must be > 0, got {value!r}")
    return result


def _fraction(path: str, value: Any) -> float:
    result = _number(path, value)
    if not 0 < result <= 1:
        raise ConfigError(path, f"must be in (0, 1], got {value!r}")
    return result


def _non_negative(path: str, value: Any) -> float:
    result = _number(path, value)
    if result < 0:
        raise ConfigError(path, f"must be >= 0, got {value!r}")
    return result


def _optional(check: Check) -> Check:
    def optional_check(path: str, value: Any) -> Any:
        return None if value is None else check(path, value)

    return optional_check


def _positive_int(path: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(path, f"must be an integer, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ConfigError(path, f"must be >= 1, got {value!r}")
    return value


def _boolean(path: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(path, f"must be true or false, got {value!r}")
    return value


def _mode(path: str, value: Any) -> KillSwitchMode:
    try:
        return KillSwitchMode(value)
    except ValueError:
        raise ConfigError(path, f"must be one of auto, manual; got {value!r}") from None


def _text(path: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(path, f"must be a non-empty string, got {value!r}")
    return value


def _roll_time(path: str, value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
        raise ConfigError(path, f"must be HH:MM (24 h), got {value!r}")
    return value


def _timezone(path: str, value: Any) -> str:
    text = _text(path, value)
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(path, f"unknown time zone {value!r}") from None
    return text


def _mapping(path: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(path, f"must be a mapping, got {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(path, f"keys must be strings, got {key!r}")
    return value


def _as_given(path: str, value: Any) -> Any:
    """A sub-section, checked by its own spec afterwards."""
    return value


def _or_empty(value: Any, empty: Any) -> Any:
    """An absent (``null``) section is empty; any other value, falsy or not, is checked as given."""
    return empty if value is None else value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _fields(
    path: str,
    raw: Any,
    spec: Mapping[str, tuple[Check, Any]],
    base: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Check ``raw`` against ``spec`` (key -> (check, default)); refuse unknown keys."""
    raw = _mapping(path, {} if raw is None else raw)
    unknown = sorted(set(raw) - set(spec))
    if unknown:
        raise ConfigError(_join(path, unknown[0]), f"unknown key (allowed: {', '.join(sorted(spec))})")
    out: dict[str, Any] = {}
    for key, (check, default) in spec.items():
        if key in raw:
            out[key] = check(_join(path, key), raw[key])
        elif base is not None and key in base:
            out[key] = base[key]
        elif default is _MISSING:
            raise ConfigError(_join(path, key), "is required")
        else:
            out[key] = default
    return out


def _spec(
    cls: type, checks: Mapping[str, Check], supplied: tuple[str, ...] = ()
) -> dict[str, tuple[Check, Any]]:
    """A section's spec: each field's check, and its default as the dataclass ``cls`` declares it (the one
    place a default is written; a field without one is required). ``supplied``: fields the parser fills in."""
    declared = {f.name: f for f in fields(cls)}
    if set(checks) | set(supplied) != set(declared):
        raise TypeError(f"{cls.__name__}: checks for {sorted(checks)}, fields {sorted(declared)}")
    return {name: (check, _MISSING if declared[name].default is MISSING else declared[name].default)
            for name, check in checks.items()}


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


_ACCOUNT_LIMITS_SPEC = _spec(AccountLimits, {
    "max_daily_drawdown": _fraction,
    "drawdown_warning": _fraction,
    "max_account_leverage": _positive,
    "leverage_warning": _positive,
    "kill_switch_mode": _mode,
    "recovery_cooldown_seconds": _non_negative,
    "auto_reset": _boolean,
    "release_on_day_roll": _boolean,
    "reduce_only_when_halted": _boolean,
    "max_order_notional": _optional(_positive),
    "max_position_notional": _optional(_positive),
    "max_orders_per_second": _optional(_positive_int),
})


def _account_limits(path: str, raw: Any, base: Mapping[str, Any] | None) -> dict[str, Any]:
    values = _fields(path, raw, _ACCOUNT_LIMITS_SPEC, base)
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
                _join(path, warning), f"must be below {hard} ({values[hard]}), got {values[warning]}"
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


_AGGREGATE_LIMITS_SPEC = _spec(AggregateLimits, {
    "max_gross_exposure": _optional(_positive),
    "max_net_exposure_per_symbol": _optional(_positive),
    "max_daily_loss": _optional(_positive),
    "kill_switch_mode": _mode,
    "recovery_cooldown_seconds": _non_negative,
    "auto_reset": _boolean,
    "reduce_only_when_halted": _boolean,
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


_SYMBOL_SPEC = _spec(SymbolSpec, {"multiplier": _positive, "price_band_pct": _optional(_fraction)},
                     supplied=("symbol",))
_POSITION_SPEC = _spec(PositionSpec, {"qty": _number, "avg_price": _positive}, supplied=("symbol",))
_TRADING_DAY_SPEC = _spec(TradingDayConfig, {"roll_time": _roll_time, "timezone": _timezone})
_BATCHING_SPEC = _spec(BatchingConfig, {"max_ticks": _positive_int, "max_delay_ms": _non_negative,
                                        "max_in_flight": _positive_int})
_PLACEMENT_SPEC = _spec(PlacementConfig,
                        {"accounts_per_actor": _positive_int, "actor_num_cpus": _non_negative})
_GATE_SPEC = _spec(GateConfig, {"max_staleness_ms": _positive, "poll_interval_ms": _positive})
_DURABILITY_SPEC = _spec(DurabilityConfig, {"fsync": _boolean, "snapshot_mb": _positive})


def _section(path: str, raw: Any, cls: type, spec: Mapping[str, tuple[Check, Any]]) -> Any:
    return cls(**_fields(path, raw, spec))


def parse_config(raw: Any, source: str = "<memory>") -> RiskConfig:
    """Validate a ``yaml.safe_load`` result; raise :class:`ConfigError` naming the key path."""
    root = _mapping("", {} if raw is None else raw)
    unknown = sorted(set(root) - set(_TOP_KEYS))
    if unknown:
        raise ConfigError(unknown[0], f"unknown key (allowed: {', '.join(_TOP_KEYS)})")

    default_limits = _account_limits("limits", root.get("limits"), None)

    symbols: dict[str, SymbolSpec] = {}
    raw_symbols = _mapping("symbols", _or_empty(root.get("symbols"), {}))
    for name, body in raw_symbols.items():
        path = f"symbols.{name}"
        if not re.fullmatch(r"[A-Za-z0-9._:/-]{1,32}", name):
            raise ConfigError(path, "symbol names are 1-32 characters of letters, digits and . _ : / -")
        values = _fields(path, body, _SYMBOL_SPEC)
        symbols[name] = SymbolSpec(symbol=name, **values)

    portfolios: dict[str, PortfolioSpec] = {}
    portfolio_account_limits: dict[str, dict[str, Any]] = {}
    for name, body in _mapping("portfolios", _or_empty(root.get("portfolios"), {})).items():
        path = f"portfolios.{name}"
        body = _fields(path, body, {"limits": (_as_given, None), "account_limits": (_as_given, None)})
        limits = AggregateLimits(**_fields(f"{path}.limits", body["limits"], _AGGREGATE_LIMITS_SPEC))
        portfolios[name] = PortfolioSpec(id=name, limits=limits)
        portfolio_account_limits[name] = _account_limits(
            f"{path}.account_limits", body["account_limits"], default_limits
        )

    firm_body = _fields("firm", root.get("firm"), {"limits": (_as_given, None)})
    firm = AggregateLimits(**_fields("firm.limits", firm_body["limits"], _AGGREGATE_LIMITS_SPEC))

    raw_accounts = _or_empty(root.get("accounts"), [])
    if not isinstance(raw_accounts, list):
        raise ConfigError("accounts", f"must be a list, got {type(raw_accounts).__name__}")
    accounts: list[AccountSpec] = []
    seen: set[str] = set()
    for index, body in enumerate(raw_accounts):
        path = f"accounts[{index}]"
        values = _fields(
            path,
            body,
            {
                "id": (_text, _MISSING),
                "portfolio": (_text, _MISSING),
                "balance": (_positive, _MISSING),
                "positions": (lambda p, v: _mapping(p, _or_empty(v, {})), {}),
                "limits": (_as_given, None),
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
            pos_values = _fields(pos_path, pos, _POSITION_SPEC)
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
