"""The spool: durable, ordered across reopen, bounded, one process per directory."""

from __future__ import annotations

import pytest

from workers.errors import ConfigError
from workers.ingress.spool import Spool, SpoolFull


async def test_records_survive_reopen_in_order(tmp_path):
    spool = Spool(tmp_path, 1_000_000)
    assert spool.open() == []
    seqs = [spool.reserve() for _ in range(3)]
    # Written out of order (concurrent requests); read back by sequence.
    for seq in reversed(seqs):
        await spool.append(seq, "t", f"k{seq}", b'{"n": %d}' % seq)
    spool.close()

    again = Spool(tmp_path, 1_000_000)
    records = again.open()
    assert [r.key for r in records] == ["k1", "k2", "k3"]
    assert records[0].value == b'{"n": 1}'
    assert again.bytes_used == sum(r.size for r in records)
    assert again.reserve() == 4  # numbering continues after a restart
    await again.remove(records[0])
    again.close()
    third = Spool(tmp_path, 1_000_000)
    assert [r.key for r in third.open()] == ["k2", "k3"]
    third.close()


async def test_full_spool_refuses_and_keeps_nothing(tmp_path):
    spool = Spool(tmp_path, 200)
    spool.open()
    await spool.append(spool.reserve(), "t", "k", b"x" * 100)
    with pytest.raises(SpoolFull):
        await spool.append(spool.reserve(), "t", "k", b"x" * 100)
    assert len(list(tmp_path.glob("*.rec"))) == 1
    await spool.append(spool.reserve(), "t", "k", b"x" * 100, headroom=100)  # a stream's last
    with pytest.raises(SpoolFull):
        await spool.append(spool.reserve(), "t", "k", b"x" * 100, headroom=100)
    assert len(list(tmp_path.glob("*.rec"))) == 2
    spool.close()


def test_one_process_per_directory_and_stale_temp_files_go(tmp_path):
    (tmp_path / "00000000000000000009.tmp").write_bytes(b"half")
    first = Spool(tmp_path, 100)
    first.open()
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(ConfigError):
        Spool(tmp_path, 100).open()
    first.close()
