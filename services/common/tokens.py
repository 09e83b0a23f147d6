"""Staff tokens: a signed JWT proves who calls a staff API (PyJWT).

A token is accepted when its signature verifies with the key its `kid` names, its `alg`
is on the allow-list and is that key's own algorithm (`none` never is), and `exp`, `nbf`,
`iss` and `aud` hold. The actor is the token's `sub`; its `role` and `area` (and
`department` for department staff) are the scope (see staff.py).

Keys are a JWKS document (RFC 7517), the format an OIDC provider publishes at its
`jwks_uri`: several keys at once, so a new key is added before the old one is retired.
The file is read again when it changes, and so is the revocation list
(`{"jti": [...], "sub": [...]}`): neither rotation nor revocation needs a restart.

Config (every service), section AUTH: JWKS (path), REVOKED (path, optional), ISSUER,
AUDIENCE, ALGORITHMS (allow-list), LEEWAY_SECONDS (clock skew, default 30).
"""
from __future__ import annotations

import logging
import os
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import jwt
from jwt.algorithms import OKPAlgorithm
from nameko.extensions import DependencyProvider

from .config import WatchedFile
from .staff import AREA_CODE, ROLES, Principal, Unauthenticated

log = logging.getLogger(__name__)

NEVER = frozenset({"none"})
REQUIRED_CLAIMS = ["exp", "iss", "aud", "sub"]
MAX_SUBJECT = 50  # what the records of who did what can hold
CACHED_TOKENS = 10_000  # a worker's token is checked once, not on every call, until it expires or keys change


def _keys_by_id(document: dict) -> dict[str, jwt.PyJWK]:
    keys = {}
    for raw in document["keys"]:
        if not raw.get("kid"):
            raise ValueError("every key needs a kid (tokens name the key that signed them)")
        keys[raw["kid"]] = jwt.PyJWK(raw)
    if not keys:
        raise ValueError("no keys")
    return keys


def _revocations(document: dict) -> tuple[frozenset, frozenset]:
    return frozenset(document.get("jti") or ()), frozenset(document.get("sub") or ())


class TokenVerifier:
    def __init__(self, jwks: str | Path, issuer: str, audience: str, algorithms, revoked: str | Path | None = None,
                 leeway: float = 30.0):
        self.algorithms = frozenset(algorithms) - NEVER
        if not self.algorithms:
            raise ValueError("AUTH.ALGORITHMS: no algorithm allowed")
        self.issuer, self.audience, self.leeway = issuer, audience, leeway
        self.keys = WatchedFile(jwks, _keys_by_id, "AUTH.JWKS")
        self.revoked = WatchedFile(revoked, _revocations, "AUTH.REVOKED") if revoked else None
        self._verified: dict[str, tuple[Principal, float, int]] = {}  # token -> (principal, exp, keyring version)

    @classmethod
    def from_config(cls, config: dict) -> TokenVerifier:
        auth = config.get("AUTH") or {}
        if not auth.get("JWKS"):
            raise ValueError("AUTH.JWKS: no verification keys configured (see README, Security model)")
        return cls(auth["JWKS"], auth.get("ISSUER") or "songdaojia", auth.get("AUDIENCE") or "songdaojia",
                   auth.get("ALGORITHMS") or ("EdDSA", "RS256"), auth.get("REVOKED") or None,
                   float(auth.get("LEEWAY_SECONDS", 30)))

    def of(self, request) -> Principal:
        """Who sent this HTTP request, by its Authorization header."""
        return self.principal(request.headers.get("Authorization"))

    def principal(self, authorization: str | None) -> Principal:
        """The principal an `Authorization: Bearer <jwt>` header proves; Unauthenticated says why not."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("Authorization: send 'Bearer <token>'")
        return self.verify(token.strip())

    def verify(self, token: str) -> Principal:
        keys = self.keys.current()
        cached = self._verified.get(token)
        if cached is not None and cached[1] > time.time() - self.leeway and cached[2] == self.keys.version:
            principal = cached[0]
        else:
            principal, expires = self._verify_signature_and_claims(token, keys)
            if len(self._verified) >= CACHED_TOKENS:
                self._verified.clear()
            self._verified[token] = (principal, expires, self.keys.version)
        if self.revoked is not None:
            jtis, subjects = self.revoked.current()
            if principal.token_id in jtis or principal.subject in subjects:
                raise Unauthenticated("token: revoked")
        return principal

    def _verify_signature_and_claims(self, token: str, keys: dict) -> tuple[Principal, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("token: not a JWT") from None
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise Unauthenticated(f"token: algorithm {str(alg)[:20]!r} is not accepted")
        key = keys.get(header.get("kid"))
        if key is None:
            raise Unauthenticated("token: signed by a key this service does not know")
        if key.algorithm_name != alg:
            raise Unauthenticated("token: its algorithm is not its key's")
        try:
            claims = jwt.decode(token, key, algorithms=[alg], audience=self.audience, issuer=self.issuer,
                                leeway=self.leeway, options={"require": REQUIRED_CLAIMS})
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token: expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthenticated("token: not valid yet (nbf)") from None
        except jwt.PyJWTError as exc:  # signature, audience, issuer, a missing claim
            raise Unauthenticated(f"token: {exc}"[:200]) from None
        return _principal(claims), float(claims["exp"])


def _principal(claims: dict) -> Principal:
    subject, role, area = claims.get("sub"), claims.get("role"), claims.get("area")
    if not isinstance(subject, str) or not 0 < len(subject) <= MAX_SUBJECT:
        raise Unauthenticated(f"token: sub must be 1 to {MAX_SUBJECT} characters")
    if role not in ROLES:
        raise Unauthenticated(f"token: role must be one of {', '.join(ROLES)}")
    if not isinstance(area, str) or not AREA_CODE.match(area):
        raise Unauthenticated("token: area must be an area code (3413, 341323, …, 341323104214-G10)")
    department = claims.get("department")
    return Principal(subject, role, area, department if isinstance(department, str) else None,
                     claims.get("jti") if isinstance(claims.get("jti"), str) else None)


class StaffTokens(DependencyProvider):
    """Injects the service's TokenVerifier: `who = self.staff.of(request)`."""

    def setup(self) -> None:
        self.verifier = TokenVerifier.from_config(self.container.config)

    def get_dependency(self, worker_ctx) -> TokenVerifier:
        return self.verifier


# --- issuing: the operators' command line and the demo (a county's OIDC provider does this in production)

def new_signing_key(kid: str | None = None) -> tuple[dict, dict]:
    """A fresh Ed25519 key: (private JWK, public JWK), both with kid and alg EdDSA."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    private = Ed25519PrivateKey.generate()
    kid = kid or f"sdj-{datetime.now(timezone.utc):%Y%m%d}-{uuid.uuid4().hex[:6]}"
    extra = {"kid": kid, "alg": "EdDSA", "use": "sig"}
    return ({**OKPAlgorithm.to_jwk(private, as_dict=True), **extra},
            {**OKPAlgorithm.to_jwk(private.public_key(), as_dict=True), **extra})


def mint(signing_key: dict, subject: str, role: str, area: str, *, ttl: timedelta, issuer: str = "songdaojia",
         audience: str = "songdaojia", department: str | None = None, now: datetime | None = None) -> str:
    """A signed token for `subject` (a private JWK with kid signs it)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if not AREA_CODE.match(area):
        raise ValueError(f"area {area!r} is not an area code")
    now = now or datetime.now(timezone.utc)
    key = jwt.PyJWK(signing_key)
    claims = {"iss": issuer, "aud": audience, "sub": subject, "role": role, "area": area,
              "iat": now, "nbf": now, "exp": now + ttl, "jti": uuid.uuid4().hex}
    if department:
        claims["department"] = department
    return jwt.encode(claims, key.key, algorithm=key.algorithm_name, headers={"kid": signing_key["kid"]})


def write_private(path: Path, text: str) -> None:
    """Write a secret owner-only (0600), never readable by others even for a moment."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
