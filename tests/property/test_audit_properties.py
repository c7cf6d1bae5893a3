"""The audit trail's tamper evidence: any one byte flipped, anywhere, is found in the record holding it."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riskcore.audit import verify
from tests.unit.test_audit import write_sample


@pytest.fixture(scope="module")
def sample_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return write_sample(tmp_path_factory.mktemp("sample") / "audit.jsonl").read_bytes()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("flip") / "audit.jsonl"


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_verify_when_any_one_byte_flipped_names_the_record_that_holds_it(
    sample_bytes: bytes, scratch: Path, data: st.DataObject
) -> None:
    position = data.draw(st.integers(0, len(sample_bytes) - 1), label="position")
    mask = data.draw(st.integers(1, 255), label="xor mask")
    tampered = bytearray(sample_bytes)
    tampered[position] ^= mask
    scratch.write_bytes(bytes(tampered))

    result = verify(scratch)

    # Every record seals itself (hash) and the one before it (prev): the flip is found where it is.
    assert not result.ok
    assert result.first_bad == sample_bytes[:position].count(b"\n") + 1
