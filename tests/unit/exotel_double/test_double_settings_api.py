"""The spec's App Settings API, example by example, error by error, against the running double."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.unit.exotel_double.helpers import APP, CUSTOMER, TOKEN, bearer
from workers.exotel_double.control import AsyncDoubleControl
from workers.json_codec import dumps

# Verbatim from the spec: the PUT example request and response, the GET example response and the
# full request body shown under "Request Body".
SPEC_PUT_REQUEST = {
    "popup_url": "https://your-server.com/webhook/popup",
    "missed_call_url": "https://your-server.com/webhook/missed-call",
    "recording_enabled": True,
    "recording_url": "https://your-server.com/webhook/recording",
}
SPEC_PUT_RESPONSE = {
    "success": True,
    "data": {
        "app_id": "app_abc123",
        "settings": {
            "popup_url": "https://your-server.com/webhook/popup",
            "missed_call_url": "https://your-server.com/webhook/missed-call",
            "callback_url": None,
            "recording_enabled": True,
            "recording_url": "https://your-server.com/webhook/recording",
            "streaming_enabled": False,
            "streaming_url": None,
            "updated_at": "2024-06-15T10:30:00.000Z",
        },
    },
}
SPEC_GET_RESPONSE = {
    "success": True,
    "data": {
        "app_id": "app_abc123",
        "settings": {
            "popup_url": "https://your-server.com/webhook/popup",
            "missed_call_url": "https://your-server.com/webhook/missed-call",
            "callback_url": None,
            "recording_enabled": True,
            "recording_url": "https://your-server.com/webhook/recording",
            "streaming_enabled": False,
            "streaming_url": None,
            "created_at": "2024-06-01T09:00:00.000Z",
            "updated_at": "2024-06-15T10:30:00.000Z",
        },
    },
}
SPEC_FULL_BODY = {
    "popup_url": "https://your-server.com/webhook/popup",
    "missed_call_url": "https://your-server.com/webhook/missed-call",
    "callback_url": "https://your-server.com/webhook/callback",
    "recording_enabled": True,
    "recording_url": "https://your-server.com/webhook/recording",
    "streaming_enabled": False,
    "streaming_url": "https://your-server.com/webhook/stream",
}
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
JSON = {"Content-Type": "application/json"}


async def put(
    api: httpx.AsyncClient, path: str, body: object, token: str = TOKEN
) -> httpx.Response:
    return await api.put(path, content=dumps(body), headers={**bearer(token), **JSON})


def assert_error(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["success"] is False
    assert body["error"]["code"] == status
    for word in words:
        assert word in body["error"]["message"]


async def test_put_example_gives_the_documented_response(
    ctl: AsyncDoubleControl, api: httpx.AsyncClient, app: str
) -> None:
    await ctl.freeze_clock("2024-06-15T10:30:00.000Z")
    response = await put(api, app, SPEC_PUT_REQUEST)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == SPEC_PUT_RESPONSE
    assert list(response.json()["data"]["settings"]) == list(
        SPEC_PUT_RESPONSE["data"]["settings"]  # type: ignore[index]
    )
    assert response.content == dumps(SPEC_PUT_RESPONSE)


async def test_get_example_gives_the_documented_response(
    ctl: AsyncDoubleControl, api: httpx.AsyncClient
) -> None:
    await ctl.register_app(CUSTOMER, APP, TOKEN, created_at="2024-06-01T09:00:00.000Z")
    await ctl.freeze_clock("2024-06-15T10:30:00.000Z")
    path = f"/{CUSTOMER}/apps/{APP}/settings"
    assert (await put(api, path, SPEC_PUT_REQUEST)).status_code == 200
    response = await api.get(path, headers=bearer())
    assert response.status_code == 200
    assert response.json() == SPEC_GET_RESPONSE
    assert response.content == dumps(SPEC_GET_RESPONSE)


async def test_full_request_body_example_is_stored_and_read_back(
    api: httpx.AsyncClient, app: str
) -> None:
    response = await put(api, app, SPEC_FULL_BODY)
    assert response.status_code == 200
    settings = response.json()["data"]["settings"]
    updated_at = settings.pop("updated_at")
    assert TIMESTAMP.match(updated_at)
    assert settings == SPEC_FULL_BODY
    assert list(settings) == list(SPEC_FULL_BODY)
    got = (await api.get(app, headers=bearer())).json()["data"]["settings"]
    assert TIMESTAMP.match(got.pop("created_at"))
    assert got.pop("updated_at") == updated_at
    assert got == SPEC_FULL_BODY


async def test_never_set_fields_read_back_as_null_and_false(
    api: httpx.AsyncClient, app: str
) -> None:
    settings = (await api.get(app, headers=bearer())).json()["data"]["settings"]
    assert settings["created_at"] == settings["updated_at"]
    assert TIMESTAMP.match(settings.pop("created_at"))
    settings.pop("updated_at")
    assert settings == {
        "popup_url": None,
        "missed_call_url": None,
        "callback_url": None,
        "recording_enabled": False,
        "recording_url": None,
        "streaming_enabled": False,
        "streaming_url": None,
    }


async def test_partial_put_changes_only_the_fields_sent(
    ctl: AsyncDoubleControl, api: httpx.AsyncClient, app: str
) -> None:
    await ctl.freeze_clock("2024-06-15T10:30:00.000Z")
    await put(api, app, SPEC_FULL_BODY)
    await ctl.freeze_clock("2024-06-16T08:00:00.123Z")
    response = await put(api, app, {"recording_enabled": False, "streaming_url": "wss://x/y"})
    assert response.status_code == 200
    expected = {**SPEC_FULL_BODY, "recording_enabled": False, "streaming_url": "wss://x/y"}
    assert response.json()["data"]["settings"] == {
        **expected,
        "updated_at": "2024-06-16T08:00:00.123Z",
    }
    stored = await ctl.app_settings(CUSTOMER, APP)
    assert stored["updated_at"] == "2024-06-16T08:00:00.123Z"
    assert stored["created_at"] != stored["updated_at"]


async def test_empty_object_changes_nothing_but_updated_at(
    ctl: AsyncDoubleControl, api: httpx.AsyncClient, app: str
) -> None:
    await put(api, app, SPEC_PUT_REQUEST)
    before = await ctl.app_settings(CUSTOMER, APP)
    await ctl.freeze_clock("2030-01-01T00:00:00Z")
    response = await put(api, app, {})
    assert response.status_code == 200
    after = await ctl.app_settings(CUSTOMER, APP)
    assert after["updated_at"] == "2030-01-01T00:00:00.000Z"
    assert {k: v for k, v in after.items() if k != "updated_at"} == {
        k: v for k, v in before.items() if k != "updated_at"
    }


@pytest.mark.parametrize("method", ["GET", "PUT"])
async def test_missing_token_is_401(api: httpx.AsyncClient, app: str, method: str) -> None:
    response = await api.request(method, app, content=b"{}", headers=JSON)
    assert_error(response, 401, "Authorization")


@pytest.mark.parametrize(
    "header",
    ["Bearer wrong", f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, "Bearer", f"bearer{TOKEN}"],
)
@pytest.mark.parametrize("method", ["GET", "PUT"])
async def test_bad_token_is_401(
    ctl: AsyncDoubleControl, api: httpx.AsyncClient, app: str, method: str, header: str
) -> None:
    response = await api.request(
        method, app, content=dumps(SPEC_PUT_REQUEST), headers={"Authorization": header, **JSON}
    )
    assert_error(response, 401)
    assert (await ctl.app_settings(CUSTOMER, APP))["popup_url"] is None


async def test_token_of_another_app_is_401(
    ctl: AsyncDoubleControl, api: httpx.AsyncClient, app: str
) -> None:
    await ctl.register_app(CUSTOMER, "app_other", "tok_other")
    assert_error(await api.get(app, headers=bearer("tok_other")), 401, "token")


@pytest.mark.parametrize("headers", [{}, bearer(), bearer("wrong")])
async def test_unknown_app_is_404_before_any_token_check(
    api: httpx.AsyncClient, app: str, headers: dict[str, str]
) -> None:
    for path in (f"/{CUSTOMER}/apps/app_nope/settings", f"/other_customer/apps/{APP}/settings"):
        assert_error(await api.get(path, headers=headers), 404, "not found")
        assert_error(await api.put(path, content=b"{}", headers={**headers, **JSON}), 404)


async def test_deleted_app_is_404(
    ctl: AsyncDoubleControl, api: httpx.AsyncClient, app: str
) -> None:
    assert await ctl.delete_app(CUSTOMER, APP) is True
    assert_error(await api.get(app, headers=bearer()), 404)


@pytest.mark.parametrize("raw", [b"", b"{", b"{'popup_url': 'x'}", b"nope", b'{"a":1}}'])
async def test_invalid_json_is_400(api: httpx.AsyncClient, app: str, raw: bytes) -> None:
    response = await api.put(app, content=raw, headers={**bearer(), **JSON})
    assert_error(response, 400, "JSON")


@pytest.mark.parametrize("body", [[], ["popup_url"], "x", 1, True, None])
async def test_non_object_body_is_400(api: httpx.AsyncClient, app: str, body: object) -> None:
    assert_error(await put(api, app, body), 400, "JSON object")


async def test_unknown_field_is_400_and_named(
    ctl: AsyncDoubleControl, api: httpx.AsyncClient, app: str
) -> None:
    response = await put(api, app, {"popup_url": "https://a/b", "popupUrl": "x", "foo": 1})
    assert_error(response, 400, "popupUrl", "foo")
    assert (await ctl.app_settings(CUSTOMER, APP))["popup_url"] is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("recording_enabled", 1),
        ("recording_enabled", 0),
        ("recording_enabled", "true"),
        ("recording_enabled", None),
        ("streaming_enabled", "false"),
        ("streaming_enabled", []),
        ("popup_url", None),
        ("popup_url", 123),
        ("missed_call_url", True),
        ("callback_url", {"url": "x"}),
        ("recording_url", ["https://a"]),
        ("streaming_url", 1.5),
    ],
)
async def test_wrong_type_is_400_and_changes_nothing(
    ctl: AsyncDoubleControl, api: httpx.AsyncClient, app: str, field: str, value: object
) -> None:
    await put(api, app, SPEC_FULL_BODY)
    before = await ctl.app_settings(CUSTOMER, APP)
    response = await put(api, app, {"popup_url": "https://changed/", field: value})
    assert_error(response, 400, field)
    assert await ctl.app_settings(CUSTOMER, APP) == before


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
async def test_put_without_json_content_type_is_400(
    api: httpx.AsyncClient, app: str, content_type: str | None
) -> None:
    headers = bearer() if content_type is None else {**bearer(), "Content-Type": content_type}
    response = await api.put(app, content=dumps(SPEC_PUT_REQUEST), headers=headers)
    assert_error(response, 400, "Content-Type")


async def test_json_content_type_with_charset_is_accepted(api: httpx.AsyncClient, app: str) -> None:
    headers = {**bearer(), "Content-Type": "application/json; charset=utf-8"}
    response = await api.put(app, content=dumps(SPEC_PUT_REQUEST), headers=headers)
    assert response.status_code == 200


@pytest.mark.parametrize("method", ["POST", "PATCH", "DELETE", "HEAD", "OPTIONS"])
async def test_other_methods_are_405(api: httpx.AsyncClient, app: str, method: str) -> None:
    response = await api.request(method, app, headers=bearer())
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, PUT"
    if method != "HEAD":
        assert_error(response, 405, method)


async def test_unknown_path_under_the_api_is_a_json_404(api: httpx.AsyncClient, app: str) -> None:
    assert_error(await api.get(f"/{CUSTOMER}/apps/{APP}", headers=bearer()), 404)
    assert_error(await api.get(f"/{CUSTOMER}/apps/{APP}/settings/x", headers=bearer()), 404)


async def test_healthz(double: object, ctl: AsyncDoubleControl) -> None:
    assert await ctl.health() == {"ok": True}
