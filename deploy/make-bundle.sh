#!/bin/sh
# Make an offline install bundle: blankspot and every Python package it needs, as wheels
# for the Raspberry Pi, plus the installer, units, udev rules and example config.
#
#   deploy/make-bundle.sh [--arch aarch64|armv7l|host] [--python-version 3.11] [--extras LIST] OUT
#
# Run it where there is Internet (a Linux machine with Python 3.11+, pip and GNU tar); copy
# OUT (or OUT.tar.gz, the same in one file) to the unit (USB stick, scp) and there, without
# any network:
#
#   sudo OUT/deploy/install.sh            (finds OUT/wheels by itself)
#
# For a collector (install.sh --collector), which draws maps and may use PostgreSQL:
#
#   deploy/make-bundle.sh --arch host --extras collector,postgres OUT
#
#   --arch aarch64          64-bit Raspberry Pi OS (Pi 3, 4, 5, Zero 2 W); the default
#   --arch armv7l           32-bit Raspberry Pi OS on a Pi 2 or newer
#   --arch host             this machine's own platform (tests, an x86 collector)
#   --python-version 3.11   the unit's Python (Bookworm: 3.11)
#   --python PATH           the Python that runs pip here (default: python3)
#   --extra-index-url URL   also look there for wheels, e.g. https://www.piwheels.org/simple,
#                           which builds wheels for 32-bit Raspberry Pi OS that PyPI lacks
#   --find-links DIR        also take wheels from DIR
#   --extras LIST           also the wheels of these extras of blankspot (setup.cfg), comma
#                           separated: collector (h3, for map, report, export), postgres
#                           (psycopg), demo; a bundle with collector,postgres serves both roles
#
# A dependency that publishes no wheel for the target stops the script with its name: build
# that wheel on a Pi (pip wheel NAME -w DIR), bring DIR here and give --find-links DIR.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
source_root=$(dirname "$here")
arch=aarch64
pyver=3.11
python=python3
sources=""
extras=""
out=""

usage() { sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
die() { echo "make-bundle: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --arch) [ $# -ge 2 ] || usage; arch=$2; shift 2 ;;
    --python-version) [ $# -ge 2 ] || usage; pyver=$2; shift 2 ;;
    --python) [ $# -ge 2 ] || usage; python=$2; shift 2 ;;
    --extra-index-url) [ $# -ge 2 ] || usage; sources="$sources --extra-index-url $2"; shift 2 ;;
    --find-links) [ $# -ge 2 ] || usage; sources="$sources --find-links $2"; shift 2 ;;
    --extras) [ $# -ge 2 ] || usage; extras=$2; shift 2 ;;
    -h|--help) usage ;;
    -*) echo "make-bundle: unknown option $1" >&2; usage ;;
    *) [ -z "$out" ] || usage; out=$1; shift ;;
  esac
done
[ -n "$out" ] || usage
case "$arch" in aarch64|armv7l|host) ;; *) die "--arch must be aarch64, armv7l or host, not $arch" ;; esac
case "$pyver" in 3.[0-9]*) ;; *) die "--python-version looks like 3.11, not $pyver" ;; esac
case "$extras" in *[!a-z,]*) die "--extras is a comma-separated list such as collector,postgres, not $extras" ;; esac

mkdir -p "$out"
out=$(cd "$out" && pwd)
pip="$python -m pip --disable-pip-version-check --no-input"

# Wheels of an earlier run would linger beside the new ones.
rm -rf "$out/wheels"
mkdir "$out/wheels"

# 1. blankspot itself: a pure-Python wheel, the same for every platform.  Built from a clean
#    copy of the source: setuptools would also package stale modules left in build/.  A fixed
#    SOURCE_DATE_EPOCH makes the same source give the same wheel, byte for byte.
clean=$(mktemp -d)
trap 'rm -rf "$clean"' EXIT
tar -C "$source_root" --exclude=./.venv --exclude=./build --exclude=./dist --exclude=./.git \
  --exclude='*.egg-info' --exclude=__pycache__ -cf - . | tar -C "$clean" -xf -
# shellcheck disable=SC2086
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-315532800} \
  $pip wheel --quiet --no-deps --wheel-dir "$out/wheels" "$clean"
set -- "$out"/wheels/blankspot-*.whl
wheel=$1
want=$wheel${extras:+[$extras]}

# 2. Its dependencies, resolved for the unit's platform and Python, wheels only: the unit
#    has no compiler to build an sdist, and no network to fetch one.
if [ "$arch" = host ]; then
  # shellcheck disable=SC2086
  $pip download --quiet --only-binary=:all: $sources --dest "$out/wheels" "$want"
else
  nodot=$(echo "$pyver" | tr -d .)
  # Bookworm has glibc 2.36: any manylinux wheel up to 2_36 runs there.
  platforms="--platform linux_$arch --platform manylinux2014_$arch"
  for glibc in 17 24 27 28 31 34 35 36; do platforms="$platforms --platform manylinux_2_${glibc}_$arch"; done
  # shellcheck disable=SC2086
  $pip download --quiet --only-binary=:all: $sources --dest "$out/wheels" $platforms \
    --python-version "$pyver" --implementation cp --abi "cp$nodot" --abi abi3 --abi none "$want" \
    || die "a dependency has no wheel for $arch / Python $pyver (see above): try --extra-index-url or --find-links (see --help)"
fi

# 3. What the installer needs beside the wheels, in the repository's layout.
copy() { mkdir -p "$out/$(dirname "$1")"; cp -p "$source_root/$1" "$out/$1"; }
copy deploy/install.sh
copy deploy/agent.example.toml
copy deploy/udev/90-blankspot.rules
copy systemd/blankspot-agent.service
copy systemd/blankspot-collector.service
copy systemd/collector.env.example
copy systemd/blankspot-serve.service
copy systemd/serve.env.example
copy systemd/blankspot-sms-gateway.service
copy systemd/sms-gateway.env.example
copy docs/install.md
copy docs/serve.md
copy docs/sms-heartbeat.md
for profile in "$source_root"/firmware_configs/*; do copy "firmware_configs/$(basename "$profile")"; done

(cd "$out/wheels" && sha256sum ./*.whl > ../SHA256SUMS)

# 4. The same as one file, for copying over a slow link (deploy/ansible/site.yml sends this).
#    Without owners or dates, so that an unchanged bundle gives the same file.
name=$(basename "$out")
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$(dirname "$out")" -cf - "$name" \
  | gzip -n > "$out.tar.gz"
echo "make-bundle: $out: $(find "$out/wheels" -name '*.whl' | wc -l) wheels for $arch, Python $pyver${extras:+, with $extras}; also $out.tar.gz"
echo "make-bundle: on the unit: sudo $name/deploy/install.sh${extras:+ (a collector: sudo $name/deploy/install.sh --collector)}"
