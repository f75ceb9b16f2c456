"""The live audio path as the CLI runs it, for end-to-end stream tests: the real ingress and the
real stream archiver (subprocesses) on the local stack, with a bucket of their own, and a plain
boto3 client (none of the project's code in between) to read the WAVs back."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from tests.conftest import PipelineEnv
from workers import json_codec
from workers.demo.environment import free_port
from workers.demo.processes import Children

__all__ = [
    "APP",
    "CUSTOMER",
    "SECRET",
    "StreamStack",
    "plain_s3",
    "running_stream_stack",
    "stream_url",
    "with_ingress",
]

CUSTOMER = "cust_stream"
APP = "app_live"
SECRET = "stream-tenant-secret"  # noqa: S105 - a test credential


@dataclass
class StreamStack:
    env: PipelineEnv
    ingress_port: int
    children: Children
    bucket: str

    @property
    def stream_url(self) -> str:
        return stream_url(self.ingress_port)

    def logs(self) -> str:
        return "\n".join(f"{c.name}: {c.log_tail(30)}" for c in self.children.started)


def stream_url(port: int) -> str:
    """The test tenant's stream URL on an ingress at ``port`` (the secret as Basic auth)."""
    return f"ws://{CUSTOMER}:{SECRET}@127.0.0.1:{port}/v1/{CUSTOMER}/{APP}/stream"


def with_ingress(env: PipelineEnv, home: Path) -> PipelineEnv:
    """``env`` for an ingress on a free loopback port, knowing the test tenant's secret."""
    secrets = home / "secrets.json"
    secrets.write_bytes(json_codec.dumps({"ingress_tenants": {CUSTOMER: [SECRET]}}))
    return env.with_vars(
        EXOPIPE_SECRETS_FILE=str(secrets),
        EXOPIPE_INGRESS_HOST="127.0.0.1",
        EXOPIPE_INGRESS_PORT=str(free_port("127.0.0.1")),
        EXOPIPE_INGRESS_SPOOL_DIR=str(home / "spool"),
    )


def plain_s3(env: PipelineEnv) -> Any:
    """boto3 as anyone would set it up, none of the project's code in between."""
    return boto3.client(
        "s3",
        endpoint_url=env.variables["EXOPIPE_S3_ENDPOINT_URL"],
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        config=Config(s3={"addressing_style": "path"}),
    )


@asynccontextmanager
async def running_stream_stack(
    topics_env: PipelineEnv, tmp_path: Path
) -> AsyncIterator[StreamStack]:
    """The ingress and the stream archiver as the CLI starts them, with a bucket of their own."""
    bucket = f"streams-{uuid.uuid4().hex[:10]}"
    env = with_ingress(
        topics_env.with_vars(
            EXOPIPE_S3_BUCKET=bucket, EXOPIPE_STREAM_ARCHIVER_SPILL_DIR=str(tmp_path / "spill")
        ),
        tmp_path,
    )
    port = env.settings.ingress.port
    s3 = plain_s3(env)
    await asyncio.to_thread(s3.create_bucket, Bucket=bucket)
    children = Children(tmp_path)
    try:
        children.start("ingress", ["ingress"], env.process_env())
        children.start("stream-archiver", ["worker", "stream-archiver"], env.process_env())
        await children.wait_healthy(f"http://127.0.0.1:{port}/healthz", 60.0)
        yield StreamStack(env, port, children, bucket)
    finally:
        children.stop_all()
        for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=obj["Key"])
        s3.delete_bucket(Bucket=bucket)
