from __future__ import annotations

from nameko.extensions import DependencyProvider

from . import places
from .catalogue import Catalogue


class CatalogueProvider(DependencyProvider):
    """The service catalogue, loaded once per container (path from `CATALOGUE_PATH`)."""

    def setup(self) -> None:
        self.catalogue = Catalogue.load(self.container.config.get("CATALOGUE_PATH") or None)

    def get_dependency(self, worker_ctx) -> Catalogue:
        return self.catalogue


class Places(DependencyProvider):
    """Suzhou's villages, by code and by name."""

    def setup(self) -> None:
        self.places = places.load()

    def get_dependency(self, worker_ctx) -> places.Places:
        return self.places


class Open311Keys(DependencyProvider):
    """The api_keys Open311 clients may post with (config `OPEN311_API_KEYS`, comma-separated)."""

    def setup(self) -> None:
        raw = self.container.config.get("OPEN311_API_KEYS") or ""
        self.keys = {k.strip() for k in str(raw).split(",") if k.strip()}

    def get_dependency(self, worker_ctx) -> set[str]:
        return self.keys
