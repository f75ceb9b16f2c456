"""The local stack's errors: each carries the exit code ``exopipe stack`` exits with."""

from __future__ import annotations

__all__ = ["StackError", "ToolMissingError"]


class StackError(Exception):
    """A stack operation failed; ``exit_code`` is what ``exopipe stack`` exits with."""

    exit_code = 1


class ToolMissingError(StackError):
    """``java`` or ``mvn`` is not installed; the message says what to install."""

    exit_code = 2
