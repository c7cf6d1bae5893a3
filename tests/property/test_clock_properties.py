"""RFC 3339 time (riskcore.clock): every microsecond instant formats and parses back to itself."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from riskcore.clock import parse_rfc3339, rfc3339_us


@given(st.integers(min_value=0, max_value=4_102_444_800 * 1_000_000))  # up to 2100, in µs
def test_rfc3339_us_when_any_microsecond_instant_round_trips(us: int) -> None:
    ts_ns = us * 1_000

    text = rfc3339_us(ts_ns)

    assert parse_rfc3339(text) == ts_ns
    assert text.endswith("Z")
    assert len(text.split(".")[1]) == 7
