"""The error taxonomy every adapter maps its failures into.

Adapters (Kafka, S3, HTTP) translate third-party exceptions at the boundary with
``raise ... from exc`` so that workers decide retry versus dead-letter on these two types only.
"""

from __future__ import annotations

__all__ = ["ConfigError", "PermanentError", "PipelineError", "RetryableError"]


class PipelineError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(PipelineError):
    """Configuration or secrets are missing or malformed; the process should not start."""


class RetryableError(PipelineError):
    """A transient failure (network, 5xx, 429, broker or store unavailable): try again later.

    ``retry_after`` carries a server's hint in seconds when it gave one.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(PipelineError):
    """A failure that will not heal by retrying (bad input, other 4xx, refused URL)."""
