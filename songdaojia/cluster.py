"""A RabbitMQ cluster of our own on this machine (deploy/rabbitmq-cluster.sh), from Python:
`./sdj run --cluster` and the fault tests start, fault and stop its nodes through this.

Its nodes listen on loopback ports `port`, `port`+1, …; the services get all of them in one
AMQP_URI (`;`-separated: each client tries them in turn) and, with several, quorum queues.
"""
from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "deploy" / "rabbitmq-cluster.sh"
DEFAULT_PORT = 5681


@dataclass
class Cluster:
    nodes: int = 3
    port: int = DEFAULT_PORT

    def _run(self, *args: str, timeout: float = 300.0) -> str:
        env = dict(os.environ, SDJ_CLUSTER_PORT=str(self.port))
        env.pop("SDJ_CLUSTER_HOSTS", None)  # ours run here, never an ops cluster's hosts
        done = subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise RuntimeError(f"{SCRIPT.name} {shlex.join(args)} failed ({done.returncode}):\n"
                               f"{done.stdout[-2000:]}{done.stderr[-3000:]}")
        return done.stdout

    def running(self) -> bool:
        try:
            self._run("status", timeout=60)
            return True
        except RuntimeError:
            return False

    def up(self) -> "Cluster":
        self._run("up", str(self.nodes))
        return self

    def down(self) -> None:
        self._run("down")

    def uri(self, credentials: str = "guest:guest", vhost: str = "/") -> str:
        """Every node's URI, `;`-separated (what AMQP_URI takes)."""
        return ";".join(self._run("uris", credentials, vhost).split())

    def ctl(self, node: int, *args: str) -> str:
        return self._run("ctl", str(node), *args, timeout=120)

    def stop_node(self, node: int) -> None:
        self._run("stop-node", str(node))

    def start_node(self, node: int) -> None:
        self._run("start-node", str(node))

    def rabbitmqctl_command(self) -> str:
        """For SDJ_RABBITMQCTL: vhosts, users and rights are made through node 1 (the cluster shares them)."""
        return f"env SDJ_CLUSTER_PORT={self.port} {shlex.quote(str(SCRIPT))} ctl 1"
