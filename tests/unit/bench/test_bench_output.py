"""``python -m bench --json`` promises each path's figures under fixed field names."""

from __future__ import annotations

import types

import pytest

import bench.__main__ as bench_main
from bench.results import REQUIRED_FIELDS, PathResult, percentile
from workers import json_codec


def _result(path: str, rate: float, baseline_rate: float, met: bool) -> PathResult:
    return PathResult(
        path=path,
        unit="events/s",
        rate=rate,
        baseline="raw aiokafka",
        baseline_rate=baseline_rate,
        p50_ms=1.5,
        p99_ms=4.0,
        delivered=10,
        sent=10,
        target=">= 0.5x",
        met=met,
    )


@pytest.fixture
def two_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    found = {
        "ingress": [_result("ingress", 800.0, 1000.0, True)],
        "archiver": [_result("archiver_1x", 50.0, 100.0, False)],
    }
    modules = {
        f"bench.{part}.path": types.SimpleNamespace(measure=lambda quick, r=results: r)
        for part, results in found.items()
    }
    monkeypatch.setattr(bench_main.importlib, "import_module", modules.__getitem__)
    monkeypatch.setattr(bench_main.shutil, "which", lambda tool: f"/usr/bin/{tool}")


def test_json_output_has_every_required_field_per_path(
    two_paths: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code = bench_main.main(["--json", "--only", "ingress", "archiver"])
    lines = capsys.readouterr().out.splitlines()
    objects = [json_codec.loads(line) for line in lines]
    assert [o["path"] for o in objects] == ["ingress", "archiver_1x"]
    for obj in objects:
        assert set(REQUIRED_FIELDS) <= obj.keys()
    assert objects[0]["ratio"] == pytest.approx(0.8)
    assert objects[1]["ratio"] == pytest.approx(0.5)
    assert code == 1  # a full run that misses a target says so in its exit code


def test_quick_run_exits_zero_even_when_a_target_is_missed(
    two_paths: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench_main.main(["--quick", "--only", "archiver"]) == 0
    table = capsys.readouterr().out
    assert "| archiver_1x |" in table and "**no**" in table


def test_ratio_of_a_zero_baseline_is_zero_not_an_error() -> None:
    assert _result("x", 5.0, 0.0, False).ratio == 0.0


@pytest.mark.parametrize(
    ("q", "expected"), [(50, 50.0), (99, 99.0), (100, 100.0), (0, 1.0), (1, 1.0)]
)
def test_percentile_is_nearest_rank(q: float, expected: float) -> None:
    assert percentile([float(v) for v in range(100, 0, -1)], q) == expected


def test_a_missing_wrk_skips_the_ingress_alone_and_says_how_to_install_it(
    two_paths: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench_main.shutil, "which", lambda tool: None)
    code = bench_main.main(["--json", "--only", "ingress", "archiver"])
    out = capsys.readouterr()
    objects = [json_codec.loads(line) for line in out.out.splitlines()]
    assert [o["path"] for o in objects] == ["ingress", "archiver_1x"]
    assert "wrk" in objects[0]["skipped"] and objects[1]["skipped"] is None
    assert set(REQUIRED_FIELDS) <= objects[0].keys()
    assert out.err.count("apt-get install wrk") == 1
    assert code == 1  # the archiver still missed its target; the skip itself is not a miss


def test_a_skipped_path_shows_in_the_table_and_does_not_fail_the_run(
    two_paths: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench_main.shutil, "which", lambda tool: None)
    assert bench_main.main(["--only", "ingress"]) == 0
    assert "| ingress | skipped: wrk is not installed" in capsys.readouterr().out


def test_a_reported_row_says_what_broke_and_does_not_fail_the_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    target = _result("stream", 2000.0, 2000.0, True)
    past = _result("stream_500", 4000.0, 5000.0, False)
    past.reported = "p99 83.0 ms, past 50 ms"
    module = types.SimpleNamespace(measure=lambda quick: [target, past])
    monkeypatch.setattr(bench_main.importlib, "import_module", lambda name: module)
    assert bench_main.main(["--json", "--only", "stream"]) == 0
    objects = [json_codec.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(o["path"], o["reported"]) for o in objects] == [
        ("stream", None),
        ("stream_500", "p99 83.0 ms, past 50 ms"),
    ]
    assert bench_main.main(["--only", "stream"]) == 0
    assert "| reported: p99 83.0 ms, past 50 ms |" in capsys.readouterr().out
    target.met = False
    assert bench_main.main(["--only", "stream"]) == 1  # the target row still counts
