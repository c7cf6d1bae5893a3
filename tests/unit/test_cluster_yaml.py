"""``cluster.yaml`` is a real Ray cluster-launcher file: Ray's own validation, against the schema it ships."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_YAML = Path(__file__).resolve().parents[2] / "cluster.yaml"


def load() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(CLUSTER_YAML.read_text(encoding="utf-8"))
    return config


def test_cluster_yaml_when_validated_by_ray_against_its_shipped_schema_passes() -> None:
    config = load()
    # What `ray up` does first: Ray's schema check, then its defaults filled in and checked again.
    validate_config(prepare_config(config))
    assert set(config["available_node_types"]) == {"head", "worker"}
    assert config["head_node_type"] == "head"
    assert any("pip install -e /opt/riskmon" in c for c in config["setup_commands"])
    starts = config["head_start_ray_commands"] + config["worker_start_ray_commands"]
    assert all("RAY_AUTH_MODE=token" in c for c in starts if "ray start" in c)  # token auth stays on


def test_cluster_yaml_when_a_key_is_wrong_ray_refuses_it() -> None:
    # The validation above can fail: a misspelt top-level key is refused.
    config = load()
    config["head_node_typo"] = config.pop("head_node_type")
    with pytest.raises(Exception, match=r"head_node_typo|Additional properties"):
        validate_config(prepare_config(config))
