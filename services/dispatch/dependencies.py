from __future__ import annotations

from nameko.extensions import DependencyProvider

from .areas import AreaMap
from .supervision import Policy


class Areas(DependencyProvider):
    """The area tree (city → county → town → village → grid), loaded once per container."""

    def setup(self) -> None:
        self.areas = AreaMap.load()

    def get_dependency(self, worker_ctx) -> AreaMap:
        return self.areas


class Supervision(DependencyProvider):
    """The supervision policy (supervision.Policy) from config SUPERVISION and SLA_SCALE, built once."""

    def setup(self) -> None:
        config = self.container.config
        self.policy = Policy.from_config(config, float(config.get("SLA_SCALE") or 1))

    def get_dependency(self, worker_ctx):
        return self.policy
