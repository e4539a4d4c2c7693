"""Configuring the real OpenBao for a test: secrets, the gateway policy, auth methods, keys.

Everything goes through OpenBao's HTTP API with the root token (``client.adapter.post``), the
way an operator's ``bao write`` would. The gateway's own policy is the shipped
``config/vault/gateway-policy.hcl``, so the tests prove that file is enough.
"""

from __future__ import annotations

import datetime
import time
import uuid
from pathlib import Path
from typing import Any

import hvac  # type: ignore[import-untyped]
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REPO_ROOT = Path(__file__).resolve().parents[2]
GATEWAY_POLICY_FILE = REPO_ROOT / "config" / "vault" / "gateway-policy.hcl"
GATEWAY_POLICY = "registry-gateway"
SECRET_PREFIX = "registries"
JWT_AUDIENCE = "registry-gateway"


def unique_path(label: str) -> str:
    """A secret path no other test uses, under the prefix the gateway policy may read."""
    return f"{SECRET_PREFIX}/{label}-{uuid.uuid4().hex[:8]}"


def write_secret(
    client: hvac.Client, path: str, data: dict[str, Any], *, mount: str = "secret", version: int = 2
) -> None:
    if version == 2:
        client.adapter.post(f"/v1/{mount}/data/{path}", json={"data": data})
    else:
        client.adapter.post(f"/v1/{mount}/{path}", json=data)


def enable_once(client: hvac.Client, kind: str, path: str, **body: Any) -> None:
    """Enable an auth method (``auth/...``) or secrets engine at `path` unless it exists."""
    table = client.adapter.get("/v1/sys/auth" if kind == "auth" else "/v1/sys/mounts")["data"]
    if f"{path}/" not in table:
        client.adapter.post(f"/v1/sys/{kind}/{path}", json=body)


def enable_kv_v1(client: hvac.Client, mount: str = "kv") -> None:
    enable_once(client, "mounts", mount, type="kv", options={"version": "1"})


def load_gateway_policy(client: hvac.Client) -> str:
    """Install config/vault/gateway-policy.hcl under the name roles below attach."""
    client.adapter.put(
        f"/v1/sys/policies/acl/{GATEWAY_POLICY}",
        json={"policy": GATEWAY_POLICY_FILE.read_text()},
    )
    return GATEWAY_POLICY


def token_params(**params: Any) -> dict[str, Any]:
    """Role token settings: the gateway policy only, no `default` policy to lean on."""
    return {"token_policies": [GATEWAY_POLICY], "token_no_default_policy": True, **params}


def create_approle(client: hvac.Client, role: str, **params: Any) -> tuple[str, str]:
    """An AppRole role with the gateway policy; returns (role_id, secret_id)."""
    enable_once(client, "auth", "approle", type="approle")
    load_gateway_policy(client)
    client.adapter.post(f"/v1/auth/approle/role/{role}", json=token_params(**params))
    role_id = client.adapter.get(f"/v1/auth/approle/role/{role}/role-id")["data"]["role_id"]
    secret_id = client.adapter.post(f"/v1/auth/approle/role/{role}/secret-id")["data"]["secret_id"]
    return role_id, secret_id


def create_token(client: hvac.Client, **params: Any) -> str:
    """A token carrying the gateway policy (and nothing else)."""
    load_gateway_policy(client)
    body = {"policies": [GATEWAY_POLICY], "no_default_policy": True, **params}
    token: str = client.adapter.post("/v1/auth/token/create", json=body)["auth"]["client_token"]
    return token


def signing_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def self_signed_ca(key: ec.EllipticCurvePrivateKey) -> str:
    """A CA certificate PEM; OpenBao's kubernetes config insists on one."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-kubernetes-ca")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def sign_jwt(key: ec.EllipticCurvePrivateKey, claims: dict[str, Any], ttl: int = 600) -> str:
    now = int(time.time())
    claims = {"iat": now, "nbf": now - 5, "exp": now + ttl, "jti": uuid.uuid4().hex, **claims}
    return jwt.encode(claims, key, "ES256")


def configure_jwt(client: hvac.Client, key: ec.EllipticCurvePrivateKey, role: str) -> None:
    """OpenBao's jwt method trusting `key`, with a role bound to our audience."""
    enable_once(client, "auth", "jwt", type="jwt")
    load_gateway_policy(client)
    client.adapter.post("/v1/auth/jwt/config", json={"jwt_validation_pubkeys": [public_pem(key)]})
    client.adapter.post(
        f"/v1/auth/jwt/role/{role}",
        json=token_params(
            role_type="jwt", user_claim="sub", bound_audiences=[JWT_AUDIENCE], token_ttl="60s"
        ),
    )


def service_account_jwt(
    key: ec.EllipticCurvePrivateKey, namespace: str, name: str, uid: str
) -> str:
    """A service-account token shaped like the ones the kubelet projects into a pod."""
    return sign_jwt(
        key,
        {
            "iss": "kubernetes/serviceaccount",
            "sub": f"system:serviceaccount:{namespace}:{name}",
            "kubernetes.io/serviceaccount/namespace": namespace,
            "kubernetes.io/serviceaccount/service-account.name": name,
            "kubernetes.io/serviceaccount/service-account.uid": uid,
        },
    )


def configure_kubernetes(
    client: hvac.Client, host: str, ca_pem: str, role: str, namespace: str, name: str, **params: Any
) -> None:
    """OpenBao's kubernetes method asking `host` for TokenReviews (no in-cluster CA or JWT)."""
    enable_once(client, "auth", "kubernetes", type="kubernetes")
    load_gateway_policy(client)
    client.adapter.post(
        "/v1/auth/kubernetes/config",
        json={"kubernetes_host": host, "kubernetes_ca_cert": ca_pem, "disable_local_ca_jwt": True},
    )
    client.adapter.post(
        f"/v1/auth/kubernetes/role/{role}",
        json=token_params(
            bound_service_account_names=[name],
            bound_service_account_namespaces=[namespace],
            **params,
        ),
    )
