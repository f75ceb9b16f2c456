"""Baseline: boto3 ``upload_file`` of files already on disk, one thread per file, in parallel.

Prints ``<seconds> <peak RSS MiB> <seconds of each file>...`` of this process. Run by
``bench/archiver/path.py``.
"""

from __future__ import annotations

import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from workers.config import Settings
from workers.s3 import new_s3_client


def main(bucket: str, files: list[str]) -> None:
    client = new_s3_client(Settings.from_env())
    client.create_bucket(Bucket=bucket)

    def upload(path: str) -> float:
        began = time.perf_counter()
        client.upload_file(path, bucket, path.rsplit("/", 1)[1])
        return time.perf_counter() - began

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(files)) as pool:
        each = list(pool.map(upload, files))
    elapsed = time.perf_counter() - started
    for f in files:
        client.delete_object(Bucket=bucket, Key=f.rsplit("/", 1)[1])
    client.delete_bucket(Bucket=bucket)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{elapsed:.3f} {peak_kib / 1024:.1f} " + " ".join(f"{s:.3f}" for s in each))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
