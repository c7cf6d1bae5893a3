"""The one family of riskmon exceptions.

Exceptions are for broken contracts and bad input; a denied order is a value
(:class:`riskcore.gate.Decision`), never an exception. Every error passes all of
its constructor arguments to ``super().__init__`` so it pickles across Ray
processes unchanged.
"""

from __future__ import annotations


class RiskmonError(Exception):
    """Base of every error riskmon raises on purpose."""


class ConfigError(RiskmonError):
    """A configuration value is missing, unknown, mistyped or inconsistent.

    ``path`` names the key, e.g. ``accounts[3].limits.max_daily_drawdown``.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(path, message)
        self.path = path
        self.message = message

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class InputError(RiskmonError):
    """An input (tick, fill, frame, file record) was refused; nothing was applied."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class TransitionError(RiskmonError):
    """A state machine was asked for a transition its table does not have."""

    def __init__(self, machine: str, state: str, trigger: str) -> None:
        super().__init__(machine, state, trigger)
        self.machine = machine
        self.state = state
        self.trigger = trigger

    def __str__(self) -> str:
        return f"{self.machine}: no transition from {self.state} on {self.trigger}"


class UnknownAccountError(RiskmonError):
    """An operation named an account that the configuration does not have."""

    def __init__(self, account: str) -> None:
        super().__init__(account)
        self.account = account

    def __str__(self) -> str:
        return f"unknown account {self.account!r}"


class SnapshotError(RiskmonError):
    """A snapshot does not fit here (another format version, other accounts or symbols); nothing was restored.

    The journal before the snapshot is gone (compacted into it), so a shard that cannot restore its snapshot
    does not start: its accounts stay down and gates deny them until the config matches its state again.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message
