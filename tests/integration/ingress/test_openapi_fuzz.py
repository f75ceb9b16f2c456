"""Schemathesis against the ingress's OpenAPI document, over loopback, on the real broker.

A real ``exopipe ingress`` process serves the document's operations; schemathesis generates
requests from the document (positive and negative data, derandomized, so every run sends the
same cases) and checks every response: no 5xx (the documented 503 has no cause here: the broker
is up and the spool has room), the status code is documented for the operation, and the content
type, body and headers conform to what the document says for that status. Then the topics are
read back: every case the ingress refused with a status it records (all but 401, 403 and 429) is
on the rejected topic exactly once, matched by a header that carries the case's number; no other
case is (a 400 in plain text comes from the HTTP parser, before the ingress, and is not
recorded); and every 2xx answer's id is on the webhook topic of its kind, as often as answered.

Tenant secrets come from an auth provider, so most cases authenticate. The tenant is chosen per
case by a path hook: every tenth case keeps its generated customer id (a stranger: 401); two in
ten go to one busy tenant, which passes the rate limit's burst during the run (429); the others
go to a tenant per block of cases, each block well under the burst.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

from tests.conftest import PipelineEnv
from tests.integration.ingress.test_spool_restart import IngressProcess, free_port
from topics.catalog import (
    WEBHOOK_CALL_STATUS,
    WEBHOOK_INCOMING_CALL,
    WEBHOOK_MISSED_CALL,
    WEBHOOK_RECORDING_READY,
    WEBHOOK_REJECTED,
)
from topics.events import CloudEvent, parse_event
from workers.dlq.reader import read_since
from workers.ingress.app import OPENAPI_PATH
from workers.ingress.normalize import KINDS

pytestmark = pytest.mark.slow

WEBHOOK = "/v1/{customer_id}/{app_id}/{kind}"
POSITIVE, NEGATIVE = GenerationMode.POSITIVE, GenerationMode.NEGATIVE
# (method, path, generation mode, cases): 1,104 in all. The ops endpoints take no input, so one
# case each is all there is to generate. The stream route is documented but not fuzzed: its
# answers past the handshake are WebSocket frames, which neither OpenAPI nor schemathesis can
# describe or send; its refusals before the upgrade (401, 426, 429) are checked against the
# document in tests/unit/ingress/test_openapi_contract.py, its frames in test_stream_kafka.py.
PLAN = [
    ("POST", WEBHOOK, POSITIVE, 550),
    ("POST", WEBHOOK, NEGATIVE, 225),
    ("GET", WEBHOOK, POSITIVE, 225),
    ("GET", WEBHOOK, NEGATIVE, 100),
    ("GET", "/healthz", POSITIVE, 1),
    ("GET", "/readyz", POSITIVE, 1),
    ("GET", "/metrics", POSITIVE, 1),
    ("GET", "/openapi.json", POSITIVE, 1),
]
# The checks that judge responses against the document; the 503 it declares is no server error.
CONFIG = {
    "checks": {
        "enabled": False,
        "not_a_server_error": {"enabled": True, "expected-statuses": ["2xx", "3xx", "4xx", "503"]},
        "status_code_conformance": {"enabled": True},
        "content_type_conformance": {"enabled": True},
        "response_schema_conformance": {"enabled": True},
        "response_headers_conformance": {"enabled": True},
        # A 2xx with credentials is sent again without them and with wrong ones: both must fail.
        "ignored_auth": {"enabled": True},
    }
}
# Every refusal but 401, 403 and 429 is recorded (RELIABILITY.md, section 1): those the ingress
# itself answers, in JSON. A plain-text 400 is the HTTP parser's (a line over 8190 bytes).
RECORDED = {400, 404, 408, 413}
CASE_HEADER = "X-Fuzz-Case"
BLOCK = 50  # consecutive generated cases per ordinary tenant: about 25 of them authenticate
BUSY = "cust_busy"  # two cases in ten: about 200 authenticate during a run
BURST = 100  # the rate limit's burst, far from both
TENANTS = 60  # more blocks than a run draws, so no tenant gets a second one
BODY_LIMIT = 1024  # small, so that some generated bodies are over it (413)


def tenant_secrets() -> dict[str, list[str]]:
    """Two secrets per tenant (a rotation in progress): either one authenticates."""
    names = [f"cust_fz{t}" for t in range(TENANTS)] + [BUSY]
    return {name: [f"{name}-current", f"{name}-next"] for name in names}


@dataclass
class Outcome:
    """One case: what was sent and what came back."""

    number: int
    label: str
    mode: str
    status: int | None
    body: Any = None
    path: dict[str, str] = field(default_factory=dict)
    failure: str | None = None


def fuzz_schema() -> schemathesis.BaseSchema:
    """The document, with the tenant hook and the auth provider of one run."""
    schema = schemathesis.openapi.from_path(
        OPENAPI_PATH, config=schemathesis.Config.from_dict(CONFIG)
    )
    drawn = itertools.count()
    secrets = tenant_secrets()

    @schema.hook("map_path_parameters")
    def pick_tenant(context: Any, path_parameters: dict[str, Any]) -> dict[str, Any]:
        if path_parameters and "customer_id" in path_parameters:
            n = next(drawn)
            if n % 5 == 3:
                path_parameters["customer_id"] = BUSY
            elif n % 10 != 9:  # the tenth keeps its generated customer id: a stranger
                path_parameters["customer_id"] = f"cust_fz{n // BLOCK}"
        return path_parameters

    @schema.auth(refresh_interval=None, retry_on=[])
    class TenantSecret:
        """A secret of the case's tenant (either of its two), as ``token`` or Basic password."""

        def get(self, case: Any, context: Any) -> tuple[str, str]:
            customer = str(case.path_parameters.get("customer_id", ""))
            pick = zlib.crc32(str(case.path_parameters.get("app_id", "")).encode())
            return customer, secrets.get(customer, ["no-such-tenant"] * 2)[pick % 2]

        def set(self, case: Any, data: tuple[str, str], context: Any) -> None:
            customer, token = data
            if zlib.crc32(str(case.path_parameters.get("app_id", "")).encode()) & 2:
                case.query = {**(case.query or {}), "token": token}
            else:
                basic = base64.b64encode(f"{customer}:{token}".encode()).decode()
                case.headers = {**(case.headers or {}), "Authorization": f"Basic {basic}"}

    return schema


def run_cases(base_url: str) -> list[Outcome]:
    """Send every case of :data:`PLAN`, one at a time, and judge each response."""
    schema = fuzz_schema()
    outcomes: list[Outcome] = []
    with requests.Session() as session:
        for method, path, mode, count in PLAN:
            send = _sender(schema[path][method], mode, base_url, session, outcomes)
            settings(
                max_examples=count,
                derandomize=True,  # the same cases every run
                database=None,
                deadline=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )(send)()
    return outcomes


def _sender(
    operation: Any,
    mode: GenerationMode,
    base_url: str,
    session: requests.Session,
    outcomes: list[Outcome],
) -> Any:
    """A Hypothesis test that sends one generated case and keeps its :class:`Outcome`.

    Failures are kept, not raised: Hypothesis would otherwise shrink and stop at the first one.
    """

    @given(case=operation.as_strategy(generation_mode=mode, auth_storage=operation.schema.auth))
    def send(case: Any) -> None:
        outcome = Outcome(len(outcomes), operation.label, mode.value, None)
        # As the ingress reads them (schemathesis keeps them percent-encoded).
        outcome.path = {k: unquote(str(v)) for k, v in (case.path_parameters or {}).items()}
        outcomes.append(outcome)
        headers = {CASE_HEADER: str(outcome.number)}
        try:
            response = case.call(base_url=base_url, session=session, headers=headers)
        except requests.RequestException as exc:
            outcome.failure = f"no response: {exc!r}"
            return
        outcome.status = response.status_code
        if response.headers.get("content-type", [""])[0].startswith("application/json"):
            outcome.body = response.json()
        try:
            case.validate_response(
                response,
                headers=headers,
                transport_kwargs={"base_url": base_url, "session": session},
            )
        except BaseExceptionGroup as exc:  # schemathesis's FailureGroup of check failures
            outcome.failure = str(exc)

    return send


def wait_drained(base_url: str) -> dict[str, Any]:
    """/readyz once the spool is empty (a spooled answer is a 2xx too), or after 30 s."""
    deadline = time.monotonic() + 30
    while True:
        ready = requests.get(f"{base_url}/readyz", timeout=5).json()
        if ready["spool_depth"] == 0 or time.monotonic() > deadline:
            return ready
        time.sleep(0.1)


async def read_all(settings: Any, spec: Any) -> list[CloudEvent]:
    """Every record of ``spec`` up to its current end (the ingress has exited: nothing is late)."""
    return [
        parse_event(record.value, spec)
        async for record in read_since(settings, settings.topic(spec), None)
    ]


async def test_generated_requests_conform_and_land_where_the_document_says(
    topics_env: PipelineEnv, tmp_path: Path
):
    secrets_file = tmp_path / "secrets.json"
    secrets_file.write_text(json.dumps({"ingress_tenants": tenant_secrets()}))
    env = topics_env.with_vars(
        EXOPIPE_SECRETS_FILE=str(secrets_file),
        EXOPIPE_INGRESS_PORT=str(free_port()),
        EXOPIPE_INGRESS_SPOOL_DIR=str(tmp_path / "spool"),
        EXOPIPE_INGRESS_BODY_LIMIT_BYTES=str(BODY_LIMIT),
        # A token every 1,000 s: within a run, a tenant gets its burst and no more.
        EXOPIPE_INGRESS_RATE_LIMIT_PER_S="0.001",
        EXOPIPE_INGRESS_RATE_LIMIT_BURST=str(BURST),
    )
    ingress = IngressProcess(env, tmp_path / "ingress.log")
    await asyncio.to_thread(ingress.start, "/readyz")
    started = time.monotonic()
    try:
        outcomes = await asyncio.to_thread(run_cases, ingress.base)
        took = time.monotonic() - started
        ready = await asyncio.to_thread(wait_drained, ingress.base)
        assert ready["spool_depth"] == 0, f"the spool never drained: {ready}"
        assert ingress.terminate() == 0, ingress.log()
    finally:
        ingress.kill()

    statuses = Counter(o.status for o in outcomes)
    print(f"\n{len(outcomes)} cases in {took:.1f} s: {dict(sorted(statuses.items(), key=str))}")
    for (label, mode, status), n in sorted(
        Counter((o.label, o.mode, o.status) for o in outcomes).items(), key=str
    ):
        print(f"  {label} {mode} {status}: {n}")
    failures = [f"case {o.number} {o.label}: {o.failure}" for o in outcomes if o.failure]
    first = "\n\n".join(failures[:5])
    assert not failures, f"{len(failures)} of {len(outcomes)} cases failed; the first:\n{first}"
    assert len(outcomes) >= 1000
    assert not [s for s in statuses if s >= 500], "a 5xx with the broker up and the spool empty"
    # The run reaches every part of the request path, so the checks judged real answers.
    assert {200, 400, 401, 404, 413, 429} <= set(statuses), statuses

    webhooks = [o for o in outcomes if o.label.endswith(WEBHOOK)]
    refused = {o.number: o for o in webhooks if o.status in RECORDED and o.body is not None}
    by_parser = sum(1 for o in webhooks if o.status == 400 and o.body is None)
    accepted = [o for o in webhooks if o.status == 200]
    webhook_specs = (WEBHOOK_CALL_STATUS, WEBHOOK_INCOMING_CALL, WEBHOOK_MISSED_CALL)
    webhook_specs += (WEBHOOK_RECORDING_READY,)
    read = await asyncio.gather(*(read_all(env.settings, s) for s in webhook_specs))
    rejected_records = await read_all(env.settings, WEBHOOK_REJECTED)

    # Refusals: one record for each that the ingress records, with its status and reason; no
    # record for any other case (401 and 429 included).
    rejected = Counter()
    for event in rejected_records:
        headers = {k.lower(): v for k, v in event.data["headers"].items()}
        number = int(headers[CASE_HEADER.lower()])
        rejected[number] += 1
        outcome = refused.get(number)
        assert outcome is not None, f"case {number} has a rejected record: {event.data}"
        assert (event.data["status"], event.data["reason"]) == (
            outcome.status,
            outcome.body["error"],
        )
        assert event.data["kind"] == outcome.path["kind"]
    assert set(rejected) == set(refused), (
        f"no record for cases {sorted(set(refused) - set(rejected))}"
    )
    assert max(rejected.values(), default=1) == 1, rejected.most_common(3)

    # Acceptances: every 2xx id on the topic of its kind (popup's other events: call status),
    # as many times as it was answered (a repeated webhook is a repeated record), and no more.
    on_topics = Counter(
        (spec, e.id) for spec, events in zip(webhook_specs, read, strict=True) for e in events
    )
    acked = Counter()
    for o in accepted:
        spec = KINDS[o.path["kind"]]
        if o.path["kind"] == "popup" and (spec, o.body["id"]) not in on_topics:
            spec = WEBHOOK_CALL_STATUS
        acked[(spec, o.body["id"])] += 1
    assert acked == on_topics, f"missing: {acked - on_topics}, unexpected: {on_topics - acked}"
    print(
        f"  {len(refused)} refusals recorded, {by_parser} refused by the HTTP parser (not"
        f" recorded), {len(accepted)} acceptances on their topics"
    )
