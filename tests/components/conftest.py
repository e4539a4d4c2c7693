"""Load the component fixtures when tests/components runs on its own.

The root conftest registers `tests.components.fixtures` via `pytest_plugins`; a non-root
conftest may not, so this one imports the plugin only if nobody has yet.
"""

from __future__ import annotations

import pytest

PLUGIN = "tests.components.fixtures"


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin(PLUGIN):
        config.pluginmanager.import_plugin(PLUGIN)
