"""gateway.access.tokens and signing: the gateway's JWTs, and every token it must refuse."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from gateway.access.signing import (
    SigningKey,
    SigningKeyError,
    generate_signing_key,
    jwk_thumbprint,
    load_signing_key,
)
from gateway.access.tokens import InvalidToken, TokenService
from gateway.oci.scope import Scope
from tests.access.identities import (
    ISSUER,
    SERVICE,
    claims,
    ec_key,
    hs256_with_public_key,
    pem,
    public_pem,
    pull,
    rsa_key,
    sign,
    tamper,
    unsigned,
)

EC_KEY = ec_key()
RSA_KEY = rsa_key()


def service(key: SigningKey, clock: float | None = None) -> TokenService:
    return TokenService(
        key,
        service=SERVICE,
        issuer=ISSUER,
        ttl=300,
        refresh_ttl=3600,
        clock=(lambda: clock) if clock is not None else time.time,
    )


@pytest.fixture(params=["ES256", "RS256"])
def tokens(request: pytest.FixtureRequest) -> TokenService:
    """A token service with an EC P-256 key, then with an RSA key."""
    private = EC_KEY if request.param == "ES256" else RSA_KEY
    return service(load_signing_key(pem(private)))


def test_key_type_pins_the_algorithm_and_kid_is_the_jwk_thumbprint() -> None:
    """EC P-256 → ES256, RSA → RS256; kid = RFC 7638 thumbprint."""
    ec_signing, rsa_signing = load_signing_key(pem(EC_KEY)), load_signing_key(pem(RSA_KEY))
    assert (ec_signing.algorithm, rsa_signing.algorithm) == ("ES256", "RS256")
    assert ec_signing.kid == jwk_thumbprint(EC_KEY.public_key())
    assert len(ec_signing.kid) == 43 and ec_signing.kid != rsa_signing.kid
    assert "PRIVATE" not in repr(ec_signing)


def test_rfc7638_thumbprint_of_the_rfc_example_key() -> None:
    """The RSA example key of RFC 7638 §3.1 gives the thumbprint printed there."""
    n = int.from_bytes(
        jwt.utils.base64url_decode(
            "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_"
            "BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0"
            "_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTW"
            "hAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
        ),
        "big",
    )
    key = rsa.RSAPublicNumbers(65537, n).public_key()
    assert jwk_thumbprint(key) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.mark.parametrize(
    ("key_pem", "problem"),
    [
        (pem(ec_key(ec.SECP384R1())), "use P-256"),
        (pem(rsa_key(1024)), "use at least 2048"),
        (b"-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n", "not a PEM"),
        (public_pem(EC_KEY), "not a PEM private key"),
        (
            ed25519.Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            "use EC P-256 or RSA",
        ),
        (
            EC_KEY.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"pw"),
            ),
            "encrypted",
        ),
    ],
)
def test_unusable_keys_are_refused(key_pem: bytes, problem: str) -> None:
    """Other curves, short RSA, Ed25519, public or encrypted keys: SigningKeyError."""
    with pytest.raises(SigningKeyError, match=problem):
        load_signing_key(key_pem)


def test_generated_key_is_ec_p256() -> None:
    """Without key_file the gateway makes an ES256 key of its own."""
    key = generate_signing_key()
    assert key.algorithm == "ES256" and key.generated


def test_access_token_round_trip(tokens: TokenService) -> None:
    """Header alg/kid/typ and every claim of jwt.md; access as granted."""
    issued = tokens.issue_access("alice", [Scope("repository", "gcr.io/a/b", ("pull",))])
    header = jwt.get_unverified_header(issued.token)
    assert header == {"alg": tokens.key.algorithm, "kid": tokens.key.kid, "typ": "JWT"}
    body = jwt.decode(issued.token, options={"verify_signature": False})
    assert set(body) == {"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "access"}
    assert (body["iss"], body["sub"], body["aud"]) == (ISSUER, "alice", SERVICE)
    assert body["exp"] - body["iat"] == issued.expires_in == 300
    assert body["access"] == [pull("gcr.io/a/b")]
    verified = tokens.verify_access(issued.token)
    assert verified.subject == "alice"
    assert verified.covers("gcr.io/a/b", "pull") and not verified.covers("gcr.io/a/b", "push")
    assert not verified.covers("gcr.io/a/c", "pull")


def test_anonymous_tokens_have_an_empty_subject(tokens: TokenService) -> None:
    """jwt.md: sub is "" when the client did not authenticate."""
    issued = tokens.issue_access("", [])
    assert tokens.verify_access(issued.token).subject == ""


def test_issued_at_is_rfc3339_utc() -> None:
    """token.md: issued_at in RFC 3339, UTC."""
    issued = service(load_signing_key(pem(EC_KEY)), clock=0.0).issue_access("", [])
    assert issued.issued_at_text == "1970-01-01T00:00:00Z"


KID = load_signing_key(pem(EC_KEY)).kid
OTHER_EC = ec_key()


@pytest.mark.parametrize(
    ("make_token", "reason"),
    [
        (lambda: tamper(sign(claims(), EC_KEY, KID), sub="root"), "bad signature"),
        (
            lambda: tamper(sign(claims(), EC_KEY, KID), access=[pull("x")]),
            "bad signature",
        ),
        (lambda: sign(claims(), OTHER_EC, KID), "bad signature"),  # re-signed, our kid
        (lambda: sign(claims(), OTHER_EC, "other-kid"), "unknown signing key"),
        (lambda: unsigned(claims(), KID), "algorithm 'none' not accepted"),
        (
            lambda: hs256_with_public_key(claims(), public_pem(EC_KEY), KID),
            "algorithm 'HS256' not accepted",
        ),
        (lambda: sign(claims(), RSA_KEY, KID, algorithm="RS256"), "algorithm 'RS256'"),
        (lambda: sign(claims(now=time.time() - 400), EC_KEY, KID), "token expired"),
        (lambda: sign(claims(now=time.time() + 120), EC_KEY, KID), "token not yet valid"),
        (lambda: sign(claims(aud="another-registry"), EC_KEY, KID), "another service"),
        (lambda: sign(claims(aud=[SERVICE, "x"]), EC_KEY, KID), "another service"),
        (lambda: sign(claims(iss="someone-else"), EC_KEY, KID), "another issuer"),
        (lambda: sign(claims(typ_ignored=1), EC_KEY, KID, typ="refresh+jwt"), "wrong token type"),
        (lambda: sign({**claims(), "exp": None}, EC_KEY, KID), "missing claim exp"),
        (lambda: sign({**claims(), "access": "all"}, EC_KEY, KID), "malformed access"),
        (lambda: "not.a.jwt", "malformed token"),
        (lambda: "", "malformed token"),
    ],
)
def test_refuses_tokens_it_did_not_issue_as_they_are(make_token: object, reason: str) -> None:
    """Tampered, re-signed, alg none, HS/ES confusion, expired, wrong aud/iss/typ, malformed."""
    tokens = service(load_signing_key(pem(EC_KEY)))
    with pytest.raises(InvalidToken) as caught:
        tokens.verify_access(make_token())  # type: ignore[operator]
    assert reason in caught.value.reason


def test_small_clock_skew_is_tolerated() -> None:
    """exp and nbf allow 30 seconds of leeway between replicas' clocks."""
    tokens = service(load_signing_key(pem(EC_KEY)))
    now = time.time()
    assert tokens.verify_access(sign(claims(now=now - 310), EC_KEY, KID)).subject == "alice"
    assert tokens.verify_access(sign(claims(now=now + 20), EC_KEY, KID)).subject == "alice"


def test_a_remembered_token_still_expires() -> None:
    """The verification cache never outlives exp (+ leeway)."""
    clock = [time.time()]
    tokens = TokenService(
        load_signing_key(pem(EC_KEY)),
        service=SERVICE,
        issuer=ISSUER,
        ttl=60,
        refresh_ttl=60,
        clock=lambda: clock[0],
    )
    issued = tokens.issue_access("alice", [])
    tokens.verify_access(issued.token)
    clock[0] += 95
    with pytest.raises(InvalidToken, match="expired"):
        tokens.verify_access(issued.token)


def test_refresh_tokens_and_access_tokens_are_not_interchangeable() -> None:
    """Each kind has its own typ: neither verifies as the other."""
    tokens = service(load_signing_key(pem(EC_KEY)))
    refresh = tokens.issue_refresh("alice", b"$2b$04$hash")
    access = tokens.issue_access("alice", [])
    with pytest.raises(InvalidToken, match="wrong token type"):
        tokens.verify_access(refresh.token)
    with pytest.raises(InvalidToken, match="wrong token type"):
        tokens.verify_refresh(access.token)
    body = jwt.decode(refresh.token, options={"verify_signature": False})
    assert "access" not in body and body["exp"] - body["iat"] == 3600


def test_refresh_binding_follows_the_htpasswd_entry() -> None:
    """The binding changes with the user's hash and with the signing key, never holds it."""
    tokens = service(load_signing_key(pem(EC_KEY)))
    claims_ = tokens.verify_refresh(tokens.issue_refresh("alice", b"hash-1").token)
    assert claims_.binding == tokens.binding("alice", b"hash-1")
    assert claims_.binding != tokens.binding("alice", b"hash-2")
    other = service(load_signing_key(pem(OTHER_EC)))
    assert other.binding("alice", b"hash-1") != claims_.binding
    assert "hash-1" not in claims_.binding


def test_rsa_keyed_service_refuses_hs256_with_its_public_key_and_other_algorithms() -> None:
    """RS256 is pinned: HS256 keyed with the RSA public PEM, PS256, RS512 and none all fail."""
    rsa_signing = load_signing_key(pem(RSA_KEY))
    tokens = service(rsa_signing)
    kid = rsa_signing.kid
    forged = [
        hs256_with_public_key(claims(), public_pem(RSA_KEY), kid),
        sign(claims(), RSA_KEY, kid, algorithm="PS256"),
        sign(claims(), RSA_KEY, kid, algorithm="RS512"),
        unsigned(claims(), kid),
    ]
    for token in forged:
        with pytest.raises(InvalidToken, match="not accepted"):
            tokens.verify_access(token)
    assert tokens.verify_access(sign(claims(), RSA_KEY, kid, algorithm="RS256")).subject
