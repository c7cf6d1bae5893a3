"""Configuration: the example config parses, limits cascade, and every refusal names its key path."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import msgpack
import pytest
import yaml

from riskcore.config import AccountLimits, RiskConfig, config_to_raw, load_config, parse_config
from riskcore.errors import ConfigError
from riskcore.states import KillSwitchMode

EXAMPLE_YAML = """
limits:
  max_daily_drawdown: 0.02
  drawdown_warning: 0.01
  max_account_leverage: 5.0
  leverage_warning: 3.0
  kill_switch_mode: auto
  recovery_cooldown_seconds: 300
  auto_reset: false
  release_on_day_roll: true
  reduce_only_when_halted: true
symbols:
  EURUSD:
    multiplier: 100000
    price_band_pct: 0.01
portfolios:
  fx-desk:
    limits:
      max_gross_exposure: 50000000
      max_net_exposure_per_symbol: 20000000
      max_daily_loss: 250000
    account_limits:
      max_account_leverage: 10.0
      leverage_warning: 8.0
firm:
  limits:
    max_gross_exposure: 200000000
    max_daily_loss: 1000000
    kill_switch_mode: manual
accounts:
  - id: ACC-001
    portfolio: fx-desk
    balance: 1000000
    positions:
      EURUSD: {qty: 10, avg_price: 1.0850}
    limits:
      max_daily_drawdown: 0.03
      kill_switch_mode: manual
trading_day:
  roll_time: "17:00"
  timezone: America/New_York
gate:
  max_staleness_ms: 1000
  poll_interval_ms: 200
"""


def example() -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load(EXAMPLE_YAML)
    return raw


def refusal_path(raw: Any) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    return info.value.path


# --------------------------------------------------------------------------- the example


def test_parse_config_when_example_config_returns_typed_values() -> None:
    config = parse_config(example())

    assert isinstance(config, RiskConfig)
    assert list(config.symbols) == ["EURUSD"]
    assert config.symbols["EURUSD"].multiplier == 100000.0
    assert config.symbols["EURUSD"].price_band_pct == 0.01
    assert list(config.portfolios) == ["fx-desk"]
    assert config.portfolios["fx-desk"].limits.max_gross_exposure == 50_000_000.0
    assert config.portfolios["fx-desk"].limits.max_daily_loss == 250_000.0
    assert config.firm.max_gross_exposure == 200_000_000.0
    assert config.firm.kill_switch_mode is KillSwitchMode.MANUAL
    assert config.firm.max_net_exposure_per_symbol is None
    (account,) = config.accounts
    assert account.id == "ACC-001"
    assert account.portfolio == "fx-desk"
    assert account.balance == 1_000_000.0
    assert len(account.positions) == 1
    assert account.positions[0].symbol == "EURUSD"
    assert account.positions[0].qty == 10.0
    assert account.positions[0].avg_price == 1.0850
    assert config.trading_day.roll_time == "17:00"
    assert config.trading_day.timezone == "America/New_York"
    assert config.gate.max_staleness_ms == 1000.0
    assert config.gate.poll_interval_ms == 200.0
    assert config.symbol_ids() == {"EURUSD": 0}
    assert config.account("ACC-001") is account


def test_parse_config_when_example_config_cascades_defaults_portfolio_and_account_limits() -> None:
    config = parse_config(example())
    limits = config.account("ACC-001").limits

    # account override
    assert limits.max_daily_drawdown == 0.03
    assert limits.kill_switch_mode is KillSwitchMode.MANUAL
    # portfolio account_limits override
    assert limits.max_account_leverage == 10.0
    assert limits.leverage_warning == 8.0
    # top-level defaults
    assert limits.drawdown_warning == 0.01
    assert limits.recovery_cooldown_seconds == 300.0
    assert limits.release_on_day_roll is True
    # built-in defaults, never mentioned anywhere
    assert limits.max_order_notional is None
    # the top-level limits themselves are not touched by portfolio or account overrides
    assert config.limits.max_account_leverage == 5.0
    assert config.limits.max_daily_drawdown == 0.02
    assert config.limits.kill_switch_mode is KillSwitchMode.AUTO


def test_parse_config_when_two_portfolios_each_account_gets_its_own_portfolio_limits() -> None:
    raw = example()
    raw["portfolios"]["equities"] = {"account_limits": {"drawdown_warning": 0.005}}
    raw["accounts"].append({"id": "ACC-002", "portfolio": "equities", "balance": 5000})
    raw["accounts"].append({"id": "ACC-003", "portfolio": "fx-desk", "balance": 5000})

    config = parse_config(raw)

    assert config.account("ACC-002").limits.drawdown_warning == 0.005
    assert config.account("ACC-002").limits.max_account_leverage == 5.0
    assert config.account("ACC-003").limits.drawdown_warning == 0.01
    assert config.account("ACC-003").limits.max_account_leverage == 10.0
    assert config.account("ACC-003").limits.max_daily_drawdown == 0.02


def test_parse_config_when_empty_document_uses_built_in_defaults() -> None:
    config = parse_config(None)

    assert config.limits == AccountLimits()
    assert config.accounts == ()
    assert config.trading_day.roll_time == "17:00"
    assert config.trading_day.timezone == "America/New_York"


def test_parse_config_when_limit_at_upper_bound_one_accepts_it() -> None:
    raw = example()
    raw["limits"]["max_daily_drawdown"] = 1
    raw["accounts"][0]["limits"]["max_daily_drawdown"] = 1

    config = parse_config(raw)

    assert config.limits.max_daily_drawdown == 1.0


def test_load_config_when_valid_file_records_its_source(tmp_path: Path) -> None:
    path = tmp_path / "risk.yaml"
    path.write_text(EXAMPLE_YAML, encoding="utf-8")

    config = load_config(path)

    assert config.source == str(path)
    assert config.account("ACC-001").limits.max_daily_drawdown == 0.03


def test_risk_config_when_frozen_refuses_assignment() -> None:
    config = parse_config(example())

    with pytest.raises(AttributeError):
        config.limits.max_daily_drawdown = 0.5  # type: ignore[misc]


# --------------------------------------------------------------------------- refusals, by key path


def test_parse_config_when_unknown_top_level_key_names_it() -> None:
    raw = example()
    raw["limitz"] = {}

    assert refusal_path(raw) == "limitz"


def test_parse_config_when_unknown_key_in_limits_names_limits_path() -> None:
    raw = example()
    raw["limits"]["max_drawdown"] = 0.02

    assert refusal_path(raw) == "limits.max_drawdown"


def test_parse_config_when_unknown_key_in_account_limits_names_account_path() -> None:
    raw = example()
    raw["accounts"][0]["limits"]["max_leverage"] = 4

    assert refusal_path(raw) == "accounts[0].limits.max_leverage"


def test_parse_config_when_unknown_key_in_portfolio_account_limits_names_portfolio_path() -> None:
    raw = example()
    raw["portfolios"]["fx-desk"]["account_limits"]["stop_loss"] = 1

    assert refusal_path(raw) == "portfolios.fx-desk.account_limits.stop_loss"


def test_parse_config_when_unknown_key_in_account_names_it() -> None:
    raw = example()
    raw["accounts"][0]["currency"] = "USD"

    assert refusal_path(raw) == "accounts[0].currency"


def test_parse_config_when_unknown_key_in_symbol_names_it() -> None:
    raw = example()
    raw["symbols"]["EURUSD"]["tick_size"] = 0.00001

    assert refusal_path(raw) == "symbols.EURUSD.tick_size"


def test_parse_config_when_string_for_a_number_names_the_key() -> None:
    raw = example()
    raw["limits"]["max_daily_drawdown"] = "0.02"

    assert refusal_path(raw) == "limits.max_daily_drawdown"


def test_parse_config_when_bool_for_a_number_names_the_key() -> None:
    raw = example()
    raw["accounts"][0]["balance"] = True

    assert refusal_path(raw) == "accounts[0].balance"


def test_parse_config_when_bool_for_a_limit_names_the_key() -> None:
    raw = example()
    raw["accounts"][0]["limits"]["max_account_leverage"] = True

    assert refusal_path(raw) == "accounts[0].limits.max_account_leverage"


def test_parse_config_when_string_for_a_bool_names_the_key() -> None:
    raw = example()
    raw["limits"]["auto_reset"] = "yes please"

    assert refusal_path(raw) == "limits.auto_reset"


def test_parse_config_when_unknown_kill_switch_mode_names_the_key() -> None:
    raw = example()
    raw["accounts"][0]["limits"]["kill_switch_mode"] = "sometimes"

    assert refusal_path(raw) == "accounts[0].limits.kill_switch_mode"


def test_parse_config_when_infinite_number_names_the_key() -> None:
    raw = example()
    raw["limits"]["max_account_leverage"] = float("inf")

    assert refusal_path(raw) == "limits.max_account_leverage"


@pytest.mark.parametrize("value", [0, 0.0, 1.5, -0.01])
def test_parse_config_when_max_daily_drawdown_out_of_range_names_the_key(value: float) -> None:
    raw = example()
    raw["limits"]["max_daily_drawdown"] = value

    with pytest.raises(ConfigError) as info:
        parse_config(raw)

    assert info.value.path == "limits.max_daily_drawdown"
    assert "(0, 1]" in info.value.message


def test_parse_config_when_negative_cooldown_names_the_key() -> None:
    raw = example()
    raw["accounts"][0]["limits"]["recovery_cooldown_seconds"] = -1

    assert refusal_path(raw) == "accounts[0].limits.recovery_cooldown_seconds"


def test_parse_config_when_zero_cooldown_accepts_it() -> None:
    raw = example()
    raw["accounts"][0]["limits"]["recovery_cooldown_seconds"] = 0

    assert parse_config(raw).account("ACC-001").limits.recovery_cooldown_seconds == 0.0


def test_parse_config_when_non_positive_balance_names_the_key() -> None:
    raw = example()
    raw["accounts"][0]["balance"] = 0

    assert refusal_path(raw) == "accounts[0].balance"


def test_parse_config_when_non_positive_avg_price_names_the_position_key() -> None:
    raw = example()
    raw["accounts"][0]["positions"]["EURUSD"]["avg_price"] = -1.08

    assert refusal_path(raw) == "accounts[0].positions.EURUSD.avg_price"


def test_parse_config_when_account_drawdown_warning_above_hard_limit_names_account_path() -> None:
    raw = example()
    raw["accounts"][0]["limits"]["drawdown_warning"] = 0.05  # above the account's 0.03

    with pytest.raises(ConfigError) as info:
        parse_config(raw)

    assert info.value.path == "accounts[0].limits.drawdown_warning"
    assert "max_daily_drawdown" in info.value.message


def test_parse_config_when_warning_equals_hard_limit_names_account_path() -> None:
    raw = example()
    raw["accounts"][0]["limits"]["drawdown_warning"] = 0.03  # equal to the account's hard limit

    assert refusal_path(raw) == "accounts[0].limits.drawdown_warning"


def test_parse_config_when_account_overrides_only_hard_limit_scales_inherited_warning() -> None:
    raw = example()
    raw["accounts"][0]["limits"] = {"max_daily_drawdown": 0.005}  # inherited warning 0.01 would sit above it

    limits = parse_config(raw).account("ACC-001").limits

    # the inherited warning keeps its ratio (0.01 / 0.02) to the new hard limit
    assert limits.max_daily_drawdown == 0.005
    assert limits.drawdown_warning == pytest.approx(0.0025)
    assert limits.drawdown_warning < limits.max_daily_drawdown


def test_parse_config_when_account_sets_both_warning_and_hard_inconsistently_names_warning_path() -> None:
    raw = example()
    raw["accounts"][0]["limits"] = {"max_daily_drawdown": 0.005, "drawdown_warning": 0.01}

    assert refusal_path(raw) == "accounts[0].limits.drawdown_warning"


def test_parse_config_when_top_level_hard_limit_below_built_in_warning_names_limits_path() -> None:
    raw = example()
    raw["limits"] = {"max_daily_drawdown": 0.005}  # the built-in warning default 0.01 is above it

    assert refusal_path(raw) == "limits.drawdown_warning"


def test_parse_config_when_top_level_leverage_warning_at_or_above_hard_names_limits_path() -> None:
    raw = example()
    raw["limits"]["leverage_warning"] = 6.0

    assert refusal_path(raw) == "limits.leverage_warning"


def test_parse_config_when_portfolio_leverage_warning_above_hard_names_portfolio_path() -> None:
    raw = example()
    raw["portfolios"]["fx-desk"]["account_limits"]["leverage_warning"] = 12.0

    assert refusal_path(raw) == "portfolios.fx-desk.account_limits.leverage_warning"


def test_parse_config_when_account_names_unknown_portfolio_names_portfolio_key() -> None:
    raw = example()
    raw["accounts"][0]["portfolio"] = "rates-desk"

    assert refusal_path(raw) == "accounts[0].portfolio"


def test_parse_config_when_position_in_unknown_symbol_names_position_key() -> None:
    raw = example()
    raw["accounts"][0]["positions"]["XYZ"] = {"qty": 1, "avg_price": 10}

    assert refusal_path(raw) == "accounts[0].positions.XYZ"


def test_parse_config_when_account_id_repeats_names_second_id() -> None:
    raw = example()
    raw["accounts"].append(copy.deepcopy(raw["accounts"][0]))

    with pytest.raises(ConfigError) as info:
        parse_config(raw)

    assert info.value.path == "accounts[1].id"
    assert "ACC-001" in info.value.message


def test_parse_config_when_account_misses_required_key_names_it() -> None:
    raw = example()
    del raw["accounts"][0]["balance"]

    assert refusal_path(raw) == "accounts[0].balance"


@pytest.mark.parametrize("roll_time", ["24:00", "17:60", "5pm", "17:0", "1700", 1700])
def test_parse_config_when_bad_roll_time_names_the_key(roll_time: Any) -> None:
    raw = example()
    raw["trading_day"]["roll_time"] = roll_time

    assert refusal_path(raw) == "trading_day.roll_time"


def test_parse_config_when_unknown_timezone_names_the_key() -> None:
    raw = example()
    raw["trading_day"]["timezone"] = "America/Atlantis"

    assert refusal_path(raw) == "trading_day.timezone"


@pytest.mark.parametrize("poll_interval_ms", [200, 1000, 5000])
def test_parse_config_when_gate_poll_interval_not_below_staleness_names_poll_interval(
    poll_interval_ms: int,
) -> None:
    raw = example()
    raw["gate"] = {
        "max_staleness_ms": 200 if poll_interval_ms == 200 else 1000,
        "poll_interval_ms": poll_interval_ms,
    }

    assert refusal_path(raw) == "gate.poll_interval_ms"


def test_parse_config_when_gate_poll_interval_below_staleness_accepts_it() -> None:
    raw = example()
    raw["gate"] = {"max_staleness_ms": 1000, "poll_interval_ms": 999}

    assert parse_config(raw).gate.poll_interval_ms == 999.0


@pytest.mark.parametrize(
    ("section", "value"),
    [
        ("limits", [0.02]),
        ("limits", 5),
        ("symbols", ["EURUSD"]),
        ("portfolios", "fx-desk"),
        ("firm", 3),
        ("trading_day", "17:00"),
        ("batching", [1, 2]),
        ("placement", 4),
        ("gate", "fast"),
        # falsy values are no more a mapping than truthy ones
        ("symbols", 0),
        ("portfolios", False),
    ],
)
def test_parse_config_when_section_is_not_a_mapping_names_the_section(section: str, value: Any) -> None:
    raw = example()
    raw[section] = value

    assert refusal_path(raw) == section


@pytest.mark.parametrize("value", [{}, 0, "ACC-001"])
def test_parse_config_when_accounts_is_not_a_list_names_accounts(value: Any) -> None:
    raw = example()
    raw["accounts"] = value

    assert refusal_path(raw) == "accounts"


@pytest.mark.parametrize("value", [["EURUSD"], 0])
def test_parse_config_when_positions_is_not_a_mapping_names_positions(value: Any) -> None:
    raw = example()
    raw["accounts"][0]["positions"] = value

    assert refusal_path(raw) == "accounts[0].positions"


def test_parse_config_when_account_limits_is_not_a_mapping_names_it() -> None:
    raw = example()
    raw["accounts"][0]["limits"] = [0.02]

    assert refusal_path(raw) == "accounts[0].limits"


def test_parse_config_when_document_is_a_list_refuses_it() -> None:
    assert refusal_path(["limits", "symbols"]) == ""


# --------------------------------------------------------------------------- files


def test_load_config_when_yaml_is_malformed_raises_config_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("limits: {max_daily_drawdown: [0.02\n", encoding="utf-8")

    with pytest.raises(ConfigError) as info:
        load_config(path)

    assert "not valid YAML" in str(info.value)


def test_load_config_when_file_is_missing_raises_config_error(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"

    with pytest.raises(ConfigError) as info:
        load_config(path)

    assert "cannot read" in str(info.value)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "document",
    [
        "limits: !!python/object:collections.OrderedDict {}\n",
        "limits: !!python/object/apply:os.getcwd []\n",
        "!!python/name:os.system\n",
    ],
)
def test_load_config_when_yaml_has_python_tags_refuses_to_construct(tmp_path: Path, document: str) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text(document, encoding="utf-8")

    with pytest.raises(ConfigError) as info:
        load_config(path)

    assert "not valid YAML" in str(info.value)


def test_load_config_when_file_has_bad_value_reports_key_path(tmp_path: Path) -> None:
    path = tmp_path / "risk.yaml"
    path.write_text(
        EXAMPLE_YAML.replace("max_daily_drawdown: 0.03", "max_daily_drawdown: 3"), encoding="utf-8"
    )

    with pytest.raises(ConfigError) as info:
        load_config(path)

    assert info.value.path == "accounts[0].limits.max_daily_drawdown"
    assert str(info.value).startswith("accounts[0].limits.max_daily_drawdown: ")


def test_config_to_raw_when_parsed_again_gives_the_same_config() -> None:
    # The cascade (portfolio and account overrides) is written out in full, and msgpack keeps every value.
    raw = example()
    raw["durability"] = {"fsync": True, "snapshot_mb": 8}
    config = parse_config(raw, source="example")
    again = parse_config(msgpack.unpackb(msgpack.packb(config_to_raw(config)), raw=False), source="example")
    assert again == config
    assert again.durability.fsync is True
    assert again.durability.snapshot_mb == 8.0
    assert any(a.limits != config.limits for a in config.accounts)  # overrides really were exercised


def test_parse_config_when_durability_has_a_wrong_type_names_its_path() -> None:
    with pytest.raises(ConfigError, match=r"durability\.fsync"):
        parse_config({"durability": {"fsync": "yes"}})
