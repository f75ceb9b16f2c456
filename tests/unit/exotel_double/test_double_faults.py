"""Injected faults, added latency and the request log, as seen by an API client."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.unit.exotel_double.helpers import APP, CUSTOMER, TOKEN, bearer
from workers.exotel_double.control import AsyncDoubleControl, ControlError
from workers.json_codec import dumps

JSON = {"Content-Type": "application/json"}


async def put(api: httpx.AsyncClient, path: str, body: object) -> httpx.Response:
    return await api.put(path, content=dumps(body), headers={**bearer(), **JSON})


async def test_fail_next_n_then_recover(
    ctl: AsyncDoubleControl, api: httpx.AsyncClient, app: str
) -> None:
    await ctl.fail_next(2, 503, retry_after=7)
    statuses = []
    for _ in range(3):
        response = await api.get(app, headers=bearer())
        statuses.append(response.status_code)
        if response.status_code == 503:
            assert response.headers["retry-after"] == "7"
            assert response.json()["success"] is False
            assert response.json()["error"]["code"] == 503
    assert statuses == [503, 503, 200]
    assert await ctl.faults() == []


async def test_injected_500_without_retry_after(
    ctl: AsyncDoubleControl, api: httpx.AsyncClient, app: str
) -> None:
    await ctl.fail_next(1, 500)
    response = await put(api, app, {"popup_url": "https://a/"})
    assert response.status_code == 500
    assert "retry-after" not in response.headers
    # The fault answered before the handler: nothing was stored.
    assert (await ctl.app_settings(CUSTOMER, APP))["popup_url"] is None


async def test_fault_matches_method_and_path_prefix(
    ctl: AsyncDoubleControl, api: httpx.AsyncClient, app: str
) -> None:
    await ctl.register_app(CUSTOMER, "app_two", "tok_two")
    prefix = f"/v2/integrations/{CUSTOMER}/apps/{APP}/"
    await ctl.fail_next(1, 429, method="put", path_prefix=prefix)
    assert (await api.get(app, headers=bearer())).status_code == 200
    other = f"/{CUSTOMER}/apps/app_two/settings"
    other_put = await api.put(
        other, content=b"{}", headers={"Authorization": "Bearer tok_two", **JSON}
    )
    assert other_put.status_code == 200
    assert (await put(api, app, {})).status_code == 429
    assert (await put(api, app, {})).status_code == 200


async def test_faults_leave_control_and_health_alone(
    ctl: AsyncDoubleControl, api: httpx.AsyncClient, app: str
) -> None:
    await ctl.fail_for(30, 503)
    assert await ctl.health() == {"ok": True}
    assert (await ctl.app_settings(CUSTOMER, APP))["recording_enabled"] is False
    assert (await api.get(app, headers=bearer())).status_code == 503
    assert await ctl.clear_faults() == 1
    assert (await api.get(app, headers=bearer())).status_code == 200


async def test_fail_for_a_duration(
    ctl: AsyncDoubleControl, api: httpx.AsyncClient, app: str
) -> None:
    await ctl.fail_for(0.5, 502)
    assert [(await api.get(app, headers=bearer())).status_code for _ in range(3)] == [502] * 3
    await asyncio.sleep(0.6)
    assert (await api.get(app, headers=bearer())).status_code == 200


async def test_hang_provokes_a_client_timeout_and_then_proceeds(
    ctl: AsyncDoubleControl, api: httpx.AsyncClient, app: str
) -> None:
    await ctl.hang_next(0.6, method="PUT")
    with pytest.raises(httpx.ReadTimeout):
        await api.put(
            app,
            content=dumps({"callback_url": "https://late/"}),
            headers={**bearer(), **JSON},
            timeout=0.2,
        )
    # Like a real server, the held request is still processed after the client gave up.
    for _ in range(50):
        if (await ctl.app_settings(CUSTOMER, APP))["callback_url"] == "https://late/":
            break
        await asyncio.sleep(0.05)
    assert (await ctl.app_settings(CUSTOMER, APP))["callback_url"] == "https://late/"
    assert [entry["status"] for entry in await ctl.requests(method="PUT")] == [200]


async def test_hang_then_status(ctl: AsyncDoubleControl, api: httpx.AsyncClient, app: str) -> None:
    await ctl.hang_next(0.3, status=504)
    started = time.monotonic()
    response = await api.get(app, headers=bearer())
    assert response.status_code == 504
    assert time.monotonic() - started >= 0.3


async def test_latency_applies_to_every_api_request(
    ctl: AsyncDoubleControl, api: httpx.AsyncClient, app: str
) -> None:
    await ctl.set_latency(250)
    for call in (api.get(app, headers=bearer()), put(api, app, {})):
        started = time.monotonic()
        assert (await call).status_code == 200
        assert time.monotonic() - started >= 0.25
    started = time.monotonic()
    await ctl.health()
    assert time.monotonic() - started < 0.2
    await ctl.set_latency(0)
    started = time.monotonic()
    await api.get(app, headers=bearer())
    assert time.monotonic() - started < 0.2


async def test_request_log_records_put_bodies_statuses_and_redacts_tokens(
    ctl: AsyncDoubleControl, api: httpx.AsyncClient, app: str
) -> None:
    await ctl.fail_next(1, 503, method="PUT")
    await put(api, app, {"popup_url": "https://one/"})
    await put(api, app, {"popup_url": "https://one/"})
    await api.get(app, headers=bearer())
    await api.put(app, content=b"{bad", headers={**bearer(), **JSON})
    log = await ctl.requests()
    assert [(e["method"], e["status"]) for e in log] == [
        ("PUT", 503),
        ("PUT", 200),
        ("GET", 200),
        ("PUT", 400),
    ]
    assert [e["seq"] for e in log] == [1, 2, 3, 4]
    puts = await ctl.requests(method="PUT")
    assert [e["json"] for e in puts] == [{"popup_url": "https://one/"}] * 2 + [None]
    assert puts[2]["raw_body"] == "{bad"
    assert puts[0]["fault"] is not None and puts[1]["fault"] is None
    assert all(e["path"] == f"/v2/integrations{app}" for e in log)
    assert all(e["headers"]["authorization"] == "REDACTED" for e in log)
    assert all(e["auth_scheme"] == "Bearer" for e in log)
    assert puts[0]["headers"]["content-type"] == "application/json"
    assert TOKEN not in dumps(log).decode()
    assert await ctl.requests(path_prefix="/recordings") == []
    assert await ctl.clear_requests() == 4
    assert await ctl.requests() == []


async def test_reset_forgets_everything(
    ctl: AsyncDoubleControl, api: httpx.AsyncClient, app: str
) -> None:
    await ctl.fail_for(30, 503, path_prefix="/nowhere")
    await ctl.register_recording("r.mp3", 10)
    await api.get(app, headers=bearer())
    await ctl.set_latency(5000)
    await ctl.reset()
    assert await ctl.faults() == []
    assert await ctl.requests() == []
    started = time.monotonic()
    assert (await api.get(app, headers=bearer())).status_code == 404
    assert time.monotonic() - started < 1
    with pytest.raises(ControlError, match="404"):
        await ctl.recording("r.mp3")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"status": 99},
        {"status": 503, "count": 0},
        {"status": 503, "duration_s": -1},
        {"status": "503"},
        {"status": 503, "bogus": 1},
    ],
)
async def test_bad_fault_requests_are_refused(
    ctl: AsyncDoubleControl, double: object, body: dict[str, object]
) -> None:
    with pytest.raises(ControlError, match="400"):
        await ctl._call("POST", "/_control/faults", body=body)


async def test_bad_app_registration_is_refused(ctl: AsyncDoubleControl) -> None:
    with pytest.raises(ControlError, match="recording_enabled"):
        await ctl.register_app(CUSTOMER, APP, TOKEN, {"recording_enabled": "yes"})
    with pytest.raises(ControlError, match="token"):
        await ctl._call("POST", "/_control/apps", body={"customer_id": "c", "app_id": "a"})
