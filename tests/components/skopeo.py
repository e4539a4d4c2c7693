"""Running skopeo against loopback registries and gateways.

Every call passes `--insecure-policy` (no /etc/containers/policy.json needed), plain-HTTP
flags (`--tls-verify=false` / `--src-tls-verify=false` / `--dest-tls-verify=false`) and a
timeout, and raises SkopeoError carrying stderr on failure. `--registries-conf` is given as a
global flag: skopeo 1.9 ignores CONTAINERS_REGISTRIES_CONF but honours the (hidden) flag.
"""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Sequence
from pathlib import Path

from tests.components.process import ComponentError, require_binary

SKOPEO_TIMEOUT = 120.0
LOOPBACK_HOSTS = frozenset({"localhost"})


class SkopeoError(ComponentError):
    """skopeo exited non-zero or timed out."""


Creds = tuple[str, str] | str | None


def creds_arg(creds: Creds) -> str | None:
    if creds is None or isinstance(creds, str):
        return creds
    return f"{creds[0]}:{creds[1]}"


def run_skopeo(
    args: Sequence[str],
    *,
    registries_conf: Path | None = None,
    timeout: float = SKOPEO_TIMEOUT,
) -> subprocess.CompletedProcess[bytes]:
    """Run `skopeo [global flags] args...`; stdout stays bytes (raw manifests are hashed)."""
    argv = [require_binary("skopeo"), "--insecure-policy"]
    if registries_conf is not None:
        argv += ["--registries-conf", str(registries_conf)]
    argv += list(args)
    try:
        result = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        stderr = (exc.stderr or b"").decode(errors="replace")
        raise SkopeoError(f"skopeo timed out after {timeout:.0f}s: {argv}\n{stderr}") from exc
    if result.returncode != 0:
        raise SkopeoError(
            f"skopeo exited {result.returncode}: {' '.join(argv)}\n"
            f"{result.stderr.decode(errors='replace')}"
        )
    return result


def inspect_raw(
    ref: str,
    *,
    creds: Creds = None,
    registries_conf: Path | None = None,
    tls_verify: bool = False,
    timeout: float = SKOPEO_TIMEOUT,
) -> bytes:
    """The manifest bytes exactly as the registry serves them (`skopeo inspect --raw`)."""
    args = ["inspect", "--raw", f"--tls-verify={str(tls_verify).lower()}"]
    if (value := creds_arg(creds)) is not None:
        args += ["--creds", value]
    return run_skopeo([*args, ref], registries_conf=registries_conf, timeout=timeout).stdout


def copy(
    src_ref: str,
    dest_ref: str,
    *,
    all: bool = False,
    src_creds: Creds = None,
    dest_creds: Creds = None,
    registries_conf: Path | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = SKOPEO_TIMEOUT,
) -> subprocess.CompletedProcess[bytes]:
    """`skopeo copy` with plain HTTP on both sides."""
    args = ["copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false"]
    if all:
        args.append("--all")
    if (value := creds_arg(src_creds)) is not None:
        args += ["--src-creds", value]
    if (value := creds_arg(dest_creds)) is not None:
        args += ["--dest-creds", value]
    args += [*extra_args, src_ref, dest_ref]
    return run_skopeo(args, registries_conf=registries_conf, timeout=timeout)


def copy_to_oci(
    src_ref: str,
    dest_dir: Path,
    *,
    all: bool = False,
    src_creds: Creds = None,
    registries_conf: Path | None = None,
    tag: str = "latest",
    timeout: float = SKOPEO_TIMEOUT,
) -> subprocess.CompletedProcess[bytes]:
    """Copy `src_ref` (e.g. `docker://127.0.0.1:PORT/repo:tag`) into the layout dest_dir:tag."""
    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    return copy(
        src_ref,
        f"oci:{dest_dir}:{tag}",
        all=all,
        src_creds=src_creds,
        registries_conf=registries_conf,
        timeout=timeout,
    )


def is_loopback_location(location: str) -> bool:
    host = location.split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def write_registries_conf(
    path: Path,
    prefix: str,
    location: str,
    mirror_location: str,
    insecure: bool = True,
    *,
    allow_remote_location: bool = False,
) -> Path:
    """Write a containers-registries.conf(5) with one registry and one mirror; return path.

    skopeo tries the primary `location` after the mirror fails, so a real host there (say
    `docker.io`) would be dialled on any mirror failure. Tests therefore must use a loopback
    location (e.g. `127.0.0.1:1/docker.io`, refused at once) unless they opt in.
    """
    if not allow_remote_location and not is_loopback_location(location):
        raise ValueError(
            f"location {location!r} is not loopback; skopeo would contact it when the mirror "
            "fails (pass allow_remote_location=True to accept that)"
        )
    flag = str(insecure).lower()
    path.write_text(
        "unqualified-search-registries = []\n\n"
        "[[registry]]\n"
        f"prefix = {toml_string(prefix)}\n"
        f"location = {toml_string(location)}\n"
        f"insecure = {flag}\n\n"
        "[[registry.mirror]]\n"
        f"location = {toml_string(mirror_location)}\n"
        f"insecure = {flag}\n"
    )
    return path


def toml_string(value: str) -> str:
    """A TOML basic string (the values here are host/path names, but quote them properly)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
