"""Run the demo: bring everything up, drive calls through the pipeline, check, tear down.

Order: local stack (started only if down), topics, secrets, apps on the double, the ingress and
the four workers as children, settings commands through ``exotel.settings.command`` (the
settings worker PUTs them), calls whose webhooks the double sends to the URLs now in each app's
settings and streamed calls whose audio it sends to the app's ``streaming_url``, then a wait
until every output is on Kafka. Whatever happens (failure, Ctrl-C,
SIGTERM) the children are stopped, and stack services the demo started are stopped too unless
``--keep-stack``. It must never stop a stack service that was already running.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from topics.catalog import SETTINGS_COMMAND
from topics.events import make_event
from workers.config import Settings
from workers.demo.environment import (
    DemoSecrets,
    child_environment,
    free_port,
    new_secrets,
    secrets_from_store,
    write_secrets,
)
from workers.demo.observe import Observed, Observer
from workers.demo.plan import (
    INGRESS_KIND,
    RECORDING_BYTES,
    Call,
    DemoPlan,
    make_plan,
    stream_url,
)
from workers.demo.processes import ChildFailed, Children
from workers.demo.streams import (
    StreamsFailed,
    check_double_streams,
    start_streams,
    streams_sent,
)
from workers.demo.summary import check, render
from workers.exotel_double import API_PREFIX
from workers.exotel_double.control import AsyncDoubleControl
from workers.kafka import admin_client, produce_event, started_producer
from workers.secret_store import SecretStore
from workers.topic_admin import apply_catalog

__all__ = ["DemoFailed", "DemoOptions", "run_demo"]

WORKER_NAMES = ("settings", "archiver", "enricher", "stream-archiver")


class DemoFailed(RuntimeError):
    """A step of the demo could not complete; the message says which and why."""


@dataclass(frozen=True)
class DemoOptions:
    calls: int = 6
    rate: float = 5.0
    apps: int = 2
    timeout: float = 90.0
    keep_stack: bool = False
    streams: int = 1
    attach: bool = False
    ingress_url: str | None = None
    recording_base: str | None = None


class _Terminated(Exception):
    pass


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def _until_signalled(work: Coroutine[Any, Any, int]) -> int:
    """Run ``work``; SIGTERM or SIGINT cancels it, and ``_Terminated`` is raised here.

    A Python signal handler raises in whatever code runs when the signal comes: inside a task,
    the exception ends that task only, and the demo went on (seen when SIGTERM came while the
    progress loop was busy). The loop's own handlers run as callbacks, outside every task.
    """
    loop = asyncio.get_running_loop()
    main = asyncio.ensure_future(work)
    caught: list[int] = []

    def stop(signum: int) -> None:
        caught.append(signum)
        main.cancel()

    before = {sig: signal.getsignal(sig) for sig in _STOP_SIGNALS}
    for sig in _STOP_SIGNALS:
        loop.add_signal_handler(sig, stop, sig)
    try:
        return await main
    except asyncio.CancelledError:
        if caught:
            raise _Terminated from None
        raise
    finally:
        for sig, handler in before.items():
            loop.remove_signal_handler(sig)
            signal.signal(sig, handler)  # back to the synchronous handler for the clean-up


def run_demo(settings: Settings, options: DemoOptions, out: TextIO = sys.stdout) -> int:
    """The whole demo; returns the exit status (0 only when every count matches)."""

    def say(message: str) -> None:
        print(f"exopipe demo: {message}", file=sys.stderr, flush=True)

    # One line per request from the control client would drown the progress line.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    # Right after topics are created the fetcher logs NotLeaderForPartition at ERROR while it
    # retries on its own; the demo's counts catch any real failure.
    logging.getLogger("aiokafka.consumer.fetcher").setLevel(logging.CRITICAL)
    if options.attach:
        try:
            return asyncio.run(_drive_attached(settings, options, say, out))
        except DemoFailed as exc:
            say(f"FAILED: {exc}")
            return 1
    from workers.localstack.manager import SERVICES, LocalStack, StackError

    workdir = Path(tempfile.mkdtemp(prefix="exopipe-demo-"))
    children = Children(workdir)
    stack = LocalStack(settings, progress=say)
    started_services: list[str] = []
    keep_logs = True

    def on_signal(signum: int, frame: Any) -> None:
        raise _Terminated

    # Both installed explicitly: a shell starting the demo in the background ignores SIGINT.
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        running = {s.name for s in stack.status() if s.up}
        try:
            endpoints = stack.up()
        except StackError as exc:
            say(str(exc))
            return exc.exit_code
        started_services = [s for s in SERVICES if s not in running and stack.pid(s) is not None]
        status = asyncio.run(
            _until_signalled(
                _drive(settings, endpoints.env(), options, children, workdir, say, out)
            )
        )
        keep_logs = status != 0
        return status
    except DemoFailed as exc:
        say(f"FAILED: {exc}")
        for child in children.started:
            if not child.alive():
                say(f"{child.name} exited with {child.process.returncode}:\n{child.log_tail()}")
        return 1
    except (KeyboardInterrupt, _Terminated):
        say("interrupted; stopping what the demo started")
        return 130
    finally:
        children.stop_all()
        if not options.keep_stack:
            for name in reversed(started_services):
                stack.stop_service(name)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        (workdir / "secrets.json").unlink(missing_ok=True)
        if keep_logs:
            say(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


@dataclass(frozen=True)
class _Target:
    """Where this run's pipeline is and what it needs to drive it."""

    settings: Settings
    plan: DemoPlan
    found: DemoSecrets
    ingress_url: str
    double_url: str


async def _drive(
    parent: Settings,
    stack_env: dict[str, str],
    options: DemoOptions,
    children: Children,
    workdir: Path,
    say: Any,
    out: TextIO,
) -> int:
    """Local mode: secrets and ports of our own, the ingress and workers as children."""
    host = parent.stack.host
    double_url = f"http://{host}:{parent.stack.exotel_port}"
    run_id = uuid.uuid4().hex[:8]
    plan = make_plan(
        run_id,
        options.calls,
        f"{double_url}/recordings",
        apps=options.apps,
        streams=options.streams,
    )
    found = new_secrets(plan)
    write_secrets(workdir / "secrets.json", plan, found, host)
    ingress_port = free_port(host)
    # A copy of this process's environment for the children (PATH, AWS_*, the user's EXOPIPE_*),
    # with the stack's endpoints and the demo's own choices laid over it.
    env = child_environment(
        dict(os.environ),
        {
            **stack_env,
            "EXOPIPE_SECRETS_FILE": str(workdir / "secrets.json"),
            "EXOPIPE_INGRESS_HOST": host,
            "EXOPIPE_INGRESS_PORT": str(ingress_port),
            "EXOPIPE_INGRESS_SPOOL_DIR": str(workdir / "spool"),
            "EXOPIPE_RECORDING_ALLOW_INSECURE": "1",
            "EXOPIPE_RECORDING_HOSTS": host,
            "EXOPIPE_RECORDING_PORTS": str(parent.stack.exotel_port),
            "EXOPIPE_STREAM_ARCHIVER_SPILL_DIR": str(workdir / "stream-spill"),
        },
    )
    settings = Settings.from_env({k: v for k, v in env.items() if k.startswith("EXOPIPE_")})
    await _apply_topics(settings, say)
    children.start("ingress", ["ingress"], env)
    for name in WORKER_NAMES:
        children.start(name, ["worker", name], env)
    say(f"started ingress on :{ingress_port} and workers {', '.join(WORKER_NAMES)}")
    target = _Target(settings, plan, found, f"http://{host}:{ingress_port}", double_url)
    return await _exercise(target, options, children, say, out)


async def _drive_attached(settings: Settings, options: DemoOptions, say: Any, out: TextIO) -> int:
    """``--attach``: the ingress, workers and double already run (docker compose); drive them.

    The double is the one ``EXOPIPE_EXOTEL_BASE_URL`` names, secrets come from
    ``EXOPIPE_SECRETS_FILE``, and ``--recording-base`` is where the *archiver* finds the
    double's recordings (it may see the double under another address than this process does).
    """
    double_url = settings.exotel_base_url.removesuffix(API_PREFIX).rstrip("/")
    ingress_url = options.ingress_url or f"http://{settings.ingress.host}:{settings.ingress.port}"
    recording_base = options.recording_base or f"{double_url}/recordings"
    recording_host = urlsplit(recording_base).hostname or ""
    customer, found = secrets_from_store(SecretStore.load(settings.secrets_file), recording_host)
    plan = make_plan(
        uuid.uuid4().hex[:8],
        options.calls,
        recording_base,
        customer_id=customer,
        app_ids=tuple(found.app_tokens),
        streams=options.streams,
    )
    await _apply_topics(settings, say)
    target = _Target(settings, plan, found, ingress_url.rstrip("/"), double_url)
    return await _exercise(target, options, Children(Path(".")), say, out)


async def _apply_topics(settings: Settings, say: Any) -> None:
    async with admin_client(settings) as admin:
        report = await apply_catalog(
            admin,
            replication_override=settings.topic_replication_factor,
            name_prefix=settings.topic_prefix,
        )
        if report.created:
            await _wait_for_leaders(admin, list(report.created))
    say(f"topics: {len(report.created)} created, {len(report.unchanged)} already there")


async def _wait_for_leaders(admin: Any, names: list[str], wait_s: float = 15.0) -> None:
    """New topics answer only once every partition has a leader; reading earlier only logs
    transient NotLeaderForPartition errors that look like failures to a person watching."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        described = await admin.describe_topics(names)
        if all(p["leader"] >= 0 for t in described for p in t["partitions"]):
            return
        await asyncio.sleep(0.2)


async def _exercise(
    target: _Target, options: DemoOptions, children: Children, say: Any, out: TextIO
) -> int:
    """Settings through the pipeline, then the calls, then the verdict."""
    started = time.monotonic()
    settings, plan, found = target.settings, target.plan, target.found
    say(f"run {plan.run_id}: customer {plan.customer_id}, apps {', '.join(plan.app_ids)}")
    observer = Observer(settings, plan.call_sids, plan.customer_id, plan.stream_sids)
    await observer.start()
    try:
        async with AsyncDoubleControl(target.double_url) as ctl:
            try:
                await check_double_streams(ctl, plan)
            except StreamsFailed as exc:
                raise DemoFailed(str(exc)) from None
            for app in plan.app_ids:
                await ctl.register_app(plan.customer_id, app, found.app_tokens[app], {})
            sha256 = await _register_recordings(ctl, plan, found)
            await _wait_healthy(f"{target.ingress_url}/healthz", children, wait_s=60.0)

            await _send_settings(settings, plan, target.ingress_url, found, observer)
            say("settings: commands produced, waiting for the settings worker to apply them")
            await _wait(observer, children, lambda s: len(s.results) >= len(plan.app_ids), 90.0)
            bad = [r for r in observer.seen.results.values() if r.get("outcome") != "applied"]
            if len(observer.seen.results) < len(plan.app_ids) or bad:
                outcomes = ", ".join(str(r.get("outcome")) for r in bad) or "no result"
                raise DemoFailed(f"settings commands not applied: {outcomes}")
            urls = {app: await ctl.app_settings(plan.customer_id, app) for app in plan.app_ids}
            say("settings applied; the double now sends webhooks and live audio to the ingress")

            progress = _Progress(plan)
            try:
                durations = await start_streams(ctl, plan)
            except StreamsFailed as exc:
                raise DemoFailed(str(exc)) from None
            delivered = await _simulate(ctl, plan, urls, found, options.rate, observer, progress)
            await _wait(observer, children, lambda s: _complete(plan, s), options.timeout, progress)
            progress.finish(observer.seen)
            sent = await streams_sent(ctl, plan, wait_s=5.0)
            for problem in sent.problems:
                say(f"stream not sent whole: {problem}")
    finally:
        await observer.stop()
    rows = check(
        plan,
        observer.seen,
        delivered=delivered,
        recording_sha256=sha256,
        streams_sent=sent.whole,
        stream_duration_ms=durations,
    )
    print(render(plan, rows, observer.seen, time.monotonic() - started), file=out, flush=True)
    return 0 if all(row.ok for row in rows) else 1


async def _register_recordings(
    ctl: AsyncDoubleControl, plan: DemoPlan, found: DemoSecrets
) -> dict[str, str]:
    sha256 = {}
    for call in plan.calls:
        if call.recording_name is not None:
            described = await ctl.register_recording(
                call.recording_name,
                RECORDING_BYTES,
                basic_auth=(found.recording_user, found.recording_password),
            )
            sha256[call.call_sid] = described["sha256"]
    return sha256


async def _wait_healthy(url: str, children: Children, wait_s: float) -> None:
    try:
        await children.wait_healthy(url, wait_s)
    except ChildFailed as exc:
        raise DemoFailed(str(exc)) from None


async def _send_settings(
    settings: Settings, plan: DemoPlan, ingress_url: str, found: DemoSecrets, observer: Observer
) -> None:
    """One command per app pointing every webhook URL at the ingress, recording on, and on
    the apps with streamed calls streaming on, to the ingress's stream route."""
    async with started_producer(settings) as producer:
        for app in plan.app_ids:
            base = f"{ingress_url}/v1/{plan.customer_id}/{app}"
            changes: dict[str, Any] = {
                setting: f"{base}/{kind}" for setting, kind in INGRESS_KIND.items()
            } | {"recording_enabled": True}
            if app in plan.streaming_apps:
                secret = found.tenant_secret
                changes |= {
                    "streaming_enabled": True,
                    "streaming_url": stream_url(ingress_url, plan.customer_id, app, secret),
                }
            data = {
                "command_id": f"demo-{plan.run_id}-{app}",
                "customer_id": plan.customer_id,
                "app_id": app,
                "settings": changes,
                "requested_by": "exopipe demo",
            }
            observer.command_ids.add(data["command_id"])
            event = make_event(
                SETTINGS_COMMAND,
                data,
                source="exopipe/demo",
                customer_id=plan.customer_id,
                app_id=app,
            )
            await produce_event(
                producer, settings.topic(SETTINGS_COMMAND), event, f"{plan.customer_id}/{app}"
            )


async def _simulate(
    ctl: AsyncDoubleControl,
    plan: DemoPlan,
    urls: dict[str, dict[str, Any]],
    found: DemoSecrets,
    rate: float,
    observer: Observer,
    progress: _Progress,
) -> int:
    """Each call at its time (``rate`` calls per second); returns the webhooks answered 2xx.

    The tenant secret travels as HTTP Basic credentials added by the double (a header), so the
    URLs in the app settings, and the records about them, never carry it.
    """
    token = base64.b64encode(f"{plan.customer_id}:{found.tenant_secret}".encode()).decode()
    headers = {"Authorization": f"Basic {token}"}
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def one(index: int, call: Call) -> int:
        await asyncio.sleep(max(0.0, start + index / rate - loop.time()))
        ok = 0
        for hook in call.webhooks:
            url = urls[call.app_id][hook.setting]
            event = {"kind": hook.kind, "fields": hook.fields}
            results = await ctl.emit(url, [event], headers=headers)
            ok += sum(1 for r in results if r["status"] is not None and 200 <= r["status"] < 300)
        progress.call_sent(observer.seen)
        return ok

    async def reader() -> None:
        while True:
            await observer.poll(0.2)
            progress.update(observer.seen)

    reading = asyncio.create_task(reader())
    try:
        sent = await asyncio.gather(*(one(i, call) for i, call in enumerate(plan.calls)))
    finally:
        reading.cancel()
        try:
            await reading
        except asyncio.CancelledError:
            pass
    return sum(sent)


def _complete(plan: DemoPlan, seen: Observed) -> bool:
    return (
        len(seen.webhooks) >= plan.webhook_count
        and len(seen.enriched) >= plan.count("missed")
        and len(seen.archived) + len(seen.failed) >= plan.count("recorded")
        and len(seen.streams) >= len(plan.streams)
    )


async def _wait(
    observer: Observer,
    children: Children,
    done: Any,
    wait_s: float,
    progress: _Progress | None = None,
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while not done(observer.seen):
        _check_children(children)
        if loop.time() > deadline:
            return
        await observer.poll(0.5)
        if progress is not None:
            progress.update(observer.seen)


def _check_children(children: Children) -> None:
    try:
        children.raise_if_dead()
    except ChildFailed as exc:
        raise DemoFailed(str(exc)) from None


class _Progress:
    """One status line on stderr, redrawn in place on a terminal."""

    def __init__(self, plan: DemoPlan, stream: TextIO = sys.stderr) -> None:
        self._plan = plan
        self._stream = stream
        self._sent = 0
        self._tty = stream.isatty()
        self._last = ""

    def call_sent(self, seen: Observed) -> None:
        self._sent += 1
        self.update(seen)

    def update(self, seen: Observed) -> None:
        plan = self._plan
        width = 20
        filled = width * self._sent // max(1, len(plan.calls))
        line = (
            f"[{'#' * filled}{'.' * (width - filled)}] calls {self._sent}/{len(plan.calls)}"
            f" | webhooks on Kafka {len(seen.webhooks)}/{plan.webhook_count}"
            f" | enriched {len(seen.enriched)}/{plan.count('missed')}"
            f" | archived {len(seen.archived)}/{plan.count('recorded')}"
        )
        if plan.streams:
            line += f" | streams archived {len(seen.streams)}/{len(plan.streams)}"
        if line == self._last:
            return
        self._last = line
        if self._tty:
            self._stream.write(f"\r{line}")
        else:
            self._stream.write(f"{line}\n")
        self._stream.flush()

    def finish(self, seen: Observed) -> None:
        self.update(seen)
        if self._tty:
            self._stream.write("\n")
            self._stream.flush()
