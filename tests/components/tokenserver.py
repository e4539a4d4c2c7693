"""A countable Docker token server (distribution's `auth.token` realm) for tests.

Run as `python -m tests.components.tokenserver --port P --key K --cert C --issuer I --service S
--htpasswd-user U --htpasswd-password PW --count-file F`.

GET /token requires HTTP Basic auth for the one configured user (401 otherwise), reads the
repeated `scope` parameters and answers `{"token", "access_token", "expires_in": 300,
"issued_at"}` with an ES256 JWT whose `x5c` header carries the signing certificate, so
distribution verifies it against its `rootcertbundle` (PROTOCOL.md 2.5: x5c works for both
v2.8 and v3, `kid` formats differ). The user gets every action it asks for. Each issued token
appends one line to the count file; GET /count answers that number, so tests can assert how
often a client fetched a token. POST /token is not routed: aiohttp answers 405 and containerd
then falls back to GET (PROTOCOL.md 2.4).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime as dt
import hmac
import json
import logging
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

TOKEN_LIFETIME = 300


@dataclass(frozen=True)
class TokenServerSettings:
    issuer: str
    service: str
    username: str
    password: str
    private_key_pem: bytes
    cert_der: bytes
    count_file: Path


@dataclass(frozen=True)
class AccessEntry:
    type: str
    name: str
    actions: tuple[str, ...]

    def as_claim(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "actions": list(self.actions)}


SETTINGS_KEY = web.AppKey("settings", TokenServerSettings)


def write_signing_identity(directory: Path, common_name: str) -> tuple[Path, Path]:
    """Write a fresh P-256 key and a self-signed cert for it; return (key_path, cert_path).

    The cert PEM doubles as the registry's `rootcertbundle`.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # Backdated a little so a registry with a slightly different clock accepts it.
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path = directory / "token-signing.key"
    cert_path = directory / "token-signing.crt"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def parse_scopes(values: Iterable[str]) -> list[AccessEntry]:
    """Parse repeated (and space-joined) `scope` values: type from the left, actions from the
    right, because a repository name may hold a `host:port` (PROTOCOL.md 2.1)."""
    entries: list[AccessEntry] = []
    for value in values:
        for scope in value.split():
            kind, sep, rest = scope.partition(":")
            name, sep2, actions = rest.rpartition(":")
            if not (sep and sep2 and kind and name):
                raise ValueError(f"malformed scope {scope!r}")
            entries.append(AccessEntry(kind, name, tuple(a for a in actions.split(",") if a)))
    return entries


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    if header is None or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def is_authorized(settings: TokenServerSettings, header: str | None) -> bool:
    creds = basic_credentials(header)
    if creds is None:
        return False
    user_ok = hmac.compare_digest(creds[0].encode(), settings.username.encode())
    password_ok = hmac.compare_digest(creds[1].encode(), settings.password.encode())
    return user_ok and password_ok


def issue_token(
    settings: TokenServerSettings, access: Sequence[AccessEntry], now: dt.datetime
) -> tuple[str, str]:
    """Sign a JWT for `access`; return (token, jti)."""
    issued = int(now.timestamp())
    jti = secrets.token_urlsafe(16)
    claims = {
        "iss": settings.issuer,
        "sub": settings.username,
        "aud": settings.service,
        "exp": issued + TOKEN_LIFETIME,
        "nbf": issued,
        "iat": issued,
        "jti": jti,
        "access": [entry.as_claim() for entry in access],
    }
    headers = {"x5c": [base64.b64encode(settings.cert_der).decode()]}
    token = jwt.encode(claims, settings.private_key_pem, algorithm="ES256", headers=headers)
    return token, jti


def record_issue(count_file: Path, jti: str, access: Sequence[AccessEntry]) -> None:
    scopes = " ".join(f"{a.type}:{a.name}:{','.join(a.actions)}" for a in access)
    with count_file.open("a") as handle:
        handle.write(f"{jti} {scopes}\n")


def issued_count(count_file: Path) -> int:
    try:
        return len(count_file.read_text().splitlines())
    except FileNotFoundError:
        return 0


async def handle_token(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS_KEY]
    if not is_authorized(settings, request.headers.get("Authorization")):
        return web.json_response(
            {"details": "invalid username or password"},
            status=401,
            headers={"WWW-Authenticate": 'Basic realm="tokenserver"'},
        )
    try:
        access = parse_scopes(request.query.getall("scope", []))
    except ValueError as exc:
        return web.json_response({"details": str(exc)}, status=400)
    now = dt.datetime.now(dt.UTC)
    token, jti = issue_token(settings, access, now)
    record_issue(settings.count_file, jti, access)
    return web.json_response(
        {
            "token": token,
            "access_token": token,
            "expires_in": TOKEN_LIFETIME,
            "issued_at": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
        }
    )


async def handle_count(request: web.Request) -> web.Response:
    return web.Response(text=str(issued_count(request.app[SETTINGS_KEY].count_file)))


def create_app(settings: TokenServerSettings) -> web.Application:
    app = web.Application()
    app[SETTINGS_KEY] = settings
    app.router.add_get("/token", handle_token)
    app.router.add_get("/count", handle_count)
    return app


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--service", required=True)
    parser.add_argument("--htpasswd-user", required=True)
    parser.add_argument("--htpasswd-password", required=True)
    parser.add_argument("--count-file", type=Path, required=True)
    return parser.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> TokenServerSettings:
    cert = x509.load_pem_x509_certificate(args.cert.read_bytes())
    return TokenServerSettings(
        issuer=args.issuer,
        service=args.service,
        username=args.htpasswd_user,
        password=args.htpasswd_password,
        private_key_pem=args.key.read_bytes(),
        cert_der=cert.public_bytes(serialization.Encoding.DER),
        count_file=args.count_file,
    )


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    settings = settings_from_args(args)
    # aiohttp's access log goes to the log file: tests read it to see which requests came in.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    print(json.dumps({"event": "tokenserver_starting", "port": args.port}), flush=True)
    web.run_app(create_app(settings), host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
