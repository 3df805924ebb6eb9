#!/usr/bin/env python3
"""Key material and tokens for bench/run.sh.

Writes into DIR: key.pem (RSA 2048 private key, PKCS#8), pub.pem (its
public key, SubjectPublicKeyInfo PEM: what HAProxy's jwt_verify loads),
jwks.json (the public key as a JWKS, served by the origin for idp-gate),
token.txt (one token, for the reused-token scenario) and tokens.txt (COUNT
distinct tokens, one a line, for the new-token scenario: each has its own
jti and sub). RS256, iss/aud/exp/iat/org_id as the bench configs expect;
valid for TTL seconds. Signing is spread over the CPUs.

usage: gen_tokens.py DIR COUNT ISSUER AUDIENCE ORG TTL
"""

import base64
import json
import os
import sys
import time
from multiprocessing import Pool

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

KID = "bench-rs256"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def uint(n: int) -> str:
    return b64(n.to_bytes((n.bit_length() + 7) // 8, "big"))


_key = None
_claims = None


def _init(pem: bytes, claims: dict) -> None:
    global _key, _claims
    _key = serialization.load_pem_private_key(pem, password=None)
    _claims = claims


HEADER = b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": KID}, separators=(",", ":")).encode())


def sign(i: int) -> str:
    claims = dict(_claims, sub=f"auth0|bench{i:06d}", jti=f"bench-{i:06d}")
    payload = b64(json.dumps(claims, separators=(",", ":")).encode())
    message = f"{HEADER}.{payload}".encode()
    sig = _key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return f"{HEADER}.{payload}.{b64(sig)}"


def main() -> None:
    out, count, issuer, audience, org, ttl = sys.argv[1:7]
    count, ttl = int(count), int(ttl)
    os.makedirs(out, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    pub = key.public_key()
    numbers = pub.public_numbers()
    jwks = {"keys": [{"kty": "RSA", "kid": KID, "use": "sig", "alg": "RS256",
                      "n": uint(numbers.n), "e": uint(numbers.e)}]}
    now = int(time.time())
    claims = {"iss": issuer, "aud": audience, "org_id": org, "scope": "apis:read",
              "iat": now, "exp": now + ttl}
    _init(pem, claims)
    token = sign(0)
    with Pool(os.cpu_count() or 1, initializer=_init, initargs=(pem, claims)) as pool:
        tokens = pool.map(sign, range(1, count + 1), chunksize=500)

    def write(name: str, data: str) -> None:
        with open(os.path.join(out, name + ".tmp"), "w") as f:
            f.write(data)
        os.replace(os.path.join(out, name + ".tmp"), os.path.join(out, name))

    write("key.pem", pem.decode())
    write("pub.pem", pub.public_bytes(serialization.Encoding.PEM,
                                      serialization.PublicFormat.SubjectPublicKeyInfo).decode())
    write("jwks.json", json.dumps(jwks))
    write("token.txt", token + "\n")
    write("tokens.txt", "\n".join(tokens) + "\n")


if __name__ == "__main__":
    main()
