"""OIDC bearer tokens: signature, issuer, audience, expiry, algorithm; claims to grants."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

import pytest
from joserfc.jwk import RSAKey

from tests.access.tokens import AUDIENCE, ISSUER, LocalIdP
from trailseal.access.oidc import JWKSSource, OIDCConfig, TokenVerifier, parse_group_grants
from trailseal.access.roles import Grant, Permission
from trailseal.core.errors import AuthenticationError


@pytest.fixture
def idp(tmp_path: Path) -> LocalIdP:
    return LocalIdP(tmp_path)


@pytest.fixture
def verifier(idp: LocalIdP) -> TokenVerifier:
    config = OIDCConfig(
        issuer=ISSUER, audience=AUDIENCE, jwks=str(idp.jwks_path),
        group_grants=parse_group_grants("sec-team=*:auditor;acme-dev=acme:reader,acme:producer"),
    )
    return TokenVerifier(config)


def test_valid_tokens_map_claims_to_grants(idp: LocalIdP, verifier: TokenVerifier) -> None:
    principal = verifier.verify(idp.token(trailseal_grants={"acme": "reader", "beta": ["auditor"]}))
    assert principal.actor == "alice@example.com" and principal.kind == "oidc"
    assert principal.grants == {Grant.parse("acme:reader"), Grant.parse("beta:auditor")}
    listed = verifier.verify(idp.token(key=idp.ec, alg="ES256", trailseal_grants=["x:admin", "y:bogus"]))
    assert listed.grants == {Grant.parse("x:admin")}
    grouped = verifier.verify(idp.token(groups=["acme-dev", "unrelated"]))
    assert grouped.allows(Permission.APPEND, "acme") and grouped.allows(Permission.READ, "acme")
    assert not grouped.allows(Permission.READ, "other")
    assert verifier.verify(idp.token(groups=["sec-team"])).allows(Permission.EXPORT, "anything")
    assert verifier.verify(idp.token()).grants == frozenset()
    assert verifier.verify(idp.token(aud=["other", AUDIENCE])).actor == "alice@example.com"


def _flip(token: str, part: int) -> str:
    pieces = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(pieces[part] + "=" * (-len(pieces[part]) % 4)))
    raw[len(raw) // 2] ^= 0x01
    pieces[part] = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    return ".".join(pieces)


def _b64(value: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def _resign_payload(token: str, **changes: object) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return ".".join([header, forged, signature])


def test_tampered_and_forged_tokens_are_rejected(idp: LocalIdP, verifier: TokenVerifier) -> None:
    good = idp.token(trailseal_grants={"acme": "reader"})
    forged = [
        _flip(good, 2),  # signature bit flipped
        _resign_payload(good, trailseal_grants={"acme": "admin"}),  # claims changed, old signature
        _resign_payload(good, sub="mallory"),
        good.rsplit(".", 1)[0] + ".",  # signature stripped
        "not-a-jwt",
        "a.b.c",
    ]
    for token in forged:
        with pytest.raises(AuthenticationError):
            verifier.verify(token)
    # alg=none, and HS256 keyed with the RSA public key (the classic confusion attack)
    none_header = base64.urlsafe_b64encode(b'{"alg":"none","kid":"rsa-1"}').decode().rstrip("=")
    with pytest.raises(AuthenticationError, match="not accepted"):
        verifier.verify(f"{none_header}.{good.split('.')[1]}.")
    public_pem = idp.rsa.as_pem(private=False)
    signing_input = ".".join(_b64(part) for part in (
        {"alg": "HS256", "kid": "rsa-1"}, {"sub": "x", "iss": ISSUER, "aud": AUDIENCE, "exp": 2**31}))
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    hs = signing_input + "." + base64.urlsafe_b64encode(mac).decode().rstrip("=")
    with pytest.raises(AuthenticationError, match="not accepted"):
        verifier.verify(hs)
    # signed by a key the IdP never published
    stranger = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"}, private=True)
    with pytest.raises(AuthenticationError):
        verifier.verify(idp.token(key=stranger))


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"lifetime": -120}, "expired"),
        ({"iss": "https://evil.example"}, "iss"),
        ({"aud": "someone-else"}, "aud"),
        ({"exp": None}, "exp"),
        ({"sub": None}, "sub"),
    ],
)
def test_claim_checks(idp: LocalIdP, verifier: TokenVerifier, claims: dict[str, object],
                      reason: str) -> None:
    with pytest.raises(AuthenticationError):
        verifier.verify(idp.token(**claims))  # type: ignore[arg-type]


def test_key_removed_from_the_jwks_file_is_rejected_at_once(idp: LocalIdP,
                                                             verifier: TokenVerifier) -> None:
    token = idp.token(key=idp.ec, alg="ES256")
    verifier.verify(token)
    idp.publish(idp.rsa)  # the IdP retires ec-1
    import os
    os.utime(idp.jwks_path, ns=(1, 1))  # make sure the mtime differs even on coarse clocks
    with pytest.raises(AuthenticationError, match="unknown key id"):
        verifier.verify(token)


def test_jwks_url_is_cached_and_refreshed_for_unknown_kids(idp: LocalIdP) -> None:
    fetched: list[str] = []
    now = [1000.0]

    def fetch(url: str) -> bytes:
        fetched.append(url)
        return idp.jwks_path.read_bytes()

    source = JWKSSource("https://idp.test.example/jwks", 300, fetch=fetch, clock=lambda: now[0])
    config = OIDCConfig(issuer=ISSUER, audience=AUDIENCE, jwks="https://idp.test.example/jwks")
    verifier = TokenVerifier(config, source=source)
    verifier.verify(idp.token())
    verifier.verify(idp.token())
    assert len(fetched) == 1
    new_key = RSAKey.generate_key(2048, parameters={"kid": "rsa-2"}, private=True)
    idp.publish(idp.rsa, idp.ec, new_key)
    with pytest.raises(AuthenticationError):  # refreshed too recently to refetch
        verifier.verify(idp.token(key=new_key))
    now[0] += 31
    assert verifier.verify(idp.token(key=new_key)).actor == "alice@example.com"
    assert len(fetched) == 2


def test_config_refuses_symmetric_algorithms() -> None:
    with pytest.raises(ValueError, match="asymmetric"):
        OIDCConfig(issuer=ISSUER, audience=AUDIENCE, jwks="x", algorithms=("HS256",))
    with pytest.raises(ValueError):
        parse_group_grants("no-equals-sign")
