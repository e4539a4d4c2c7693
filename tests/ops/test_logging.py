"""Logs of a real gateway process: JSON lines, the request id on every line of a request
(library lines included), and not one of the secrets the test hands it or sends through it.

The gateway pulls from the token-auth registry with a static password and from the Basic-auth
registry with a password kept in OpenBao, logging in with AppRole (a secret id); callers send
Basic and Bearer credentials of their own. Logging is at debug level, so hvac's HTTP library
(urllib3) logs every Vault call.
"""

from __future__ import annotations

import base64
import http.client
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.components import client, images
from tests.components.openbao import OpenBao
from tests.components.registry import Registry
from tests.gateway_process import GatewayProcess

APPROLE_MOUNT = "approle-ops-logging"
VAULT_PATH = "ops/logging"
CALLER_JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiJjYWxsZXIiLCJzY29wZSI6InB1bGwifQ."
    "bG9nZ2luZy10ZXN0LXNpZ25hdHVyZS12YWx1ZQ"
)
VAULT_TOKEN = re.compile(r"\b(?:hvs|s|hvb|b)\.[A-Za-z0-9]{20,}")
# Lines logged outside any request: start-up and shutdown, Vault's background login (with its
# HTTP library), the event loop's own start-up line, the cache's start-up and maintenance.
LIFECYCLE_LOGGERS = {"gateway", "gateway.credentials.vault", "asyncio", "gateway.cache.service"}
LIBRARY_LOGGER_PREFIXES = ("urllib3.", "hvac.")


@dataclass
class Logged:
    gateway: GatewayProcess
    secrets: list[str]
    replies: dict[str, client.Response]


def basic(username: str, password: str) -> str:
    return base64.b64encode(f"{username}:{password}".encode()).decode()


def approle_credentials(openbao: OpenBao) -> tuple[str, str]:
    """An AppRole (own mount) that may read secret/ops/*: its role id and a fresh secret id."""
    vault = openbao.client()
    if f"{APPROLE_MOUNT}/" not in vault.sys.list_auth_methods():
        vault.sys.enable_auth_method("approle", path=APPROLE_MOUNT)
    vault.sys.create_or_update_policy(
        "ops-logging", 'path "secret/data/ops/*" { capabilities = ["read"] }'
    )
    vault.auth.approle.create_or_update_approle(
        "ops-logging", token_policies=["ops-logging"], mount_point=APPROLE_MOUNT
    )
    role_id = vault.auth.approle.read_role_id("ops-logging", mount_point=APPROLE_MOUNT)
    secret_id = vault.auth.approle.generate_secret_id("ops-logging", mount_point=APPROLE_MOUNT)
    return role_id["data"]["role_id"], secret_id["data"]["secret_id"]


def get(gateway: GatewayProcess, path: str, headers: dict[str, str]) -> client.Response:
    return client.send(f"{gateway.url}{path}", headers=headers)


@pytest.fixture(scope="module")
def logged(
    tmp_path_factory: pytest.TempPathFactory,
    registry_token: Registry,
    registry_htpasswd: Registry,
    openbao: OpenBao,
    ops_image: images.PushedImage,
    ops_image_htpasswd: images.PushedImage,
) -> Iterator[Logged]:
    """A debug-level gateway that served pulls carrying known secrets and request ids."""
    workdir = tmp_path_factory.mktemp("logging")
    role_id, secret_id = approle_credentials(openbao)
    (workdir / "role-id").write_text(role_id)
    assert registry_htpasswd.credentials is not None
    htpasswd_user, htpasswd_password = registry_htpasswd.credentials
    openbao.client().secrets.kv.v2.create_or_update_secret(
        path=VAULT_PATH,
        secret={"username": htpasswd_user, "password": htpasswd_password},
        mount_point="secret",
    )
    config = {
        "log": {"format": "json", "level": "debug"},
        "routing": {"default": registry_token.host},
        "upstreams": {
            registry_token.host: {
                "url": registry_token.url,
                "credentials": {
                    "username": registry_token.username,
                    "password_env": "OPS_REGISTRY_PASSWORD",
                },
            },
            registry_htpasswd.host: {
                "url": registry_htpasswd.url,
                "credentials": {"vault": {"path": VAULT_PATH}},
            },
        },
        "vault": {
            "url": openbao.url,
            "auth": {
                "method": "approle",
                "role_id_file": str(workdir / "role-id"),
                "secret_id_env": "OPS_SECRET_ID",
                "mount": APPROLE_MOUNT,
            },
        },
    }
    env = {"OPS_REGISTRY_PASSWORD": registry_token.password, "OPS_SECRET_ID": secret_id}
    caller_password = secrets.token_urlsafe(16)
    manifest = f"/v2/{ops_image.repo}/manifests/{ops_image.tag}"
    accept = client.MANIFEST_ACCEPT
    with GatewayProcess.start(workdir / "gateway", config, env=env) as gateway:
        replies = {
            "named": get(gateway, manifest, {"Accept": accept, "X-Request-ID": "ops-log-named"}),
            "unnamed": get(gateway, manifest, {"Accept": accept}),
            "too-long": get(gateway, "/v2/", {"X-Request-ID": "x" * 129}),
            "basic-caller": get(
                gateway,
                f"/v2/{ops_image.repo}/blobs/{ops_image.blob_digests[0]}",
                {
                    "X-Request-ID": "ops-log-basic",
                    "Authorization": f"Basic {basic('caller', caller_password)}",
                },
            ),
            "bearer-caller": get(
                gateway,
                f"{manifest}?token={caller_password}",
                {
                    "Accept": accept,
                    "X-Request-ID": "ops-log-bearer",
                    "Authorization": f"Bearer {CALLER_JWT}",
                },
            ),
            "jwt-as-id": get(gateway, "/v2/", {"X-Request-ID": CALLER_JWT}),
            "vaulted": get(
                gateway,
                f"{manifest}?ns={registry_htpasswd.host}",
                {"Accept": accept, "X-Request-ID": "ops-log-vault"},
            ),
            "missing": get(
                gateway, f"/v2/{ops_image.repo}/manifests/nope", {"X-Request-ID": "ops-log-404"}
            ),
        }
        for name in ("named", "unnamed", "basic-caller", "bearer-caller", "vaulted"):
            assert replies[name].status == 200, (name, replies[name].body)
        yield Logged(
            gateway,
            secrets=[
                registry_token.password,
                basic(registry_token.username, registry_token.password),
                htpasswd_password,
                basic(htpasswd_user, htpasswd_password),
                secret_id,
                role_id,
                caller_password,
                basic("caller", caller_password),
                CALLER_JWT,
            ],
            replies=replies,
        )


def lines_of(logged: Logged, request_id: str) -> list[dict[str, Any]]:
    return [line for line in logged.gateway.log_lines() if line.get("request_id") == request_id]


def test_every_line_is_json_with_level_time_and_event(logged: Logged) -> None:
    """Each log line parses as JSON and names its level, logger, timestamp and event."""
    lines = logged.gateway.log_lines()
    assert len(lines) > 10
    for line in lines:
        assert {"level", "logger", "timestamp", "event"} <= set(line), line


def test_a_sane_request_id_is_echoed_and_logged(logged: Logged) -> None:
    """The caller's X-Request-ID comes back on the response and on its canonical line."""
    assert logged.replies["named"].headers["X-Request-ID"] == "ops-log-named"
    [line] = [
        line for line in lines_of(logged, "ops-log-named") if line["event"] == "request_completed"
    ]
    assert (line["route"], line["status"], line["method"]) == ("manifest", 200, "GET")
    assert line["bytes"] == len(logged.replies["named"].body)
    assert line["upstream"] and line["name"] and line["duration_ms"] > 0
    assert line["upstream_auth"] in {"fetched", "cached"}


def test_a_missing_request_id_is_generated(logged: Logged) -> None:
    """Without X-Request-ID the gateway makes one, returns it and logs it."""
    generated = logged.replies["unnamed"].headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert [line["event"] for line in lines_of(logged, generated)] == ["request_completed"]


def test_an_overlong_request_id_is_replaced(logged: Logged) -> None:
    """An X-Request-ID over 128 characters is not trusted: a fresh id replaces it."""
    replaced = logged.replies["too-long"].headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", replaced)
    assert "x" * 129 not in logged.gateway.log_text()
    assert lines_of(logged, replaced)


def test_a_non_ascii_request_id_is_replaced(logged: Logged) -> None:
    """A request id with non-ASCII bytes is replaced, not echoed."""
    connection = http.client.HTTPConnection("127.0.0.1", logged.gateway.port, timeout=10)
    try:
        connection.putrequest("GET", "/v2/")
        connection.putheader("X-Request-ID", b"caf\xe9-\xff")
        connection.endheaders()
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])


def test_error_responses_carry_the_request_id(logged: Logged) -> None:
    """A 404 relayed from the upstream still carries and logs the caller's id."""
    assert logged.replies["missing"].status == 404
    assert logged.replies["missing"].headers["X-Request-ID"] == "ops-log-404"
    [line] = lines_of(logged, "ops-log-404")
    assert line["status"] == 404


def test_library_lines_carry_the_request_id(logged: Logged) -> None:
    """hvac's HTTP library logs the Vault read under the request id of the pull that caused it."""
    lines = lines_of(logged, "ops-log-vault")
    library = [line for line in lines if not line["logger"].startswith("gateway")]
    assert any(
        line["logger"].startswith("urllib3") and "secret/data/ops/logging" in line["event"]
        for line in library
    ), lines
    assert lines[-1]["event"] == "request_completed"


def test_gateway_debug_lines_carry_the_request_id(logged: Logged) -> None:
    """The first pull's token fetch is logged under that request's id."""
    events = [line["event"] for line in lines_of(logged, "ops-log-named")]
    assert "token_fetched" in events
    assert events[-1] == "request_completed"


def test_lines_outside_requests_are_lifecycle_only(logged: Logged) -> None:
    """Every line without a request id comes from start-up, Vault's login loop or shutdown."""
    for line in logged.gateway.log_lines():
        if "request_id" not in line:
            logger = line["logger"]
            assert logger in LIFECYCLE_LOGGERS or logger.startswith(LIBRARY_LOGGER_PREFIXES), line


def test_no_secret_reaches_the_log(logged: Logged) -> None:
    """Passwords, secret ids, Basic credentials, caller JWTs and Vault tokens never appear."""
    text = logged.gateway.log_text()
    for secret in logged.secrets:
        assert secret not in text, f"secret {secret[:4]}... in the log"
    assert "eyJ" not in text, "a JWT (caller's or an upstream token) was logged"
    assert not VAULT_TOKEN.search(text), "a Vault token was logged"


def test_a_jwt_sent_as_request_id_is_echoed_but_not_logged(logged: Logged) -> None:
    """A credential-looking request id goes back to its sender only; the log redacts it."""
    assert logged.replies["jwt-as-id"].headers["X-Request-ID"] == CALLER_JWT
    assert CALLER_JWT not in logged.gateway.log_text()


def test_console_format_is_human_readable(tmp_path: Path) -> None:
    """log.format console writes key=value lines, with the request id, instead of JSON."""
    config = {
        "log": {"format": "console", "level": "info"},
        "upstreams": {"docker.io": {"url": "https://registry-1.docker.io"}},
    }
    with GatewayProcess.start(tmp_path, config) as gateway:
        client.send(f"{gateway.url}/v2/", headers={"X-Request-ID": "ops-console-1"})
        text = gateway.log_text()
    [line] = [line for line in text.splitlines() if "request_id=ops-console-1" in line]
    assert not line.lstrip().startswith("{")
    assert "request_completed" in line
    assert "status=200" in line
