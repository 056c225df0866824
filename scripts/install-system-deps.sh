#!/usr/bin/env bash
# Installs the Debian packages the test suite runs against, only those
# missing: ejabberd (private instances, see ejabberd-config/), Redis (server
# and redis-cli, for Redis Cluster tests) and Chromium (browser tests; not
# with --no-browser, as the demo runs it: the demo needs no browser here).
# As root it installs them with apt-get; otherwise it prints the exact
# command and fails, so nothing half-runs.
set -euo pipefail

browser=true
[[ "${1:-}" == "--no-browser" ]] && browser=false

missing=()
[[ -x /usr/sbin/ejabberdctl ]] || missing+=(ejabberd)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null || missing+=(redis-tools) # redis-cli's package
if $browser && [[ ! -x /usr/bin/chromium ]]; then missing+=(chromium); fi
((${#missing[@]} == 0)) && exit 0

if [[ $(id -u) -ne 0 ]]; then
  echo "Missing Debian packages: ${missing[*]}. Install them with:" >&2
  echo "  sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi

apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"; }
echo "Installing ${missing[*]} (apt-get)" >&2
# A fresh machine has no package lists yet; an old one may have stale ones.
# Update once, only when needed.
if ! compgen -G "/var/lib/apt/lists/*_Packages" >/dev/null; then
  apt-get update
  apt_install
elif ! apt_install; then
  apt-get update
  apt_install
fi
