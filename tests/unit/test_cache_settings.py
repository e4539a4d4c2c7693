"""The `cache` section and `upstreams.<key>.cache`: defaults, sizes, key.path problems."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from gateway.settings import ConfigError, parse_settings
from gateway.settings.cache import ROOT_CACHE_DIR, default_cache_dir, parse_size

BASE: dict[str, Any] = {"upstreams": {"docker.io": {"url": "https://registry-1.docker.io"}}}


def parse(extra: dict[str, Any], environ: dict[str, str] | None = None) -> Any:
    return parse_settings({**BASE, **extra}, environ=environ or {}, base_dir=Path("/cfg"),
                          source="test")  # fmt: skip


def test_cache_is_on_by_default_with_contract_defaults() -> None:
    """No cache section: enabled, filesystem, 20 GiB, tag_ttl 60, max_stale 1 day, neg 10 s."""
    cache = parse({}).cache
    assert cache.enabled and cache.store == "filesystem"
    assert cache.max_size == 20 << 30
    assert (cache.tag_ttl, cache.max_stale, cache.negative_ttl, cache.fill_timeout) == (
        60, 86400, 10, 3600)  # fmt: skip
    assert parse({}).upstreams["docker.io"].cache is True


def test_default_dir_depends_on_who_runs_the_gateway() -> None:
    """Root: /var/cache/registry-gateway; anyone else: $XDG_CACHE_HOME/registry-gateway."""
    chosen = default_cache_dir({"XDG_CACHE_HOME": "/x", "HOME": "/home/u"})
    if os.geteuid() == 0:
        assert chosen == ROOT_CACHE_DIR
    else:
        assert chosen == Path("/x/registry-gateway")


def test_every_key_parses() -> None:
    """Relative dir against the config's folder, sizes with units, per-upstream opt-out."""
    settings = parse({
        "cache": {"dir": "c", "max_size": "512MiB", "tag_ttl": 5, "max_stale": 7,
                  "negative_ttl": 0, "fill_timeout": 30, "enabled": False},
        "upstreams": {"docker.io": {"url": "https://registry-1.docker.io", "cache": False}},
    })  # fmt: skip
    cache = settings.cache
    assert (cache.dir, cache.max_size, cache.enabled) == (Path("/cfg/c"), 512 << 20, False)
    assert (cache.tag_ttl, cache.max_stale, cache.negative_ttl, cache.fill_timeout) == (5, 7, 0, 30)
    assert settings.upstreams["docker.io"].cache is False


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1048576, 1 << 20), ("20GiB", 20 << 30), ("1.5 GiB", 3 << 29), ("64MiB", 64 << 20),
     ("2TiB", 2 << 40), ("10MB", None), (True, None), (-1, None), ("lots", None)],
)  # fmt: skip
def test_sizes(value: Any, expected: int | None) -> None:
    """Byte counts or binary units; anything else is not a size."""
    assert parse_size(value) == expected


def test_problems_name_their_key_path() -> None:
    """Every bad cache key is reported as `cache.<key>: problem`, all at once."""
    with pytest.raises(ConfigError) as caught:
        parse({"cache": {"max_size": "huge", "tag_ttl": "soon", "store": "tape", "colour": 1},
               "upstreams": {"docker.io": {"url": "https://x", "cache": "yes"}}})  # fmt: skip
    text = "\n".join(caught.value.problems)
    for key in ("cache.max_size", "cache.tag_ttl", "cache.store", "cache.colour",
                "upstreams.docker.io.cache"):  # fmt: skip
        assert f"{key}:" in text
