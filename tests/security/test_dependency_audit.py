"""Known vulnerabilities in the locked dependencies (requirements.lock), via pip-audit.

pip-audit is a tool, not a dependency: CI installs it next to the locked set (``.ci/run``). Its
default service reports a package it cannot look up as *skipped* and still says "No known
vulnerabilities found" with exit status 0, so this test reads the JSON report: it fails on any
vulnerability, fails when only some packages could be looked up, and skips, saying so, when none
could (no route to a vulnerability service: the lock was NOT audited).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

LOCK = Path(__file__).resolve().parents[2] / "requirements.lock"

pytestmark = pytest.mark.slow


def _audit() -> dict:
    command = [
        sys.executable, "-m", "pip_audit", "--requirement", str(LOCK), "--no-deps",
        "--disable-pip", "--progress-spinner", "off", "--format", "json", "--timeout", "15",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, check=False)
    if not done.stdout.strip():
        tail = done.stderr.strip().splitlines()[-1:] or ["(no output)"]
        pytest.skip(f"pip-audit could not reach a vulnerability service: {tail[0][:300]}")
    return json.loads(done.stdout)


def test_locked_dependencies_have_no_known_vulnerability() -> None:
    if importlib.util.find_spec("pip_audit") is None:
        pytest.skip("pip-audit is not installed in this environment (.ci/run installs it)")
    report = _audit()
    deps = report["dependencies"]
    skipped = [d for d in deps if d.get("skip_reason")]
    if deps and len(skipped) == len(deps):
        pytest.skip(
            f"NOT AUDITED: the vulnerability service answered for 0 of {len(deps)} locked "
            f"packages (e.g. {skipped[0]['skip_reason']!r}); no network route to it from here"
        )
    vulnerable = {
        f"{d['name']}=={d['version']}": [(v["id"], v.get("fix_versions")) for v in d["vulns"]]
        for d in deps
        if d.get("vulns")
    }
    assert not vulnerable, f"known vulnerabilities: {vulnerable}"
    assert not skipped, f"could not be looked up: {[d['name'] for d in skipped]}"
