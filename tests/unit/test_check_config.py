"""check-config: every problem at once, in file order, typo hints, a structure-only mode."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.settings import ConfigError, load_settings

REPO_ROOT = Path(__file__).resolve().parents[2]

BROKEN = """\
listen: "0.0.0.0:5000"
lisen: oops
routing:
  default: quay.io
upstreams:
  gcr.io:
    url: https://gcr.io
    redirect: pass
    credentials: {username: robot, password_env: GCR_PASSWORD}
  ghcr.io:
    url: ftp://ghcr.io
    tls_verfy: false
clients:
  auth: basic
  htpasswd: /nonexistent/htpasswd
timeouts: {conect: 3}
"""

EXPECTED = [
    "lisen: unknown key (did you mean 'listen'?)",
    "routing.default: 'quay.io' is not a configured upstream (configured: gcr.io, ghcr.io)",
    "upstreams.gcr.io.redirect: unknown key (did you mean 'redirects'?)",
    "upstreams.gcr.io.credentials.password_env: environment variable GCR_PASSWORD is not set",
    "upstreams.ghcr.io.url: not an http(s) URL",
    "upstreams.ghcr.io.tls_verfy: unknown key (did you mean 'tls_verify'?)",
    "clients.htpasswd: file not found: /nonexistent/htpasswd",
    "timeouts.conect: unknown key (did you mean 'connect'?)",
]


def problems_of(text: str, tmp_path: Path, **kwargs: bool) -> list[str]:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={}, **kwargs)
    return caught.value.problems


def check_config(tmp_path: Path, text: str, *flags: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", *flags, str(path)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT)},
        check=False,
    )


def test_every_problem_at_once_in_file_order_with_hints(tmp_path: Path) -> None:
    """A bad default shows alongside upstream errors; unknown keys suggest the near key."""
    assert problems_of(BROKEN, tmp_path) == EXPECTED


def test_unknown_keys_come_in_file_order(tmp_path: Path) -> None:
    """A nested unknown key above a top-level one is reported first, as it is read."""
    text = "upstreams:\n  docker.io: {url: https://r.example, colour: red}\nzebra: 1\nalpha: 2\n"
    assert problems_of(text, tmp_path) == [
        "upstreams.docker.io.colour: unknown key",
        "zebra: unknown key",
        "alpha: unknown key",
    ]


def test_default_naming_a_broken_upstream_is_not_reported_twice(tmp_path: Path) -> None:
    """routing.default naming an upstream whose own entry is broken: only that entry's problem."""
    text = "routing: {default: gcr.io}\nupstreams:\n  gcr.io: {url: ftp://gcr.io}\n"
    assert problems_of(text, tmp_path) == ["upstreams.gcr.io.url: not an http(s) URL"]


def test_structure_only_skips_env_and_files_and_says_so(tmp_path: Path) -> None:
    """--structure-only: absent env vars and files pass, each listed as not checked."""
    text = BROKEN.replace("lisen: oops\n", "")
    result = check_config(tmp_path, text, "--structure-only")
    assert result.returncode == 2
    assert "GCR_PASSWORD" not in result.stderr and "htpasswd" not in result.stderr
    assert "routing.default: 'quay.io' is not a configured upstream" in result.stderr
    assert result.stdout.splitlines() == [
        "not checked: environment variable GCR_PASSWORD"
        " (upstreams.gcr.io.credentials.password_env)",
        "not checked: file /nonexistent/htpasswd (clients.htpasswd)",
    ]

    good = "upstreams:\n  docker.io: {url: https://r.example, credentials: {token_file: /no/t}}\n"
    result = check_config(tmp_path, good, "--structure-only")
    assert result.returncode == 0, result.stderr
    first, *rest = result.stdout.splitlines()
    assert first.startswith("ok (structure only): ")
    assert rest == ["not checked: file /no/t (upstreams.docker.io.credentials.token_file)"]
    assert check_config(tmp_path, good).returncode == 2  # the full check still looks


def test_omitted_routing_without_docker_hub_says_what_the_default_became(tmp_path: Path) -> None:
    """No routing and no docker.io upstream: check-config notes there is no default."""
    result = check_config(tmp_path, "upstreams:\n  gcr.io: {url: https://gcr.io}\n")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "default (none)" in lines[0]
    assert lines[1].startswith("note: routing.default: not set and no docker.io upstream")
    assert "404 NAME_UNKNOWN" in lines[1]
    result = check_config(tmp_path, "upstreams:\n  docker.io: {url: https://r.example}\n")
    assert result.stdout.splitlines()[1:] == []
