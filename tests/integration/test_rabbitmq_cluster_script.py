"""deploy/rabbitmq-cluster.sh, cheaply: its syntax and its usage message.

Nothing is started here (the real up/down is exercised by the e2e tests that use the cluster):
`bash -n`, then the script without a command and with an unknown one, which must fail with a
usage message naming every subcommand, before touching RabbitMQ or the cluster directory.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "rabbitmq-cluster.sh"
SUBCOMMANDS = ("up", "down", "status", "ctl", "uris", "start-node", "stop-node")


def run(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    # a cluster directory of its own, so that nothing could touch a real cluster's
    env = {**os.environ, "SDJ_CLUSTER_DIR": str(tmp_path / "cluster")}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60, env=env)


def test_syntax():
    result = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("args", [(), ("bogus",), ("ctl",), ("up", "many")], ids=["none", "bogus", "ctl", "up-many"])
def test_bad_usage_fails_with_usage(args, tmp_path):
    result = run(*args, tmp_path=tmp_path)
    assert result.returncode != 0
    for subcommand in SUBCOMMANDS:
        assert subcommand in result.stderr, f"usage does not name {subcommand!r}:\n{result.stderr}"
    assert not (tmp_path / "cluster").exists()


def test_help_is_usage_on_stdout(tmp_path):
    result = run("--help", tmp_path=tmp_path)
    assert result.returncode == 0
    assert all(subcommand in result.stdout for subcommand in SUBCOMMANDS)
