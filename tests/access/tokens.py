"""A local identity provider for tests: RSA and EC keys, a JWKS file, signed tokens."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey

ISSUER = "https://idp.test.example"
AUDIENCE = "trailseal-test"


class LocalIdP:
    """Two signing keys (RS256 ``rsa-1``, ES256 ``ec-1``) published in ``jwks_path``."""

    def __init__(self, directory: Path) -> None:
        self.rsa = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"}, private=True)
        self.ec = ECKey.generate_key("P-256", parameters={"kid": "ec-1"}, private=True)
        self.jwks_path = directory / "jwks.json"
        self.publish(self.rsa, self.ec)

    def publish(self, *keys: Any) -> None:
        """Write the public JWKS with ``keys`` (drop a key to revoke it at the IdP)."""
        self.jwks_path.write_text(json.dumps(KeySet(list(keys)).as_dict(private=False)))

    def token(self, *, key: Any = None, alg: str = "RS256", lifetime: int = 300,
              **claims: Any) -> str:
        """A signed token; ``claims`` override the defaults (sub, iss, aud, exp, iat)."""
        key = key or self.rsa
        now = int(time.time())
        body: dict[str, Any] = {"sub": "alice@example.com", "iss": ISSUER, "aud": AUDIENCE,
                                "iat": now, "exp": now + lifetime}
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode({"alg": alg, "kid": key.kid}, body, key)
