#!/bin/sh
# blankspot quick start, for a fresh Debian / Ubuntu / Raspberry Pi OS machine.
#
#   deploy/quickstart.sh demo [blankspot demo options]   simulated boat trip, end to end
#   deploy/quickstart.sh test [pytest options]           the whole test suite
#
# Installs what is missing (python3-venv, Mosquitto for the tests) with apt-get when
# run as root or with sudo, creates .venv in the repository and installs blankspot
# into it, then runs the demo or the tests.
set -eu

cd "$(dirname "$0")/.."
what="${1:-}"
[ $# -gt 0 ] && shift

case "$what" in
  demo|test) ;;
  *) echo "usage: deploy/quickstart.sh demo|test [options]" >&2; exit 2 ;;
esac

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else echo "quickstart: need root (or sudo) to run: $*" >&2; return 1
  fi
}

apt_install() {
  echo "quickstart: installing $* with apt-get" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

has_mosquitto() {
  command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]
}

python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "quickstart: blankspot needs Python 3.11 or newer (Raspberry Pi OS Bookworm has it)" >&2; exit 1; }

packages=""
python3 -c 'import ensurepip, venv' 2>/dev/null || packages="$packages python3-venv"
if [ "$what" = test ]; then
  has_mosquitto || packages="$packages mosquitto"
  command -v mosquitto_sub >/dev/null 2>&1 || packages="$packages mosquitto-clients"
  command -v openssl >/dev/null 2>&1 || packages="$packages openssl"
  command -v sqlite3 >/dev/null 2>&1 || packages="$packages sqlite3"
  [ -x /usr/sbin/gpsd ] || command -v gpsd >/dev/null 2>&1 || packages="$packages gpsd"
  # The measurement tests build network namespaces joined by an emulated cellular link.
  command -v ip >/dev/null 2>&1 && command -v tc >/dev/null 2>&1 || packages="$packages iproute2"
  command -v ethtool >/dev/null 2>&1 || packages="$packages ethtool"
  command -v nft >/dev/null 2>&1 || command -v iptables >/dev/null 2>&1 || packages="$packages nftables"
  # The collector is tested against a real PostgreSQL as well as SQLite.
  command -v pg_ctlcluster >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || packages="$packages postgresql"
  # Deployment: the udev rules, the installer script and the Ansible playbook are run for real.
  command -v udevadm >/dev/null 2>&1 || packages="$packages udev"
  command -v shellcheck >/dev/null 2>&1 || packages="$packages shellcheck"
  command -v ansible-playbook >/dev/null 2>&1 || packages="$packages ansible-core"
  /usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null || packages="$packages python3-venv"
  # What the buffer flushes to the card is counted with strace.
  command -v strace >/dev/null 2>&1 || packages="$packages strace"
  # The exports are read back with GDAL, as QGIS reads them.
  command -v ogrinfo >/dev/null 2>&1 || packages="$packages gdal-bin"
  # The coverage map is checked in a headless browser.
  command -v chromium >/dev/null 2>&1 || packages="$packages chromium fonts-liberation"
fi
if [ -n "$packages" ]; then
  # shellcheck disable=SC2086
  apt_install $packages
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
extras="test"
[ "$what" = demo ] && extras="demo"
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras:+[$extras]}"

case "$what" in
  demo) exec .venv/bin/blankspot demo "$@" ;;
  test) exec .venv/bin/python -m pytest "$@" ;;
esac
