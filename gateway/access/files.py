"""The files caller authentication loads: the htpasswd users and the token signing key.

Settings only record their paths (and that they exist); they are read here, once, when the
gatekeeper is built. A file that is unusable is a :class:`~gateway.settings.ConfigError`
naming the key, as any other config problem: ``serve`` exits 2 before listening, and
``check-config`` reports it too (``check_files``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..settings import ClientsSettings, ConfigError
from .htpasswd import Htpasswd, HtpasswdError
from .signing import SigningKey, SigningKeyError, generate_signing_key, load_signing_key


@dataclass(frozen=True)
class AccessFiles:
    """What ``clients`` needs loaded: users (basic, token) and a signing key (token)."""

    users: Htpasswd | None = None
    key: SigningKey | None = None


def load_files(clients: ClientsSettings) -> AccessFiles:
    """Read the htpasswd file and the signing key (generated when ``key_file`` is null)."""
    if clients.auth == "none":
        return AccessFiles()
    problems: list[str] = []
    users = key = None
    if clients.htpasswd is None:
        problems.append(f"clients.htpasswd: is required with auth: {clients.auth}")
    else:
        try:
            users = Htpasswd(clients.htpasswd)
        except HtpasswdError as exc:
            problems.append(f"clients.htpasswd: {clients.htpasswd}: {exc}")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"clients.htpasswd: {clients.htpasswd}: cannot read: {exc}")
    if clients.auth == "token":
        key_file = clients.token.key_file
        try:
            key = load_signing_key(key_file.read_bytes()) if key_file else generate_signing_key()
        except SigningKeyError as exc:
            problems.append(f"clients.token.key_file: {key_file}: {exc}")
        except OSError as exc:
            problems.append(f"clients.token.key_file: {key_file}: cannot read: {exc}")
    if problems:
        raise ConfigError(problems)
    return AccessFiles(users, key)


def check_files(clients: ClientsSettings) -> None:
    """``check-config``: raise ConfigError when a file ``load_files`` needs is unusable."""
    load_files(clients)
