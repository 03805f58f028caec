#!/bin/sh
# Install blankspot as a service on Raspberry Pi OS (Bookworm) or another Debian-like system.
#
#   sudo deploy/install.sh                        field agent, Python packages from PyPI
#   sudo deploy/install.sh --bundle DIR           field agent, offline: wheels made by make-bundle.sh
#   sudo deploy/install.sh --collector            central collector instead of the agent, with
#                                                 what it needs to draw maps and use PostgreSQL
#
# Options:
#   --bundle DIR     install blankspot and its dependencies from the wheels in DIR (or in
#                    DIR/wheels) without touching the network; run from an unpacked
#                    bundle, its own wheels/ are used without this option
#   --collector      install blankspot-collector.service and /etc/blankspot/collector.env,
#                    blankspot-serve.service (the live map; not enabled) and
#                    /etc/blankspot/serve.env, blankspot-sms-gateway.service (the units'
#                    heartbeat SMS; not enabled), /etc/blankspot/sms-gateway.env and the
#                    folder of the units' keys, /etc/blankspot/heartbeat-keys, and
#                    blankspot with its collector and postgres extras (h3, psycopg);
#                    a bundle for it is made with make-bundle.sh --extras collector,postgres
#   --share-modem    udev rules that keep ModemManager off the AT and NMEA ports only, so it
#                    can still run the data connection (default: it keeps off the whole modem)
#   --start          start (or restart) the service when done; otherwise it is only enabled
#   --root DIR       install into DIR as if it were / (an image being built, or tests):
#                    nothing is started, udev is not reloaded; the virtualenv names
#                    /opt/blankspot/venv, where it is once the image boots
#   --no-pip         leave /opt/blankspot/venv alone: users, folders, config, units and rules only
#   --python PATH    interpreter for the virtualenv (default: python3; 3.11 or newer)
#   --dry-run        print what would be done and change nothing
#
# A unit gets its own heartbeat key, /etc/blankspot/heartbeat.key, when it has none; the
# centre needs a copy (the last lines printed say where).
#
# Running it again is safe: it creates what is missing, updates what changed (units, rules,
# a new blankspot wheel), and never overwrites /etc/blankspot/agent.toml, heartbeat.key,
# collector.env, serve.env or sms-gateway.env.
# docs/install.md describes every step.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
source_root=$(dirname "$here")          # the repository, or an unpacked bundle (same layout)

root=/
bundle=""
collector=no
share_modem=no
start=no
pip=yes
python=python3
dry_run=no

usage() { sed -n '2,36p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
die() { echo "install: $*" >&2; exit 1; }
say() { echo "install: $*"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --bundle) [ $# -ge 2 ] || usage; bundle=$2; shift 2 ;;
    --root) [ $# -ge 2 ] || usage; root=$2; shift 2 ;;
    --python) [ $# -ge 2 ] || usage; python=$2; shift 2 ;;
    --collector) collector=yes; shift ;;
    --share-modem) share_modem=yes; shift ;;
    --start) start=yes; shift ;;
    --no-pip) pip=no; shift ;;
    --dry-run) dry_run=yes; shift ;;
    -h|--help) usage ;;
    *) echo "install: unknown option $1" >&2; usage ;;
  esac
done

root=$(cd "$root" 2>/dev/null && pwd) || die "--root: no such folder"
[ "$root" = / ] && prefix="" || prefix=$root
venv=/opt/blankspot/venv
user=blankspot
if [ "$collector" = yes ]; then unit=blankspot-collector.service; else unit=blankspot-agent.service; fi
# What the role needs besides blankspot itself (setup.cfg's extras): the collector draws
# maps on the H3 grid and may keep its readings in PostgreSQL.
if [ "$collector" = yes ]; then extras=collector,postgres; else extras=""; fi

if [ "$dry_run" = no ] && [ "$(id -u)" != 0 ]; then
  die "run as root (sudo $0 ...), or with --dry-run to see what it would do"
fi

# Every change goes through run (a command) or the put_* helpers (a file or folder), which
# print instead of acting under --dry-run.
run() {
  if [ "$dry_run" = yes ]; then echo "would run: $*"; else "$@"; fi
}

# The numeric id of a group in the target root's /etc/group (chown on the host would look
# the name up in the host's own database, which is wrong under --root).
group_id() {
  if [ -z "$prefix" ]; then getent group "$1" | cut -d: -f3
  else awk -F: -v name="$1" '$1 == name { print $3 }' "$prefix/etc/group" 2>/dev/null
  fi
}

# put_dir PATH MODE GROUP
put_dir() {
  gid=$(group_id "$3"); gid=${gid:-0}
  target="$prefix$1"
  if [ -d "$target" ] && [ "$(stat -c '%a %u %g' "$target")" = "$(printf '%o' "0$2") 0 $gid" ]; then
    return 0
  fi
  if [ "$dry_run" = yes ]; then echo "would create folder $1 (mode $2, root:$3)"; return 0; fi
  install -d -m "$2" -o 0 -g "$gid" "$target"
  say "folder $1 (mode $2, root:$3)"
}

# put_file SOURCE PATH MODE GROUP [keep]: copy unless identical; with "keep", never replace
# an existing file (an operator's config).
put_file() {
  gid=$(group_id "$4"); gid=${gid:-0}
  target="$prefix$2"
  if [ -e "$target" ]; then
    if [ "${5:-}" = keep ]; then
      say "kept $2 (yours; the shipped example is beside it)"
      return 0
    fi
    if cmp -s "$1" "$target" && [ "$(stat -c '%a %u %g' "$target")" = "$(printf '%o' "0$3") 0 $gid" ]; then
      return 0
    fi
  fi
  if [ "$dry_run" = yes ]; then echo "would install $2 (mode $3, root:$4) from $1"; return 0; fi
  install -D -m "$3" -o 0 -g "$gid" "$1" "$target"
  say "installed $2"
}

need() {
  [ -e "$1" ] || die "missing $1: run from a blankspot checkout or an unpacked bundle (deploy/make-bundle.sh)"
}

# -- what will be installed ---------------------------------------------------------------------
need "$source_root/systemd/$unit"
if [ "$collector" = yes ]; then
  need "$source_root/systemd/blankspot-serve.service"
  need "$source_root/systemd/blankspot-sms-gateway.service"
  need "$source_root/systemd/sms-gateway.env.example"
fi
if [ "$collector" = no ]; then
  need "$source_root/deploy/agent.example.toml"
  need "$source_root/deploy/udev/90-blankspot.rules"
fi
wheels=""
# Run from an unpacked bundle, the wheels beside the installer are the ones to use.
if [ -z "$bundle" ] && [ "$pip" = yes ] && [ -d "$source_root/wheels" ]; then bundle=$source_root/wheels; fi
if [ -n "$bundle" ]; then
  if [ -d "$bundle/wheels" ]; then wheels=$(cd "$bundle/wheels" && pwd)
  elif [ -d "$bundle" ]; then wheels=$(cd "$bundle" && pwd)
  else die "--bundle: no such folder: $bundle"
  fi
  set -- "$wheels"/blankspot-*.whl
  [ -e "$1" ] || die "--bundle: no blankspot-*.whl in $wheels (make it with deploy/make-bundle.sh)"
  [ $# -eq 1 ] || die "--bundle: several blankspot wheels in $wheels; keep one"
  wheel=$1
fi

# -- the service user ---------------------------------------------------------------------------
# A system user without a login.  Its groups give the agent the modem's serial ports
# (dialout) and, on a Raspberry Pi, the GPIO pins (gpio; absent elsewhere, then skipped).
# The same for the collector, so that installing both roles on one host does not make the
# file flip between two versions; the collector's unit has no devices anyway.
# systemd-sysusers creates what is missing and leaves an existing user as it is.
sysusers=$(mktemp)
trap 'rm -f "$sysusers"' EXIT
{
  echo "# blankspot service user (deploy/install.sh)"
  echo "u $user - \"blankspot service\" /var/lib/blankspot /usr/sbin/nologin"
  echo "m $user dialout"
  if [ -n "$(group_id gpio)" ]; then echo "m $user gpio"; fi
} > "$sysusers"
if [ "$collector" = no ] && [ -z "$(group_id gpio)" ]; then
  say "no gpio group here (not a Raspberry Pi?): the status LEDs and button will not be reachable"
fi
command -v systemd-sysusers >/dev/null || die "systemd-sysusers not found (part of systemd)"
put_file "$sysusers" /etc/sysusers.d/blankspot.conf 644 root
if [ "$dry_run" = yes ]; then
  systemd-sysusers --root="$root" --dry-run "$sysusers" 2>&1 | sed 's/^/would: /'
else
  systemd-sysusers --root="$root" "$prefix/etc/sysusers.d/blankspot.conf"
fi

# -- Python: /opt/blankspot/venv ----------------------------------------------------------------
if [ "$pip" = yes ]; then
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
    || die "$python is not Python 3.11 or newer (Raspberry Pi OS Bookworm has 3.11)"
  if [ ! -x "$prefix$venv/bin/python" ]; then
    # --system-site-packages: gpiozero's pin libraries (python3-lgpio, python3-rpi.gpio)
    # come from apt on Raspberry Pi OS; packages pip installs in the venv still come first.
    run "$python" -m venv --system-site-packages "$prefix$venv"
  fi
  vpython="$prefix$venv/bin/python"
  pipq="-m pip --disable-pip-version-check --no-input"
  if [ "$dry_run" = yes ]; then did="would install"; else did="installed"; fi
  pip_ran=no
  if [ -n "$wheels" ]; then
    # Offline: only the bundle's wheels, never an index.  The stamp beside the venv holds the
    # wheel's hash, then the extras installed with it, one a line: a rebuilt wheel of the same
    # version is installed, an unchanged one is not, and a role needing more extras adds them.
    stamp="$prefix$venv/.blankspot-wheel.sha256"
    sum=$(sha256sum "$wheel" | cut -d' ' -f1)
    had=""
    if [ "$(head -n 1 "$stamp" 2>/dev/null || true)" = "$sum" ]; then had=$(tail -n +2 "$stamp"); fi
    missing=no
    for extra in $(echo "$extras" | tr , ' '); do
      echo "$had" | grep -qx "$extra" || missing=yes
    done
    if [ "$(head -n 1 "$stamp" 2>/dev/null || true)" != "$sum" ] || [ "$missing" = yes ]; then
      want=$wheel${extras:+[$extras]}
      # shellcheck disable=SC2086
      run "$vpython" $pipq install --quiet --no-index --find-links "$wheels" "$want" \
        || die "the wheels in $wheels do not hold everything blankspot${extras:+[$extras]} needs: make the bundle with deploy/make-bundle.sh${extras:+ --extras $extras}"
      # shellcheck disable=SC2086
      run "$vpython" $pipq install --quiet --no-index --find-links "$wheels" --force-reinstall --no-deps "$wheel"
      if [ "$dry_run" = no ]; then
        { echo "$sum"; { echo "$had"; echo "$extras" | tr , '\n'; } | grep -v '^$' | sort -u; } > "$stamp"
      fi
      say "$did $(basename "$wheel")${extras:+ with $extras} into $venv"
      pip_ran=yes
    fi
  else
    # shellcheck disable=SC2086
    run "$vpython" $pipq install --quiet --upgrade "$source_root${extras:+[$extras]}"
    say "$did blankspot${extras:+[$extras]} from $source_root into $venv"
    pip_ran=yes
  fi
  if [ -n "$prefix" ] && [ "$dry_run" = no ] && [ "$pip_ran" = yes ]; then
    # pip wrote the build folder's path into the scripts it made, venv into its own files,
    # and both into the compiled modules (the paths tracebacks show): name the venv where it
    # is once the image boots.
    grep -rlsF "$prefix$venv" "$prefix$venv/bin" "$prefix$venv/pyvenv.cfg" | while IFS= read -r file; do
      [ -L "$file" ] || sed -i "s|$prefix$venv|$venv|g" "$file"
    done
    "$vpython" -m compileall -q -f -s "$prefix" -p / "$prefix$venv/lib" >/dev/null
  fi
  if [ -n "$prefix" ] && [ "$dry_run" = no ]; then
    interpreter=$(readlink -f "$prefix$venv/bin/python")
    [ -x "$prefix$interpreter" ] \
      || say "note: $root has no $interpreter, which $venv/bin/python runs: install it there, or give --python"
  fi
fi

# -- configuration: /etc/blankspot ----------------------------------------------------------------
# Readable by the service's group, not by everyone: it holds broker passwords and keys.
put_dir /etc/blankspot 750 "$user"
if [ "$collector" = no ]; then
  put_file "$source_root/deploy/agent.example.toml" /etc/blankspot/agent.example.toml 644 root
  put_file "$source_root/deploy/agent.example.toml" /etc/blankspot/agent.toml 640 "$user" keep
else
  put_file "$source_root/systemd/collector.env.example" /etc/blankspot/collector.env.example 644 root
  # Read by systemd as root only: it holds the broker's and the database's passwords.
  put_file "$source_root/systemd/collector.env.example" /etc/blankspot/collector.env 600 root keep
  put_file "$source_root/systemd/serve.env.example" /etc/blankspot/serve.env.example 644 root
  put_file "$source_root/systemd/serve.env.example" /etc/blankspot/serve.env 600 root keep
  put_file "$source_root/systemd/sms-gateway.env.example" /etc/blankspot/sms-gateway.env.example 644 root
  put_file "$source_root/systemd/sms-gateway.env.example" /etc/blankspot/sms-gateway.env 600 root keep
  # The units' heartbeat keys, one <device id>.key each (root:blankspot 0640): the SMS
  # gateway, running as the service user, reads the one of each message's unit.
  put_dir /etc/blankspot/heartbeat-keys 750 "$user"
fi
for doc in install.md serve.md sms-heartbeat.md; do
  if [ -e "$source_root/docs/$doc" ]; then
    put_file "$source_root/docs/$doc" "/opt/blankspot/share/doc/$doc" 644 root
  fi
done

# -- the unit's heartbeat key: /etc/blankspot/heartbeat.key -------------------------------------
# It signs the heartbeat SMS the unit sends while its data link is down (docs/sms-heartbeat.md);
# the centre checks them with its copy.  32 random bytes as 64 hex digits, the format
# agent.shared.heartbeat.new_key() writes; made once, never replaced (the centre's copy
# would no longer match).  root:blankspot 0640, as the broker password: the agent reads it.
key=/etc/blankspot/heartbeat.key
key_made=no
if [ "$collector" = no ] && [ ! -e "$prefix$key" ]; then
  if [ "$dry_run" = yes ]; then
    echo "would create $key (a new heartbeat key, mode 640, root:$user)"
  else
    gid=$(group_id "$user"); gid=${gid:-0}
    (
      umask 077
      { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; echo; } > "$prefix$key.new"
    )
    grep -Eqx '[0-9a-f]{64}' "$prefix$key.new" || { rm -f "$prefix$key.new"; die "could not make a heartbeat key from /dev/urandom"; }
    chown "0:$gid" "$prefix$key.new"
    chmod 640 "$prefix$key.new"
    mv "$prefix$key.new" "$prefix$key"
    say "installed $key (a new heartbeat key)"
    key_made=yes
  fi
fi

# -- udev: stable names for the modem's ports ---------------------------------------------------
if [ "$collector" = no ]; then
  rules="$source_root/deploy/udev/90-blankspot.rules"
  if [ "$share_modem" = yes ]; then
    shared=$(mktemp)
    trap 'rm -f "$sysusers" "$shared"' EXIT
    if [ -x "$prefix$venv/bin/python" ]; then
      "$prefix$venv/bin/python" -m agent.commands.udev_rules --share-modem --profiles "$source_root/firmware_configs" > "$shared"
    else
      PYTHONPATH="$source_root" "$python" -m agent.commands.udev_rules --share-modem --profiles "$source_root/firmware_configs" > "$shared"
    fi
    rules=$shared
  fi
  before=$(cat "$prefix/etc/udev/rules.d/90-blankspot.rules" 2>/dev/null || true)
  put_file "$rules" /etc/udev/rules.d/90-blankspot.rules 644 root
  if [ -z "$prefix" ] && [ "$dry_run" = no ] && [ -S /run/udev/control ] \
     && [ "$before" != "$(cat /etc/udev/rules.d/90-blankspot.rules)" ]; then
    udevadm control --reload
    # Apply the rules to a modem that is already plugged in (links, ModemManager tags).
    udevadm trigger --action=change --subsystem-match=tty --subsystem-match=usb
    say "udev rules reloaded; if ModemManager already holds the modem: systemctl restart ModemManager"
  fi
fi

# -- systemd --------------------------------------------------------------------------------------
# CAP_NET_RAW for ICMP latency is granted by the unit (AmbientCapabilities=), not by
# changing net.ipv4.ping_group_range for the whole system.
put_file "$source_root/systemd/$unit" "/etc/systemd/system/$unit" 644 root
# The live map is installed beside the collector but not enabled: it needs a login (or stays
# on this machine) and the address, in serve.env, first (docs/serve.md).
# So is the SMS gateway: it needs the centre's modem, named in sms-gateway.env, and the
# units' keys (docs/sms-heartbeat.md).
if [ "$collector" = yes ]; then
  put_file "$source_root/systemd/blankspot-serve.service" /etc/systemd/system/blankspot-serve.service 644 root
  put_file "$source_root/systemd/blankspot-sms-gateway.service" /etc/systemd/system/blankspot-sms-gateway.service 644 root
fi
if [ -z "$prefix" ] && [ -d /run/systemd/system ]; then
  run systemctl daemon-reload
  if ! systemctl is-enabled --quiet "$unit" 2>/dev/null; then run systemctl enable --quiet "$unit"; fi
  if [ "$start" = yes ]; then run systemctl restart "$unit"; fi
else
  # No running systemd to talk to (an image, a chroot, tests): enable by symlink only.
  if [ ! -e "$prefix/etc/systemd/system/multi-user.target.wants/$unit" ]; then
    run systemctl --root="$root" enable --quiet "$unit"
  fi
  if [ "$start" = yes ]; then say "--start ignored: no running systemd for $root"; fi
fi

if [ "$dry_run" = yes ]; then exit 0; fi
say "done: $unit is enabled"
if [ "$collector" = no ]; then
  say "next: set device.id and [uplink] in /etc/blankspot/agent.toml, check it with"
  say "      sudo -u $user $venv/bin/blankspot run --check --config /etc/blankspot/agent.toml"
  say "      then: sudo systemctl restart $unit; journalctl -u $unit -f"
  # The centre's copy of the key: the collector host's SMS gateway checks this unit's
  # heartbeat SMS with it.
  device=$(awk '/^[[:space:]]*\[/ { section = $0 }
                section ~ /^[[:space:]]*\[device\]/ && /^[[:space:]]*id[[:space:]]*=/ {
                  sub(/^[^=]*=[[:space:]]*"/, ""); sub(/".*/, ""); print; exit }' "$prefix/etc/blankspot/agent.toml" 2>/dev/null || true)
  if [ "$key_made" = yes ]; then what="its new heartbeat key"; else what="its heartbeat key"; fi
  say "heartbeat SMS: copy $what $key to the collector host as"
  say "      /etc/blankspot/heartbeat-keys/${device:-<device id>}.key (root:blankspot, mode 640)"
else
  say "next: fill in /etc/blankspot/collector.env, then: sudo systemctl restart $unit"
  say "      the live map: set /etc/blankspot/serve.env (docs/serve.md), then: sudo systemctl enable --now blankspot-serve"
  say "      the SMS gateway: set the modem's port in /etc/blankspot/sms-gateway.env, put each unit's key in"
  say "      /etc/blankspot/heartbeat-keys/<device id>.key (docs/sms-heartbeat.md), then: sudo systemctl enable --now blankspot-sms-gateway"
fi
