from __future__ import annotations

from nameko.extensions import DependencyProvider

from services.common.config import WatchedFile


def _gateways(document) -> dict[str, list[str]]:
    gateways = {str(name): [str(s) for s in (secrets or [])] for name, secrets in (document or {}).items()}
    for name, secrets in gateways.items():
        if any(len(s) < 16 for s in secrets):
            raise ValueError(f"gateway {name}: every secret needs at least 16 characters")
    return gateways


class Gateways(DependencyProvider):
    """The gateways that forward residents' answers, and the secrets they sign with (config GATEWAYS:
    a YAML file `{name: [secret, …]}`; several secrets per gateway while one is being rotated)."""

    def setup(self) -> None:
        path = self.container.config.get("GATEWAYS")
        if not path:
            raise ValueError("GATEWAYS: no file of gateway secrets configured: no resident's answer could "
                             "be trusted (see README, Security model)")
        self.file = WatchedFile(path, _gateways, "GATEWAYS")

    def get_dependency(self, worker_ctx):
        return self.file.current()
