"""The README is documentation users act on: it must name every setting and no stale one."""

from __future__ import annotations

import re
from pathlib import Path

from topics.catalog import CATALOG
from workers.config import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    missing = sorted(name for name in Settings.env_names() if f"`{name}`" not in README)
    assert missing == []


def test_no_documented_setting_is_unknown_to_the_code() -> None:
    mentioned = set(re.findall(r"EXOPIPE_[A-Z0-9_]*[A-Z0-9]", README))
    # Prefix mentions such as EXOPIPE_RECORDING_* in prose name a group, not a variable.
    groups = {m for m in mentioned if any(n.startswith(m + "_") for n in Settings.env_names())}
    unknown = sorted(mentioned - Settings.env_names() - groups - {"EXOPIPE"})
    assert unknown == []


def test_topic_table_matches_the_catalog() -> None:
    for spec in CATALOG:
        row = re.search(rf"^\| `{re.escape(spec.name)}` \| (\d+) \| (\w+) \|", README, re.M)
        assert row, f"{spec.name} is missing from the README's topic table"
        assert int(row.group(1)) == spec.partitions
        assert row.group(2) == spec.cleanup_policy
