"""The local stack without Docker (Kafka KRaft, S3Proxy, the Exotel API double).

``exopipe stack up|down|status`` on the command line, :class:`LocalStack` from Python (tests).
The manager is imported lazily by the CLI so that ``exopipe --help`` stays fast.
"""

from __future__ import annotations

__all__ = ["LocalStack", "StackEndpoints"]


def __getattr__(name: str) -> object:
    """Import the manager on first use (it pulls in subprocess and socket helpers)."""
    if name in __all__:
        from workers.localstack import manager

        return getattr(manager, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
