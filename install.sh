#!/bin/sh
# Install registry-gateway into ./.venv, a virtual environment of its own.
#
#   sh install.sh           the gateway:                    .venv/bin/registry-gateway
#   sh install.sh --test    plus the test and lint tools:   .venv/bin/pytest, ruff, mypy
#
# Why a venv: Debian/Ubuntu mark their python3 "externally managed" (PEP 668), so
# `pip install .` into it is refused, and a fresh Debian has no pip at all. A venv next to
# the checkout needs neither pip nor write access outside it, and works the same for root
# and for a normal user.
#
# What it may need from the system: python3 >= 3.11 and its venv module (Debian splits the
# latter into python3-venv). As root, missing packages are installed with apt-get. As a
# normal user without python3-venv, the venv is created without pip and pip is fetched
# from PyPI into it (nothing outside the checkout is touched). Re-running is cheap.
set -eu
cd "$(dirname "$0")"

extra=""
case "${1:-}" in
  --test) extra="[test]" ;;
  "") ;;
  *) echo "usage: sh install.sh [--test]" >&2; exit 2 ;;
esac

venv=.venv
say() { echo "install: $*" >&2; }

python_ok() {
  command -v python3 >/dev/null 2>&1 &&
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}

apt_install() {
  say "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null
}

if ! python_ok; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt_install python3 python3-venv ca-certificates
  fi
  python_ok || { say "needs python3 >= 3.11 (as root: apt-get install python3 python3-venv)"; exit 1; }
fi

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
  rm -rf "$venv"
  # Debian's python3 without python3-venv has the venv module but not ensurepip.
  if ! python3 -c 'import ensurepip' >/dev/null 2>&1 &&
    [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt_install python3-venv ca-certificates
  fi
  if python3 -c 'import ensurepip' >/dev/null 2>&1; then
    say "creating $venv"
    python3 -m venv "$venv"
  else
    say "creating $venv without ensurepip (python3-venv is not installed); fetching pip from PyPI"
    python3 -m venv --without-pip "$venv"
    "$venv/bin/python" - <<'EOF'
import json, os, sys, tempfile, urllib.parse, urllib.request

api = "https://pypi.org/pypi/pip/json"
index = json.load(urllib.request.urlopen(api, timeout=60))
wheel = next(u for u in index["urls"] if u["filename"].endswith(".whl"))
path = os.path.join(tempfile.mkdtemp(), wheel["filename"])
# Mirrors and proxies may answer with relative file URLs.
urllib.request.urlretrieve(urllib.parse.urljoin(api, wheel["url"]), path)
sys.path.insert(0, path)  # a pip wheel runs from the zip to install itself
from pip._internal.cli.main import main

sys.exit(main(["install", "--quiet", path]))
EOF
  fi
fi

say "installing registry-gateway${extra} into $venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e ".${extra}"
say "done: $venv/bin/registry-gateway ($("$venv/bin/registry-gateway" --version))"
