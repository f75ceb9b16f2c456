"""Where a running local stack answers, and the S3Proxy's fixed local-dev credentials.

This module must never hold anything but loopback development values.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

__all__ = ["S3_CREDENTIAL", "S3_IDENTITY", "S3_REGION", "StackEndpoints"]

# Local development credentials of the loopback S3Proxy. They guard nothing of value and are
# printed in the `export` lines on purpose, so that boto3 finds them where it looks on AWS.
S3_IDENTITY = "exopipe-local"
S3_CREDENTIAL = "exopipe-local-secret"  # noqa: S105 - a fixed local-dev credential, not a secret
S3_REGION = "us-east-1"


@dataclass(frozen=True)
class StackEndpoints:
    """Where the running stack answers, in the form the pipeline's settings and boto3 read."""

    kafka_bootstrap: str
    s3_endpoint_url: str
    s3_bucket: str
    exotel_base_url: str
    aws_access_key_id: str = S3_IDENTITY
    aws_secret_access_key: str = S3_CREDENTIAL
    aws_default_region: str = S3_REGION

    def env(self) -> dict[str, str]:
        """The variables a pipeline process needs to use this stack instead of production."""
        return {
            "EXOPIPE_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "EXOPIPE_S3_ENDPOINT_URL": self.s3_endpoint_url,
            "EXOPIPE_S3_BUCKET": self.s3_bucket,
            "EXOPIPE_EXOTEL_BASE_URL": self.exotel_base_url,
            "AWS_ACCESS_KEY_ID": self.aws_access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.aws_secret_access_key,
            "AWS_DEFAULT_REGION": self.aws_default_region,
        }

    def export_lines(self) -> str:
        """``export NAME=value`` lines, quoted for ``eval "$(exopipe stack up)"``."""
        return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in self.env().items())
