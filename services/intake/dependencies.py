from __future__ import annotations

from nameko.extensions import DependencyProvider

from .catalogue import Catalogue


class CatalogueProvider(DependencyProvider):
    """The service catalogue, loaded once per container (path from `CATALOGUE_PATH`)."""

    def setup(self) -> None:
        self.catalogue = Catalogue.load(self.container.config.get("CATALOGUE_PATH") or None)

    def get_dependency(self, worker_ctx) -> Catalogue:
        return self.catalogue
