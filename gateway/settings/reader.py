"""Reading config values at a key path: the problem collector and the small value parsers.

:class:`Reader` walks the YAML document and, instead of raising at the first bad value, records
``<key.path>: <problem>`` and returns a default, so one run reports every problem in the file.
It resolves relative file paths against the config file's folder and reads the environment
variables a config names (``*_env`` keys). The parsers for shared value shapes (``host:port``,
an http(s) URL) report through it too.
"""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from yarl import URL

from ..secret import Secret

# Stands in for an environment variable's value in structure-only mode; never used to serve.
UNCHECKED = Secret("(not checked)")


class Reader:
    """Walks a mapping with a key path, collecting problems instead of raising at the first.

    With ``structure_only`` it checks shapes and values but neither reads environment
    variables nor looks for files; ``unchecked`` lists what it skipped, for the user.
    """

    def __init__(
        self,
        problems: list[str],
        environ: Mapping[str, str],
        base_dir: Path,
        *,
        structure_only: bool = False,
    ) -> None:
        self.problems = problems
        self.environ = environ
        self.base_dir = base_dir
        self.structure_only = structure_only
        self.unchecked: list[str] = []

    def fail(self, path: str, problem: str) -> None:
        self.problems.append(f"{path}: {problem}")

    def mapping(self, data: Any, path: str, allowed: set[str]) -> dict[str, Any]:
        if data is None:
            return {}
        if not isinstance(data, dict):
            self.fail(path, "must be a mapping")
            return {}
        for key in data:
            if not isinstance(key, str):
                self.fail(path, f"key {key!r} must be a string")
            elif key not in allowed:
                self.fail(join_key(path, key), unknown_key(key, allowed))
        return {k: v for k, v in data.items() if isinstance(k, str) and k in allowed}

    def string(self, data: Mapping[str, Any], key: str, path: str, default: Any = None) -> Any:
        value = data.get(key, default)
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        self.fail(join_key(path, key), "must be a string")
        return default

    def boolean(self, data: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        value = data.get(key, default)
        if isinstance(value, bool):
            return value
        self.fail(join_key(path, key), "must be true or false")
        return default

    def number(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        default: float,
        *,
        minimum: float = 0,
        integer: bool = False,
    ) -> Any:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(join_key(path, key), "must be a number")
            return default
        if integer and not isinstance(value, int):
            self.fail(join_key(path, key), "must be a whole number")
            return default
        if value < minimum:
            self.fail(join_key(path, key), f"must be at least {minimum:g}")
            return default
        return value

    def choice(
        self, data: Mapping[str, Any], key: str, path: str, options: tuple[str, ...], default: str
    ) -> Any:
        value = data.get(key, default)
        if value not in options:
            self.fail(join_key(path, key), f"must be one of {', '.join(options)}")
            return default
        return value

    def path_value(self, data: Mapping[str, Any], key: str, path: str) -> Path | None:
        value = self.string(data, key, path)
        if value is None:
            return None
        resolved = Path(value).expanduser()
        if not resolved.is_absolute():
            resolved = self.base_dir / resolved
        return resolved

    def existing_file(self, data: Mapping[str, Any], key: str, path: str) -> Path | None:
        resolved = self.path_value(data, key, path)
        if resolved is not None and self.structure_only:
            self.unchecked.append(f"file {resolved} ({join_key(path, key)})")
        elif resolved is not None and not resolved.is_file():
            self.fail(join_key(path, key), f"file not found: {resolved}")
        return resolved

    def env_secret(self, data: Mapping[str, Any], key: str, path: str) -> Secret | None:
        name = self.string(data, key, path)
        if name is None:
            return None
        if self.structure_only:
            self.unchecked.append(f"environment variable {name} ({join_key(path, key)})")
            return UNCHECKED
        value = self.environ.get(name)
        if not value:
            self.fail(join_key(path, key), f"environment variable {name} is not set")
            return None
        return Secret(value)

    def string_list(self, data: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
        value = data.get(key)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(join_key(path, key), "must be a list of strings")
            return ()
        return tuple(value)


def join_key(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def unknown_key(key: str, allowed: Iterable[str]) -> str:
    """``unknown key``, with the closest allowed key when one is close enough to be a typo."""
    close = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.6)
    return f"unknown key (did you mean {close[0]!r}?)" if close else "unknown key"


def parse_listen(value: Any, path: str, reader: Reader) -> tuple[str, int] | None:
    """``host:port`` (``[v6]:port`` for IPv6) into a tuple."""
    if not isinstance(value, str) or ":" not in value:
        reader.fail(path, 'must be "host:port"')
        return None
    host, _, port_text = value.rpartition(":")
    host = host.strip("[]")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        reader.fail(path, f"port {port_text!r} is not a number from 1 to 65535")
        return None
    if host and not is_host(host):
        reader.fail(path, f"host {host!r} is not a host name or IP address")
        return None
    return host or "0.0.0.0", int(port_text)  # noqa: S104


def is_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return all(part and part.replace("-", "").isalnum() for part in host.split("."))


def parse_http_url(value: Any, path: str, reader: Reader) -> URL | None:
    if not isinstance(value, str) or not value:
        reader.fail(path, "must be an http(s) URL")
        return None
    try:
        url = URL(value)
    except (ValueError, TypeError):
        reader.fail(path, "not an http(s) URL")
        return None
    if url.scheme not in ("http", "https") or not url.host:
        reader.fail(path, "not an http(s) URL")
        return None
    if url.user or url.password:
        reader.fail(path, "must not contain credentials; use the credentials key")
        return None
    if url.query_string or url.fragment:
        reader.fail(path, "must not have a query or fragment")
        return None
    return url.with_path(url.path.rstrip("/"))
