"""Installing Kafka and S3Proxy: Java checks and Maven resolution of their jars, once.

Jars are resolved into a temporary dir, a marker listing them is written, and only then is the
dir moved into place, so an interrupted download is never mistaken for an install. Every later
start is offline. This module must never start a service.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from workers.localstack.errors import StackError, ToolMissingError

__all__ = ["install_jars", "java_major_version", "lib_complete", "require_java"]

_LIB_MARKER = ".complete"
_JAVA_HINT = "(Debian: apt-get install openjdk-17-jre-headless)"


def lib_complete(lib_dir: Path) -> bool:
    """A lib dir is usable when its marker lists jars that are all still there."""
    marker = lib_dir / _LIB_MARKER
    try:
        names = [n for n in marker.read_text().splitlines() if n.strip()]
    except OSError:
        return False
    return bool(names) and all((lib_dir / n).is_file() for n in names)


def java_major_version(version_output: str) -> int | None:
    """The major version from ``java -version`` output (``1.8.0_x`` is 8, ``17.0.2`` is 17)."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if not match:
        return None
    major = int(match.group(1))
    if major == 1 and match.group(2):
        return int(match.group(2))
    return major


def require_java() -> None:
    """A Java 17+ runtime on PATH (Kafka 4 needs it), or :class:`ToolMissingError`."""
    java = shutil.which("java")
    if java is None:
        raise ToolMissingError(f"java not found: install a Java 17+ runtime {_JAVA_HINT}")
    result = subprocess.run(  # noqa: S603 - the java on PATH, fixed arguments
        [java, "-version"], capture_output=True, text=True, check=False
    )
    major = java_major_version(result.stderr + result.stdout)
    if major is not None and major < 17:
        raise ToolMissingError(f"java {major} found at {java}: Kafka 4 needs Java 17+ {_JAVA_HINT}")


def install_jars(
    name: str, lib: Path, pom: Path, version: str, progress: Callable[[str], None]
) -> None:
    """Resolve ``name``'s runtime jars at ``version`` into ``lib``; skipped when complete."""
    if lib_complete(lib):
        return
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ToolMissingError(
            "mvn not found: install Apache Maven to fetch Kafka and S3Proxy "
            "(Debian: apt-get install maven)"
        )
    if not pom.is_file():
        raise StackError(f"{pom} not found: run exopipe from a source checkout")
    tmp = lib.with_name(f"{lib.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    argv = [
        mvn,
        "-B",
        "-q",
        "-f",
        str(pom),
        f"-D{name}.version={version}",
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={tmp}",
    ]
    progress(f"{name}: fetching {name} {version} jars with Maven (first run only)")
    started = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
    jars = sorted(p.name for p in tmp.glob("*.jar"))
    if result.returncode != 0 or not jars:
        shutil.rmtree(tmp, ignore_errors=True)
        output = "\n".join((result.stdout + result.stderr).strip().splitlines()[-30:])
        raise StackError(f"{name}: mvn failed (exit {result.returncode}):\n{output}")
    (tmp / _LIB_MARKER).write_text("\n".join(jars) + "\n")
    shutil.rmtree(lib, ignore_errors=True)
    os.replace(tmp, lib)
    progress(f"{name}: {len(jars)} jars in {time.monotonic() - started:.1f}s")
