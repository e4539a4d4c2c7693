"""gateway.routes: the URL table splits a /v2/ path into endpoint, name and argument."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from gateway.handlers import base
from gateway.routes import add_routes
from gateway.settings import load_settings


def table() -> web.Application:
    app = web.Application()
    add_routes(app, load_settings(None, environ={}))
    return app


async def resolve(app: web.Application, path: str) -> tuple[str | None, dict[str, str]]:
    match = await app.router.resolve(make_mocked_request("GET", path, app=app))
    return match.route.name, {k: v for k, v in match.items() if k != "tail"}


@pytest.mark.parametrize(
    ("path", "route", "parts"),
    [
        ("/v2/", "base", {}),
        ("/v2/library/alpine/manifests/latest", "manifest",
         {"name": "library/alpine", "reference": "latest"}),
        ("/v2/a/b/c/blobs/sha256:abc", "blob", {"name": "a/b/c", "digest": "sha256:abc"}),
        ("/v2/a/tags/list", "tags", {"name": "a"}),
        ("/v2/a/referrers/sha256:abc", "referrers", {"name": "a", "digest": "sha256:abc"}),
        # a repository may itself be called "manifests": the last segment decides
        ("/v2/x/manifests/manifests/v1", "manifest", {"name": "x/manifests", "reference": "v1"}),
        ("/v2/gcr.io/google-containers/pause/manifests/3.9", "manifest",
         {"name": "gcr.io/google-containers/pause", "reference": "3.9"}),
    ],
)  # fmt: skip
async def test_endpoint_name_and_argument(path: str, route: str, parts: dict[str, str]) -> None:
    """Endpoint, name and argument come out of the path after /v2/."""
    assert await resolve(table(), path) == (route, parts)


@pytest.mark.parametrize(
    "path", ["/v2/a/blobs/uploads/123", "/v2/a", "/v2/a/tags/list/", "/v2/_catalog"]
)
async def test_other_v2_paths_reach_the_envelope_handler(path: str) -> None:
    """Upload paths, junk and the catalog fall to the handler answering with an OCI error."""
    app = table()
    match = await app.router.resolve(make_mocked_request("GET", path, app=app))
    assert match.handler is base.unknown


async def test_routes_reverse_into_paths() -> None:
    """A named route builds the gateway path back from name and argument."""
    app = table()
    url = app.router["manifest"].url_for(name="docker.io/library/alpine", reference="3.20")
    assert str(url) == "/v2/docker.io/library/alpine/manifests/3.20"
