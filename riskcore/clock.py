"""Time as integers: nanoseconds since the Unix epoch, UTC.

The core never reads a clock; callers pass ``now_ns``. These helpers convert to
and from RFC 3339 and find trading-day boundaries.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

NS_PER_SECOND = 1_000_000_000
NS_PER_US = 1_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def rfc3339_us(ts_ns: int) -> str:
    """``2020-01-01T22:00:00.065000Z`` — UTC, always six fractional digits."""
    seconds, rem_ns = divmod(int(ts_ns), NS_PER_SECOND)
    moment = _EPOCH + timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{rem_ns // NS_PER_US:06d}Z"


def parse_rfc3339(text: str) -> int:
    """Inverse of :func:`rfc3339_us` (also accepts offsets); returns ns since epoch, µs precision."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset")
    return datetime_to_ns(moment)


def datetime_to_ns(dt: datetime) -> int:
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * NS_PER_SECOND + delta.microseconds * NS_PER_US


class TradingCalendar:
    """Trading-day boundaries at a wall-clock roll time in a time zone.

    FX convention: the day rolls at 17:00 America/New_York, so its UTC instant
    moves with daylight saving; ZoneInfo resolves it for each date.
    """

    def __init__(self, roll_time: str, timezone: str) -> None:
        hour, minute = (int(part) for part in roll_time.split(":"))
        self._roll = time(hour, minute)
        self._zone = ZoneInfo(timezone)

    def next_roll_after(self, ts_ns: int) -> int:
        """The first roll instant strictly after ``ts_ns``."""
        local = (_EPOCH + timedelta(microseconds=ts_ns // NS_PER_US)).astimezone(self._zone)
        day = local.date()
        for offset in range(3):
            candidate = datetime.combine(day + timedelta(days=offset), self._roll, self._zone)
            candidate_ns = datetime_to_ns(candidate)
            if candidate_ns > ts_ns:
                return candidate_ns
        raise AssertionError("a roll instant always exists within two days")  # pragma: no cover
