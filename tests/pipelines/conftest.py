"""What the Spark tests share: one local[2] session per test process (starting a JVM costs
seconds; every engine opened by a test reuses the active session), skipped without Java."""

from __future__ import annotations

import os
import shutil

import pytest


def _java() -> bool:
    home = os.environ.get("JAVA_HOME")
    return bool(shutil.which("java") or (home and os.path.exists(os.path.join(home, "bin", "java"))))


@pytest.fixture(scope="session")
def spark():
    """One local[2] session per test process; a test that needs it is skipped without Java."""
    from pipelines.engines.spark import SparkEngine, SparkSettings

    if not _java():
        pytest.skip("no Java runtime (no `java` on PATH, no JAVA_HOME): Spark needs Java 17+, "
                    "e.g. apt-get install openjdk-17-jre-headless")

    engine = SparkEngine.start(SparkSettings(master="local[2]", shuffle_partitions=2, driver_memory="1g"))
    yield engine.spark
    engine.close()
