"""Staff tokens: what is accepted as proof of who calls, and everything that is not."""
from __future__ import annotations

import json
import os
import time
from datetime import datetime, timedelta, timezone

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from services.common import config
from services.common.staff import Principal, Unauthenticated
from services.common.tokens import TokenVerifier, mint, new_signing_key

GRID = "341323104214-G10"


@pytest.fixture
def keys(tmp_path):
    private, public = new_signing_key("k-2026")
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [public]}))
    return private, path


def verifier(path, algorithms=("EdDSA", "RS256"), revoked=None) -> TokenVerifier:
    return TokenVerifier(path, "songdaojia", "songdaojia", algorithms, revoked)


def token(private, **changes) -> str:
    now = datetime.now(timezone.utc)
    claims = {"iss": "songdaojia", "aud": "songdaojia", "sub": "W-1", "role": "grid_worker", "area": GRID,
              "iat": now, "nbf": now, "exp": now + timedelta(hours=1), "jti": "t-1"}
    changes = {k: now + v if isinstance(v, timedelta) else v for k, v in changes.items()}
    claims.update(changes)
    claims = {k: v for k, v in claims.items() if v is not None}
    key = jwt.PyJWK(private)
    return jwt.encode(claims, key.key, algorithm=key.algorithm_name, headers={"kid": private["kid"]})


def test_a_token_from_the_keyring_proves_subject_role_and_area(keys):
    private, path = keys
    principal = verifier(path).verify(mint(private, "W-1", "grid_worker", GRID, ttl=timedelta(hours=1)))
    assert (principal.subject, principal.role, principal.area) == ("W-1", "grid_worker", GRID)


def test_the_authorization_header_must_say_bearer(keys):
    private, path = keys
    good = token(private)
    assert verifier(path).principal(f"Bearer {good}").subject == "W-1"
    for header in (None, "", good, f"Basic {good}", "Bearer "):
        with pytest.raises(Unauthenticated, match="Bearer"):
            verifier(path).principal(header)


@pytest.mark.parametrize("changes, why", [
    ({"exp": -timedelta(minutes=5)}, "expired"),
    ({"nbf": timedelta(minutes=5)}, "not valid yet"),
    ({"iss": "someone-else"}, "(?i)issuer"),
    ({"aud": "another-system"}, "(?i)audience"),
    ({"exp": None}, "exp"),
    ({"sub": None}, "sub"),
    ({"role": "mayor"}, "role must be one of"),
    ({"area": "everywhere"}, "area must be an area code"),
    ({"sub": "x" * 51}, "sub must be"),
], ids=["expired", "not-yet", "issuer", "audience", "no-exp", "no-sub", "role", "area", "long-sub"])
def test_a_token_that_does_not_hold_is_refused_saying_why(keys, changes, why):
    private, path = keys
    with pytest.raises(Unauthenticated, match=why):
        verifier(path).verify(token(private, **changes))


def test_alg_none_is_never_accepted(keys):
    _, path = keys
    unsigned = jwt.encode({"iss": "songdaojia", "aud": "songdaojia", "sub": "W-1", "role": "admin", "area": "3413",
                           "exp": int(time.time()) + 3600}, None, algorithm="none", headers={"kid": "k-2026"})
    for allowed in (("EdDSA",), ("EdDSA", "none")):
        with pytest.raises(Unauthenticated, match="algorithm 'none' is not accepted"):
            verifier(path, allowed).verify(unsigned)


def test_a_token_signed_by_an_unknown_key_or_tampered_with_is_refused(keys):
    private, path = keys
    stranger, _ = new_signing_key("k-2026")  # the same kid, another key
    with pytest.raises(Unauthenticated, match="Signature"):
        verifier(path).verify(token(stranger))
    other, _ = new_signing_key("k-other")
    with pytest.raises(Unauthenticated, match="does not know"):
        verifier(path).verify(token(other))
    head, body, sig = token(private).split(".")
    forged_body = jwt.utils.base64url_encode(json.dumps({**json.loads(jwt.utils.base64url_decode(body)),
                                                         "role": "admin"}).encode()).decode()
    with pytest.raises(Unauthenticated):
        verifier(path).verify(f"{head}.{forged_body}.{sig}")


def test_an_rsa_public_key_cannot_be_used_as_an_hmac_secret(tmp_path):
    """The classic algorithm confusion: sign HS256 with the (public) RSA key's bytes."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = {**RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True), "kid": "county-oidc", "alg": "RS256"}
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [public]}))
    pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    import hashlib
    import hmac
    header = jwt.utils.base64url_encode(json.dumps({"alg": "HS256", "kid": "county-oidc", "typ": "JWT"}).encode())
    payload = jwt.utils.base64url_encode(json.dumps({"iss": "songdaojia", "aud": "songdaojia", "sub": "x",
                                                     "role": "admin", "area": "3413",
                                                     "exp": int(time.time()) + 600}).encode())
    signing_input = header + b"." + payload
    sig = jwt.utils.base64url_encode(hmac.new(pem, signing_input, hashlib.sha256).digest())
    with pytest.raises(Unauthenticated):
        verifier(path, ("RS256", "HS256")).verify((signing_input + b"." + sig).decode())
    # the same provider's real RS256 tokens are accepted: a county's OIDC provider can issue them
    real = jwt.encode({"iss": "songdaojia", "aud": "songdaojia", "sub": "D-1", "role": "county_dispatcher",
                       "area": "341323", "exp": int(time.time()) + 3600}, rsa_key, algorithm="RS256",
                      headers={"kid": "county-oidc"})
    assert verifier(path, ("RS256",)).verify(real).role == "county_dispatcher"


def test_hs256_works_only_when_allowed(tmp_path):
    secret = {"kty": "oct", "k": jwt.utils.base64url_encode(os.urandom(32)).decode(), "kid": "demo", "alg": "HS256"}
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [secret]}))
    signed = token(secret)
    assert verifier(path, ("HS256",)).verify(signed).subject == "W-1"
    with pytest.raises(Unauthenticated, match="not accepted"):
        verifier(path, ("EdDSA",)).verify(signed)


def test_keys_rotate_and_tokens_are_revoked_without_a_restart(keys, tmp_path, monkeypatch):
    monkeypatch.setattr(config, "CHECK_FILES_EVERY", 0.0)
    old, path = keys
    new, new_public = new_signing_key("k-2027")
    revoked = tmp_path / "revoked.json"
    revoked.write_text(json.dumps({"jti": [], "sub": []}))
    v = verifier(path, revoked=revoked)
    with pytest.raises(Unauthenticated, match="does not know"):
        v.verify(token(new))
    old_public = json.loads(path.read_text())["keys"][0]
    _rewrite(path, {"keys": [old_public, new_public]})  # the new key is added before the old one goes
    assert v.verify(token(old)).subject == v.verify(token(new)).subject == "W-1"
    _rewrite(path, {"keys": [new_public]})
    with pytest.raises(Unauthenticated, match="does not know"):
        v.verify(token(old))
    _rewrite(revoked, {"jti": ["t-1"], "sub": []})
    with pytest.raises(Unauthenticated, match="revoked"):
        v.verify(token(new))
    _rewrite(revoked, {"jti": [], "sub": ["W-2"]})
    assert v.verify(token(new)).subject == "W-1"
    with pytest.raises(Unauthenticated, match="revoked"):
        v.verify(token(new, sub="W-2", jti="t-2"))


def test_a_broken_new_keyring_keeps_the_last_good_one(keys, monkeypatch):
    monkeypatch.setattr(config, "CHECK_FILES_EVERY", 0.0)
    private, path = keys
    v = verifier(path)
    path.write_text("{not json")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10_000_000))
    assert v.verify(token(private)).subject == "W-1"


def test_a_missing_keyring_stops_the_service_from_starting(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        verifier(tmp_path / "nowhere.json")


@pytest.mark.parametrize("area, location, covered", [
    ("3413", "341323104214-G10", True), ("341323", "341323104214", True), ("341323", "341324001001", False),
    ("341323104", "341323", False), ("341323104214-G1", "341323104214-G10", False),
    ("341323104214-G10", "341323104214-G10", True), ("341323104214", None, False),
])
def test_an_area_covers_what_lies_under_it(area, location, covered):
    assert Principal("x", "supervisor", area).covers(location) is covered


def _rewrite(path, document) -> None:
    path.write_text(json.dumps(document))
    stamp = path.stat().st_mtime_ns + 10_000_000
    os.utime(path, ns=(stamp, stamp))
