"""Caller authentication decisions, counted by the gateway and scraped by a real Prometheus.

A gateway with ``clients.auth: basic`` in front of the token-auth registry answers pulls with
good, wrong and missing credentials; Prometheus then holds exactly those decisions in
``registry_gateway_client_auth_total`` (and the matching request counts).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.components import client, images
from tests.components.registry import Registry, htpasswd_line
from tests.gateway_process import GatewayProcess
from tests.ops.prometheus import Prometheus

GRANTED, INVALID, ANONYMOUS = 3, 2, 1


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


@pytest.fixture(scope="module")
def scraped(
    tmp_path_factory: pytest.TempPathFactory,
    registry_token: Registry,
    ops_image: images.PushedImage,
) -> Iterator[Prometheus]:
    """Known caller decisions made, then a Prometheus that has scraped them."""
    workdir: Path = tmp_path_factory.mktemp("client-auth")
    (workdir / "htpasswd").write_text(htpasswd_line("carol", "carol-ops-password"))
    config = {
        "routing": {"default": registry_token.host},
        "upstreams": {
            registry_token.host: {
                "url": registry_token.url,
                "credentials": {
                    "username": registry_token.username,
                    "password_env": "OPS_REGISTRY_PASSWORD",
                },
            }
        },
        "clients": {"auth": "basic", "htpasswd": str(workdir / "htpasswd")},
    }
    env = {"OPS_REGISTRY_PASSWORD": registry_token.password}
    manifest = f"/v2/{ops_image.repo}/manifests/{ops_image.tag}"
    headers = {"Accept": client.MANIFEST_ACCEPT}
    with GatewayProcess.start(workdir / "gateway", config, env=env) as gateway:
        url = f"{gateway.url}{manifest}"
        for _ in range(GRANTED):
            reply = client.send(url, headers=headers, auth=basic("carol", "carol-ops-password"))
            assert reply.status == 200, reply.body
        for _ in range(INVALID):
            assert client.send(url, headers=headers, auth=basic("carol", "wrong")).status == 401
        for _ in range(ANONYMOUS):
            assert client.send(url, headers=headers).status == 401
        with Prometheus.start(workdir / "prometheus", [gateway.host]) as prometheus:
            prometheus.wait_for_next_scrape()
            yield prometheus


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('registry_gateway_client_auth_total{method="basic",result="granted"}', GRANTED),
        ('registry_gateway_client_auth_total{method="basic",result="invalid"}', INVALID),
        ('registry_gateway_client_auth_total{method="basic",result="denied"}', ANONYMOUS),
        (
            'registry_gateway_requests_total{route="manifest",method="GET",code="401"}',
            INVALID + ANONYMOUS,
        ),
        ('registry_gateway_requests_total{route="manifest",method="GET",code="200"}', GRANTED),
    ],
)
def test_client_auth_decisions_are_scraped_exactly(
    scraped: Prometheus, expr: str, expected: int
) -> None:
    """Each decision made is one increment of the matching series, as Prometheus stored it."""
    assert scraped.value(expr) == expected
