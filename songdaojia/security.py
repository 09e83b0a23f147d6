"""The keys and secrets the trust model needs, made once in one owner-only folder. Idempotent:
what exists is kept (run it again after adding a gateway or a client, and only those are new).

    jwks.json                 public keys the services verify staff tokens with      (SDJ_JWKS)
    token-signing.jwk         the private key `songdaojia token` signs with           (SDJ_TOKEN_KEY)
    revoked.json              revoked token ids and subjects                          (SDJ_REVOKED)
    gateways.yaml             each gateway's secret for signing residents' calls     (NOTIFY_GATEWAYS, INTAKE_GATEWAYS)
    open311-clients.yaml      intake's Open311 clients, keys hashed                   (INTAKE_OPEN311_CLIENTS)
    open311-keys/<name>.key   each client's key, to hand to the client
    broker/<user>.uri         each broker user's AMQP URI (see broker.py)

Production: /etc/songdaojia (`./sdj secure`); a demo or benchmark run: var/<run>/secrets.
"""
from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import yaml

from services.common.tokens import mint, new_signing_key, write_private
from services.intake.clients import new_key

GATEWAYS = ("sms", "wechat", "mail")
OPEN311_CLIENTS = ("county-portal",)


@dataclass(frozen=True)
class Secrets:
    directory: Path

    @property
    def jwks(self) -> Path:
        return self.directory / "jwks.json"

    @property
    def signing_key(self) -> Path:
        return self.directory / "token-signing.jwk"

    @property
    def revoked(self) -> Path:
        return self.directory / "revoked.json"

    @property
    def gateways(self) -> Path:
        return self.directory / "gateways.yaml"

    @property
    def open311_clients(self) -> Path:
        return self.directory / "open311-clients.yaml"

    def open311_key(self, client: str) -> str:
        return (self.directory / "open311-keys" / f"{client}.key").read_text(encoding="utf-8").strip()

    def gateway_secret(self, gateway: str) -> str:
        return yaml.safe_load(self.gateways.read_text(encoding="utf-8"))[gateway][-1]

    def token(self, subject: str, role: str, area: str, ttl: timedelta = timedelta(hours=8), **claims) -> str:
        """A staff token signed with this folder's key (what a county's identity provider would issue)."""
        return mint(json.loads(self.signing_key.read_text(encoding="utf-8")), subject, role, area, ttl=ttl, **claims)

    def service_env(self) -> dict[str, str]:
        """What every service needs to find its keys and secrets here."""
        return {"SDJ_JWKS": str(self.jwks), "SDJ_REVOKED": str(self.revoked),
                "NOTIFY_GATEWAYS": str(self.gateways), "INTAKE_GATEWAYS": str(self.gateways),
                "INTAKE_OPEN311_CLIENTS": str(self.open311_clients)}


def ensure(directory: Path, gateways=GATEWAYS, open311_clients=OPEN311_CLIENTS) -> Secrets:
    s = Secrets(Path(directory))
    s.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    s.directory.chmod(0o700)
    if not s.signing_key.exists():
        private, public = new_signing_key()
        keys = json.loads(s.jwks.read_text(encoding="utf-8"))["keys"] if s.jwks.exists() else []
        write_private(s.jwks, json.dumps({"keys": keys + [public]}, indent=2) + "\n")
        write_private(s.signing_key, json.dumps(private) + "\n")
    if not s.revoked.exists():
        write_private(s.revoked, json.dumps({"jti": [], "sub": []}) + "\n")
    known = yaml.safe_load(s.gateways.read_text(encoding="utf-8")) if s.gateways.exists() else {}
    if set(gateways) - set(known or {}):
        known = {**{g: [secrets.token_urlsafe(32)] for g in gateways}, **(known or {})}
        write_private(s.gateways, yaml.safe_dump(known, sort_keys=True))
    clients = (yaml.safe_load(s.open311_clients.read_text(encoding="utf-8")) if s.open311_clients.exists()
               else None) or {"clients": []}
    names = {c["name"] for c in clients["clients"]}
    for name in open311_clients:
        if name not in names:
            key, digest = new_key()
            write_private(s.directory / "open311-keys" / f"{name}.key", key + "\n")
            clients["clients"].append({"name": name, "key_sha256": digest, "sees_more": False,
                                       "rate_per_minute": 600, "burst": 60})
    write_private(s.open311_clients, yaml.safe_dump(clients, sort_keys=False))
    return s
