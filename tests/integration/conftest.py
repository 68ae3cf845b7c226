"""Shared pytest fixtures for the integration tests: where the binary and the
plugins are, free ports, and one real Kafka broker per test session (from
tests/services/kafka.sh) unless KAFKA_BOOTSTRAP names one.

Test files import these (`from conftest import ECFLOW, free_port`); the functions and
classes they share otherwise (waiting, kafka.sh, Kafka on the wire, processes, Iceberg
readers) are in harness.py.
"""
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ECFLOW = Path(os.environ.get("ECFLOW_BIN", ROOT / "build" / "ecflow"))
PLUGIN_PATH = os.environ.get("ECFLOW_PLUGIN_PATH", str(ECFLOW.parent / "plugins"))
KAFKA_SH = ROOT / "tests" / "services" / "kafka.sh"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ecflow_env(**extra):
    env = dict(os.environ, ECFLOW_PLUGIN_PATH=PLUGIN_PATH)
    env.update({k: str(v) for k, v in extra.items()})
    return env


@pytest.fixture(scope="session")
def kafka():
    """The bootstrap address of a running broker, stopped after the session."""
    if not shutil.which("kcat"):
        pytest.fail("kcat is needed to read topics back: apt-get install -y kcat")
    given = os.environ.get("KAFKA_BOOTSTRAP")
    if given:
        yield given
        return
    state = tempfile.mkdtemp(prefix="ecflow-it-kafka-")
    try:
        r = subprocess.run(["bash", str(KAFKA_SH), "start", state], capture_output=True, text=True,
                           timeout=300)
        if r.returncode != 0:
            raise RuntimeError(f"kafka.sh start failed:\n{r.stderr[-3000:]}")
        yield r.stdout.strip()
    finally:
        subprocess.run(["bash", str(KAFKA_SH), "stop", state], capture_output=True, timeout=120)
        shutil.rmtree(state, ignore_errors=True)
