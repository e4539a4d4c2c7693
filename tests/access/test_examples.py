"""The shipped examples: config/auth/*.yaml load, the demo htpasswd and pull secret agree."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import bcrypt
import pytest
import yaml

from gateway.access.htpasswd import read_htpasswd
from gateway.settings import load_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
AUTH = REPO_ROOT / "config" / "auth"
DEMO = re.compile(r"(\S+) / (\S+)")


def demo_passwords() -> dict[str, str]:
    """user → password, from the comment at the top of config/auth/htpasswd."""
    header = (AUTH / "htpasswd").read_text().splitlines()[1]
    return dict(DEMO.findall(header))


@pytest.mark.parametrize("name", ["basic.yaml", "token.yaml", "tenants.yaml"])
def test_auth_examples_load(name: str) -> None:
    """Each example passes the same validation as `registry-gateway check-config`."""
    settings = load_settings(AUTH / name, {"VAULT_TOKEN": "stand-in"})
    assert settings.clients.auth in ("basic", "token")
    assert settings.clients.htpasswd == AUTH / "htpasswd"


def test_demo_htpasswd_holds_the_documented_passwords() -> None:
    """Every demo user verifies with the password its comment gives (bcrypt entries)."""
    entries = read_htpasswd(AUTH / "htpasswd")
    passwords = demo_passwords()
    assert set(entries) == set(passwords)
    for user, password in passwords.items():
        assert bcrypt.checkpw(password.encode(), entries[user]), user


def test_kubernetes_pull_secret_names_the_gateway_and_a_demo_user() -> None:
    """The dockerconfigjson's auth is base64(user:password) of a demo user, and the pod's image
    is on the registry the secret is for."""
    secret, deployment = yaml.safe_load_all(
        (REPO_ROOT / "config" / "kubernetes" / "image-pull-secret.yaml").read_text()
    )
    auths = json.loads(secret["stringData"][".dockerconfigjson"])["auths"]
    [(registry, entry)] = auths.items()
    user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
    assert (entry["username"], entry["password"]) == (user, password)
    assert demo_passwords()[user] == password
    pod = deployment["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": secret["metadata"]["name"]}]
    assert pod["containers"][0]["image"].startswith(f"{registry}/")
