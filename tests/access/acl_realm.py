"""A token realm whose users see different repositories, in front of a real docker-registry.

The components' token server has one user who may do everything. Two tenants whose upstream
accounts see different repositories need a realm with per-user rights, which no packaged
component offers, so this one reuses that server's signing (ES256 with ``x5c``, verified by
distribution against its ``rootcertbundle``) and adds a users file:
``{"robot-a": {"password": "...", "repositories": ["team-a/*", "shared/*"]}}``. A scope is
granted only for names matching the user's globs (fnmatch); the rest is dropped, as a real
token server drops what a user may not do. Every issue is logged as one JSON line
(user, requested scopes, granted scopes) to ``--log``.

``AclUpstream.start(workdir, users)`` runs this realm and a docker-registry using it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fnmatch
import hmac
import json
import secrets
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from tests.components.ports import LOOPBACK, free_port, wait_for_http
from tests.components.process import ManagedProcess, Stoppable, require_binary
from tests.components.registry import Registry, registry_config, registry_env, repo_root
from tests.components.tokenserver import (
    TOKEN_LIFETIME,
    AccessEntry,
    TokenServerSettings,
    basic_credentials,
    issue_token,
    parse_scopes,
    settings_from_args,
    write_signing_identity,
)

ISSUER = "acl-realm"
SERVICE = "acl-registry"
PUSHER = "pusher"
USERS_KEY = web.AppKey("users", dict)
SIGNING_KEY = web.AppKey("signing", TokenServerSettings)
LOG_KEY = web.AppKey("log", Path)


def allowed(user: Mapping[str, Any], entry: AccessEntry) -> AccessEntry | None:
    if entry.type != "repository":
        return None
    if any(fnmatch.fnmatchcase(entry.name, glob) for glob in user["repositories"]):
        return entry
    return None


async def handle_token(request: web.Request) -> web.Response:
    users: dict[str, Any] = request.app[USERS_KEY]
    creds = basic_credentials(request.headers.get("Authorization"))
    user = users.get(creds[0]) if creds else None
    if creds is None or user is None or not hmac.compare_digest(creds[1], user["password"]):
        return web.json_response({"details": "invalid username or password"}, status=401)
    requested = parse_scopes(request.query.getall("scope", []))
    granted = [a for a in (allowed(user, e) for e in requested) if a is not None]
    settings = replace(request.app[SIGNING_KEY], username=creds[0])  # sub = the user
    now = dt.datetime.now(dt.UTC)
    token, _ = issue_token(settings, granted, now)
    with request.app[LOG_KEY].open("a") as log:
        line = {
            "user": creds[0],
            "requested": [f"{e.type}:{e.name}:{','.join(e.actions)}" for e in requested],
            "granted": [f"{e.type}:{e.name}:{','.join(e.actions)}" for e in granted],
        }
        log.write(json.dumps(line) + "\n")
    return web.json_response(
        {
            "token": token,
            "access_token": token,
            "expires_in": TOKEN_LIFETIME,
            "issued_at": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
        }
    )


async def handle_ready(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in ("--key", "--cert", "--users", "--log"):
        parser.add_argument(flag, type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    # settings_from_args wants the components' flags; the user is set per request.
    args.issuer, args.service, args.count_file = ISSUER, SERVICE, args.log
    args.htpasswd_user = args.htpasswd_password = ""
    app = web.Application()
    app[USERS_KEY] = json.loads(args.users.read_text())
    app[SIGNING_KEY] = settings_from_args(args)
    app[LOG_KEY] = args.log
    app.router.add_get("/token", handle_token)
    app.router.add_get("/ready", handle_ready)
    web.run_app(app, host=LOOPBACK, port=args.port, print=None)


class AclUpstream(Stoppable):
    """A docker-registry in token mode whose realm is this module, run as two processes."""

    def __init__(self, workdir: Path, registry: Registry, processes: list[ManagedProcess]) -> None:
        self.workdir = workdir
        self.registry = registry  # for tests.components.images.push (as the pusher)
        self._processes = processes

    @classmethod
    def start(cls, workdir: Path, users: Mapping[str, Sequence[str]]) -> AclUpstream:
        """``users``: name → repository globs; each gets a random password (``password()``)."""
        workdir.mkdir(parents=True, exist_ok=True)
        key, cert = write_signing_identity(workdir, ISSUER)
        table = {
            name: {"password": secrets.token_urlsafe(12), "repositories": list(globs)}
            for name, globs in {**users, PUSHER: ["*"]}.items()
        }
        (workdir / "users.json").write_text(json.dumps(table))
        realm_port, registry_port = free_port(), free_port()
        processes: list[ManagedProcess] = []
        upstream = cls(workdir, _registry(workdir, registry_port, realm_port, table), processes)
        try:
            realm = ManagedProcess.spawn(
                "acl-realm",
                [sys.executable, "-m", "tests.access.acl_realm", "--port", str(realm_port),
                 "--key", str(key), "--cert", str(cert), "--users", str(workdir / "users.json"),
                 "--log", str(upstream.issues_path)],
                log_path=workdir / "acl-realm.log",
                cwd=repo_root(),
            )  # fmt: skip
            processes.append(realm)
            wait_for_http(f"http://{LOOPBACK}:{realm_port}/ready", timeout=20, alive=realm.alive)
            config = registry_config(
                port=registry_port,
                storage_dir=workdir / "storage",
                auth={"token": {"realm": f"http://{LOOPBACK}:{realm_port}/token",
                                "service": SERVICE, "issuer": ISSUER,
                                "rootcertbundle": str(cert)}},
            )  # fmt: skip
            (workdir / "config.yml").write_text(yaml.safe_dump(config))
            registry = ManagedProcess.spawn(
                "docker-registry",
                [require_binary("docker-registry"), "serve", str(workdir / "config.yml")],
                log_path=workdir / "registry.log",
                cwd=workdir,
                env=registry_env(),
            )
            processes.append(registry)
            wait_for_http(f"{upstream.url}/v2/", timeout=20, alive=registry.alive)
        except BaseException:
            upstream.stop()
            raise
        upstream.passwords = {name: entry["password"] for name, entry in table.items()}
        return upstream

    passwords: dict[str, str]

    @property
    def url(self) -> str:
        return self.registry.url

    @property
    def issues_path(self) -> Path:
        return self.workdir / "issues.jsonl"

    def issues(self) -> list[dict[str, Any]]:
        """Every token issued so far: user, requested and granted scopes."""
        if not self.issues_path.exists():
            return []
        return [json.loads(line) for line in self.issues_path.read_text().splitlines()]

    def stop(self) -> None:
        for process in reversed(self._processes):
            process.stop()


def _registry(workdir: Path, port: int, realm_port: int, table: Mapping[str, Any]) -> Registry:
    registry = Registry(
        workdir=workdir,
        auth="token",
        port=port,
        username=PUSHER,
        password=table[PUSHER]["password"],
        token_issuer=ISSUER,
        token_service=SERVICE,
    )
    registry.token_port = realm_port
    return registry


if __name__ == "__main__":
    main()
