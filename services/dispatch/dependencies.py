from __future__ import annotations

from nameko.extensions import DependencyProvider

from .areas import AreaMap


class Areas(DependencyProvider):
    """The area tree (city → county → town → village → grid), loaded once per container."""

    def setup(self) -> None:
        self.areas = AreaMap.load()

    def get_dependency(self, worker_ctx) -> AreaMap:
        return self.areas
