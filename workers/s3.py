"""The one place the S3 client is configured (boto3), for AWS and S3-compatible stores alike.

Credentials are boto3's business (its standard variables, profiles or instance roles); this
module only says where the store is and how patient to be. boto3 is blocking: async code calls
it through ``asyncio.to_thread``, never on the event loop.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from workers.config import Settings

__all__ = ["new_s3_client"]


def new_s3_client(settings: Settings, **config_overrides: Any) -> Any:
    """A thread-safe boto3 S3 client; create one per process and share it."""
    options: dict[str, Any] = {
        "connect_timeout": 5,
        "read_timeout": 60,
        "retries": {"mode": "standard", "max_attempts": 3},
        "max_pool_connections": 32,
        # Path-style addressing works with every S3-compatible server; AWS accepts it too.
        "s3": {"addressing_style": "path"},
    }
    options.update(config_overrides)
    return boto3.session.Session().client(
        "s3", endpoint_url=settings.s3_endpoint_url, config=Config(**options)
    )
