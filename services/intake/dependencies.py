from __future__ import annotations

import json

from nameko.extensions import DependencyProvider
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.common.database import make_engine
from services.common.envelope import utcnow

from . import places
from .catalogue import Catalogue, read_document
from .models import CatalogueVersion


class CatalogueProvider(DependencyProvider):
    """The service catalogue: catalogue.yaml (or `CATALOGUE_PATH`), recorded in intake's database
    under its version when first seen; a changed file under a version already recorded is refused."""

    def setup(self) -> None:
        document = read_document(self.container.config.get("CATALOGUE_PATH") or None)
        version, text = str(document["version"]), json.dumps(document, ensure_ascii=False, sort_keys=True)
        engine = make_engine(self.container.config["DB_URL"], pool_size=1)
        try:
            try:
                self._record(engine, version, text)
            except IntegrityError:  # another instance starting at the same moment recorded it first
                self._record(engine, version, text)
        finally:
            engine.dispose()
        self.catalogue = Catalogue.from_document(json.loads(text))

    @staticmethod
    def _record(engine, version: str, text: str) -> None:
        with Session(engine) as s, s.begin():
            known = s.get(CatalogueVersion, version)
            if known is None:
                s.add(CatalogueVersion(version=version, loaded_at=utcnow(), document=text))
            elif known.document != text:
                raise ValueError(f"catalogue {version}: the file changed but its version did not; "
                                 "bump `version` in catalogue.yaml so tickets can say which one they used")

    def get_dependency(self, worker_ctx) -> Catalogue:
        return self.catalogue


class Places(DependencyProvider):
    """Suzhou's villages, by code and by name."""

    def setup(self) -> None:
        self.places = places.load()

    def get_dependency(self, worker_ctx) -> places.Places:
        return self.places
