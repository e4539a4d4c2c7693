"""gateway.access.htpasswd: bcrypt-only parsing, errors naming the line, reload on change."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from gateway.access.files import load_files
from gateway.access.htpasswd import Htpasswd, HtpasswdError, parse_htpasswd
from gateway.settings import ConfigError
from tests.access.identities import htpasswd_entry, make_settings, write_htpasswd

BCRYPT_LINE = htpasswd_entry("alice", "wonderland")
UPSTREAMS = {"docker.io": {"url": "https://registry-1.docker.io"}}


def htpasswd_tool(*args: str) -> str:
    """Apache's own htpasswd, as operators create entries."""
    return subprocess.run(
        ["htpasswd", "-n", "-b", *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_parses_bcrypt_entries_skipping_blank_lines_and_comments() -> None:
    """Each user maps to its bcrypt hash; blank lines and # comments are ignored."""
    text = f"# team a\n\n{BCRYPT_LINE}{htpasswd_entry('bob', 'builder')}"
    entries = parse_htpasswd(text)
    assert set(entries) == {"alice", "bob"}
    assert entries["alice"].startswith(b"$2b$04$")


def test_accepts_entries_made_by_htpasswd_dash_b() -> None:
    """`htpasswd -B` writes $2y$ hashes; they are bcrypt and accepted."""
    entries = parse_htpasswd(htpasswd_tool("-B", "carol", "secret"))
    assert entries["carol"].startswith(b"$2y$")


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (htpasswd_tool("-m", "bob", "pw"), "Apache MD5 ($apr1$)"),
        (htpasswd_tool("-s", "bob", "pw"), "SHA-1 ({SHA})"),
        (htpasswd_tool("-d", "bob", "pw"), "crypt or plain text"),
        ("bob:plaintext-password", "crypt or plain text"),
        ("bob:$1$abcdefgh$0123456789012345678901", "MD5-crypt ($1$)"),
        ("bob:$6$salt$hash", "SHA-512-crypt ($6$)"),
        ("bob:$2y$05$tooshort", "malformed bcrypt"),
        ("bob:", "an empty hash"),
        ("bob", "expected user:hash"),
        (":$2y$05$" + "a" * 53, "expected user:hash"),
        (htpasswd_entry("anonymous", "x").strip(), "reserved"),
        (BCRYPT_LINE.strip(), "appears twice"),
    ],
)
def test_rejects_other_hash_types_naming_the_line(line: str, problem: str) -> None:
    """Anything but a well-formed bcrypt entry is refused with its line number."""
    with pytest.raises(HtpasswdError) as caught:
        parse_htpasswd(f"{BCRYPT_LINE}\n{line}\n")
    assert str(caught.value).startswith("line 3: ")
    assert problem in str(caught.value)


def test_non_bcrypt_file_is_a_config_error_naming_the_line(tmp_path: Path) -> None:
    """load-time validation: `clients.htpasswd: <file>: line N: ...` when access loads it."""
    path = tmp_path / "htpasswd"
    path.write_text(BCRYPT_LINE + htpasswd_tool("-m", "bob", "pw") + "\n")
    settings = make_settings(tmp_path, UPSTREAMS, {"auth": "basic", "htpasswd": "htpasswd"})
    with pytest.raises(ConfigError) as caught:
        load_files(settings.clients)
    assert caught.value.problems == [
        f"clients.htpasswd: {path}: line 2: user 'bob' has a Apache MD5 ($apr1$) hash; "
        "only bcrypt is accepted (create entries with htpasswd -B)"
    ]


async def test_refresh_loads_a_rewritten_file(tmp_path: Path) -> None:
    """A changed file (new inode, mtime or size) is re-read; an unchanged one is not."""
    path = write_htpasswd(tmp_path / "htpasswd", {"alice": "a"})
    users = Htpasswd(path)
    assert await users.refresh() is False
    write_htpasswd(path, {"alice": "a2", "bob": "b"})
    assert await users.refresh() is True
    assert "bob" in users and len(users) == 2


async def test_broken_rewrite_keeps_the_previous_users(tmp_path: Path) -> None:
    """A rewrite with a non-bcrypt line is refused at reload; the old users stay."""
    path = write_htpasswd(tmp_path / "htpasswd", {"alice": "a"})
    users = Htpasswd(path)
    before = users.get("alice")
    path.write_text(BCRYPT_LINE.replace("alice", "mallory") + "eve:{SHA}abc\n")
    os.utime(path, ns=(1, 1))
    assert await users.refresh() is False
    assert users.get("alice") == before and "mallory" not in users
