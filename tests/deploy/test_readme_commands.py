"""The README's commands: the two Quick start commands, CI running the README test command,
and the offline recipe run as written (only its ports and the gateway binary swapped)."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

from tests.components.ports import free_port
from tests.gateway_process import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()


def section(title: str) -> str:
    start = README.index(title)
    end = README.find("\n## ", start + 1)
    following = README.find("\n### ", start + 1)
    ends = [e for e in (end, following) if e != -1]
    return README[start : min(ends)] if ends else README[start:]


def sh_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, re.DOTALL)


def test_quick_start_is_two_commands_and_ci_runs_the_readme_test_command() -> None:
    """Quick start: install+serve and .ci/run; .ci/run ends with the README's test command."""
    assert sh_blocks(section("## Quick start")) == [
        "sh install.sh && .venv/bin/registry-gateway serve\n",
        "bash .ci/run\n",
    ]
    test_command = sh_blocks(section("### What `bash .ci/run` does"))[0].strip()
    ci = (REPO_ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == test_command == "python3 -m pytest"
    assert "sh install.sh --test" in ci and ". .venv/bin/activate" in ci
    for script in ("install.sh", ".ci/run", ".ci/install-system.sh"):
        shell = "sh" if script == "install.sh" else "bash"
        subprocess.run([shell, "-n", str(REPO_ROOT / script)], check=True)


def test_install_system_starts_no_services() -> None:
    """install-system.sh forbids service starts during apt and disables the test services."""
    text = (REPO_ROOT / ".ci" / "install-system.sh").read_text()
    assert "/usr/sbin/policy-rc.d" in text and "exit 101" in text
    for service in ("docker-registry", "prometheus", "containerd"):
        assert re.search(rf"services=\(.*\b{service}\b", text)
    assert 'systemctl disable "${service}.service"' in text


def test_offline_recipe_pulls_through_the_gateway(tmp_path: Path) -> None:
    """The README's offline recipe, run by bash: the pulled image's hello.txt comes out."""
    recipe = sh_blocks(section("### Try it offline"))[0]
    registry_port, gateway_port = free_port(), free_port()
    # This checkout's gateway instead of ./.venv (absent outside .ci/run), on free ports.
    wrapper = tmp_path / "registry-gateway"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH={REPO_ROOT} exec {sys.executable} -m gateway "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    assert recipe.startswith("gateway=$PWD/.venv/bin/registry-gateway\n")
    # The recipe kills its registry and gateway at its end; a failing step must not leak them.
    cleanup = "trap 'kill ${gateway_pid:-} ${registry_pid:-} 2>/dev/null || true' EXIT\n"
    script = cleanup + (
        recipe.replace("gateway=$PWD/.venv/bin/registry-gateway", f"gateway={wrapper}")
        .replace("127.0.0.1:5001", f"127.0.0.1:{registry_port}")
        .replace("127.0.0.1:5080", f"127.0.0.1:{gateway_port}")
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    env["TMPDIR"] = str(tmp_path)
    done = subprocess.run(
        ["bash", "-e", "-c", script],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "hello through the gateway" in lines
    assert any(line.startswith("local: ok: GET /v2/ 200") for line in lines)
    assert int(lines[-1]) >= 3  # request_completed lines: /v2/, the manifest, blobs
