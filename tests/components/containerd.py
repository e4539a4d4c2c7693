"""A private containerd daemon (as root) and `ctr` pulls through hosts.toml.

`Containerd.start(workdir)` writes a config.toml whose `root`, `state`, gRPC socket and `opt`
dir all live under `workdir`, so it never touches the machine's own containerd. Plugins that
need a kernel feature or a filesystem we do not have (btrfs, zfs, aufs, devmapper) or that we
do not use (CRI, which wants CNI and would start its own services) are disabled; overlayfs
and the native snapshotter remain. Pulls unpack into the default snapshotter, as `ctr` does.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tests.components.ports import wait_until
from tests.components.process import ComponentError, ManagedProcess, Stoppable, require_binary
from tests.components.skopeo import toml_string

STARTUP_TIMEOUT = 20.0
PULL_TIMEOUT = 120.0
CTR_TIMEOUT = 30.0
# sun_path is 108 bytes; leave room for containerd's ".ttrpc" suffix.
MAX_SOCKET_PATH = 100

DISABLED_PLUGINS = [
    "io.containerd.grpc.v1.cri",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
]

Capability = Literal["pull", "resolve", "push"]


def containerd_config(*, root: Path, state: Path, socket: Path, opt: Path) -> str:
    disabled = ", ".join(toml_string(p) for p in DISABLED_PLUGINS)
    return (
        "version = 2\n"
        f"root = {toml_string(str(root))}\n"
        f"state = {toml_string(str(state))}\n"
        f"disabled_plugins = [{disabled}]\n\n"
        "[grpc]\n"
        f"  address = {toml_string(str(socket))}\n\n"
        # The opt plugin defaults to /opt/containerd, outside our sandbox.
        '[plugins."io.containerd.internal.v1.opt"]\n'
        f"  path = {toml_string(str(opt))}\n"
    )


def write_hosts_toml(
    hosts_dir: Path,
    namespace: str,
    mirror_url: str,
    server: str | None = None,
    *,
    capabilities: tuple[Capability, ...] = ("pull", "resolve"),
    override_path: bool = False,
) -> Path:
    """Write `hosts_dir/<namespace>/hosts.toml` sending `namespace` pulls to `mirror_url`.

    `namespace` is the registry host of the image reference, port included when it has one
    (`127.0.0.1:5000`; containerd docs/hosts.md). `server` is the fallback tried after the
    mirror; leave it None only when the namespace itself is loopback, because containerd
    then falls back to `https://<namespace>` (registry-1.docker.io for docker.io).
    """
    directory = hosts_dir / namespace
    directory.mkdir(parents=True, exist_ok=True)
    lines = []
    if server is not None:
        lines.append(f"server = {toml_string(server)}\n")
    lines.append(f"\n[host.{toml_string(mirror_url)}]\n")
    caps = ", ".join(toml_string(c) for c in capabilities)
    lines.append(f"  capabilities = [{caps}]\n")
    if override_path:
        lines.append("  override_path = true\n")
    path = directory / "hosts.toml"
    path.write_text("".join(lines))
    return path


@dataclass(frozen=True)
class ImageCheck:
    """One row of `ctr images check`."""

    digest: str
    status: str  # "complete", "incomplete", ...
    unpacked: bool

    @property
    def complete(self) -> bool:
        return self.status == "complete"


class CtrError(ComponentError):
    """A `ctr` command failed or timed out."""


class Containerd(Stoppable):
    """A running private containerd; drive it with `ctr` through `pull` and friends."""

    def __init__(self, workdir: Path, socket: Path, namespace: str = "default") -> None:
        self.workdir = workdir
        self.socket = socket
        self.namespace = namespace
        self._process: ManagedProcess | None = None
        self._socket_dir_to_remove: Path | None = None

    @classmethod
    def start(cls, workdir: Path) -> Containerd:
        workdir.mkdir(parents=True, exist_ok=True)
        socket = workdir / "containerd.sock"
        socket_dir_to_remove = None
        if len(str(socket)) > MAX_SOCKET_PATH:
            # Deep pytest tmp dirs overflow sun_path; the socket alone moves somewhere short.
            socket_dir_to_remove = Path(tempfile.mkdtemp(prefix="ctrd-"))
            socket = socket_dir_to_remove / "containerd.sock"
        daemon = cls(workdir, socket)
        daemon._socket_dir_to_remove = socket_dir_to_remove
        config = workdir / "config.toml"
        config.write_text(
            containerd_config(
                root=workdir / "root", state=workdir / "state", socket=socket, opt=workdir / "opt"
            )
        )
        try:
            daemon._spawn(config)
        except BaseException:
            daemon.stop()
            raise
        return daemon

    @property
    def log_path(self) -> Path:
        return self.workdir / "containerd.log"

    def _spawn(self, config: Path) -> None:
        binary = require_binary("containerd")
        process = ManagedProcess.spawn(
            "containerd", [binary, "--config", str(config)], log_path=self.log_path
        )
        self._process = process
        if not wait_until(self._answers, timeout=STARTUP_TIMEOUT, alive=process.alive):
            raise process.startup_error(f"`ctr --address {self.socket} version` never succeeded")

    def _answers(self) -> bool:
        if not self.socket.exists():
            return False
        result = subprocess.run(
            [require_binary("ctr"), "--address", str(self.socket), "version"],
            capture_output=True,
            timeout=CTR_TIMEOUT,
            check=False,
        )
        return result.returncode == 0

    def ctr(
        self, *args: str, timeout: float = CTR_TIMEOUT, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run `ctr --address SOCK --namespace NS args...`."""
        argv = [
            require_binary("ctr"),
            *("--address", str(self.socket)),
            *("--namespace", self.namespace),
            *args,
        ]
        try:
            result = subprocess.run(
                argv, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            # TimeoutExpired carries bytes even with text=True.
            output = b"\n".join(o for o in (exc.stdout, exc.stderr) if isinstance(o, bytes))
            raise CtrError(
                f"ctr timed out after {timeout:.0f}s: {' '.join(argv)}\n"
                f"{output.decode(errors='replace')[-3000:]}"
            ) from exc
        if check and result.returncode != 0:
            raise CtrError(
                f"ctr exited {result.returncode}: {' '.join(argv)}\n"
                f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
            )
        return result

    def pull(
        self,
        ref: str,
        *,
        hosts_dir: Path,
        user: tuple[str, str] | str | None = None,
        platform: str | None = None,
        all_platforms: bool = False,
        plain_http: bool = True,
        timeout: float = PULL_TIMEOUT,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """`ctr images pull --hosts-dir DIR ...`; raises CtrError unless check=False."""
        args = ["images", "pull", "--hosts-dir", str(hosts_dir)]
        if plain_http:
            args.append("--plain-http")
        if user is not None:
            args += ["--user", user if isinstance(user, str) else f"{user[0]}:{user[1]}"]
        if platform is not None:
            args += ["--platform", platform]
        if all_platforms:
            args.append("--all-platforms")
        return self.ctr(*args, ref, timeout=timeout, check=check)

    def image_digest(self, ref: str) -> str:
        """The target digest containerd recorded for `ref` (from `ctr images ls`)."""
        listing = self.ctr("images", "ls").stdout.splitlines()
        for line in listing[1:]:
            columns = line.split()
            if columns and columns[0] == ref:
                return columns[2]
        raise CtrError(f"{ref} not in `ctr images ls`:\n" + "\n".join(listing))

    def check_image(self, ref: str) -> ImageCheck:
        """`ctr images check` for `ref`: content status and whether it was unpacked."""
        for line in self.ctr("images", "check").stdout.splitlines()[1:]:
            # REF TYPE DIGEST STATUS (n/m) SIZE UNPACKED; SIZE holds spaces ("553.0 B/553.0 B")
            columns = line.split()
            if columns and columns[0] == ref:
                return ImageCheck(
                    digest=columns[2], status=columns[3], unpacked=columns[-1] == "true"
                )
        raise CtrError(f"{ref} not in `ctr images check`")

    def remove_image(self, ref: str) -> None:
        """Forget `ref` so the next pull goes to the network again (content is GC'd)."""
        self.ctr("images", "rm", "--sync", ref)

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None
        if self._socket_dir_to_remove is not None:
            shutil.rmtree(self._socket_dir_to_remove, ignore_errors=True)
            self._socket_dir_to_remove = None
