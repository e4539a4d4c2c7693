"""Shared fixtures: the real components (tests/components) and the gateway process."""

from __future__ import annotations

pytest_plugins = ["tests.components.fixtures"]
