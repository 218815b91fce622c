#!/usr/bin/env bash
# Sets a Debian machine up for the tests' container path on Podman, with no
# image registry in reach, and prints the environment the tests need:
#
#   eval "$(scripts/podman-up.sh)"
#
# It installs what is missing (podman, runc, debootstrap, curl), writes the
# engine settings that work here (runc, cgroupfs, limits RabbitMQ accepts),
# starts Podman's Docker-compatible API service if it is not running, and
# builds a RabbitMQ image from Debian's packages if there is none yet
# (a few minutes, once). Then it prints `export NAME=value` lines:
# DOCKER_HOST and the testcontainers settings, the image, and the backends
# (RabbitMQ in a container; Kafka embedded, as no Kafka image can be built
# here). Progress goes to stderr. A second run takes a few seconds.
#
# Needs root (apt-get, /etc/containers). On other systems, or with a
# registry, install Podman your way and set the same variables (see
# docs/00-setup.md); the official images then work as they are.
set -euo pipefail

# The image is ours, named as such: RabbitMQ from Debian 12 (bookworm),
# with the management plugin. It never claims to be the official image.
readonly IMAGE=localhost/myevents-rabbitmq:3.10-debian
readonly SUITE=bookworm
readonly RABBITMQ_SERIES=3.10.
readonly SOCKET=/run/podman/podman.sock
readonly SERVICE_LOG=/var/log/myevents-podman-service.log
readonly PIDFILE=/run/podman/myevents-service.pid
readonly CONF=/etc/containers/containers.conf
readonly MARK="# Written by scripts/podman-up.sh of the MyEvents workbench."

say() { echo "podman-up: $*" >&2; }
die() { say "$*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run me as root: I install packages and write $CONF (sudo scripts/podman-up.sh)"
command -v apt-get >/dev/null && command -v dpkg-query >/dev/null ||
  die "I set up Debian only; elsewhere install Podman, start its API service and set DOCKER_HOST as docs/00-setup.md says"

# 1. Packages, from the Debian mirror apt already uses.
missing=()
for pkg in podman runc debootstrap curl; do
  dpkg-query -W -f '${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing ${missing[*]}"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# 2. Engine settings. Debian's default runtime, crun, cannot set rlimits on
# this project's machines and refuses their cgroup layout; runc with
# cgroupfs works. RabbitMQ needs open files, and the default ulimits keep
# the container within what this machine allows.
settings="$MARK
[containers]
default_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]

[engine]
runtime = \"runc\"
cgroup_manager = \"cgroupfs\""
conf_changed=false
if [ -f "$CONF" ] && ! grep -qxF "$MARK" "$CONF"; then
  # Someone else's file: keep it if it already says what we need.
  got=$(podman info --format '{{.Host.OCIRuntime.Name}} {{.Host.CgroupManager}}' 2>/dev/null || true)
  [ "$got" = "runc cgroupfs" ] ||
    die "$CONF exists and is not mine; put these settings in it, then run me again:
$settings"
  grep -q 'default_ulimits' "$CONF" || say "note: $CONF sets no default_ulimits; RabbitMQ may fail to start if the open-file limit is too high for runc"
elif [ "$(cat "$CONF" 2>/dev/null)" != "$settings" ]; then
  say "writing $CONF (runc, cgroupfs, ulimits)"
  mkdir -p "$(dirname "$CONF")"
  printf '%s\n' "$settings" >"$CONF"
  conf_changed=true
fi

# 3. The API service that testcontainers-go talks to, as if it were Docker.
ping() { curl -fsS --max-time 2 --unix-socket "$SOCKET" http://podman/_ping >/dev/null 2>&1; }
if $conf_changed && [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  say "restarting the API service to read the new settings"
  kill "$(cat "$PIDFILE")"
  for _ in $(seq 1 50); do ping || break; sleep 0.1; done
fi
# A service started from a directory that was deleted since (a clone that
# CI removed) still answers pings, but every container start fails
# ("conmon: Failed to get working directory"): start it afresh.
if [ -f "$PIDFILE" ] && [[ "$(readlink "/proc/$(cat "$PIDFILE")/cwd" 2>/dev/null)" == *" (deleted)" ]]; then
  say "restarting the API service: the directory it was started in is gone"
  kill "$(cat "$PIDFILE")"
  for _ in $(seq 1 50); do ping || break; sleep 0.1; done
fi
if ping; then
  say "API service: already answering at unix://$SOCKET"
else
  mkdir -p "$(dirname "$SOCKET")"
  rm -f "$SOCKET"
  say "starting the API service at unix://$SOCKET (log: $SERVICE_LOG)"
  # Detached, and with none of our file descriptors: $(...) in the caller
  # must not wait for it.
  # Started from /, which outlives any checkout (see above).
  (cd / && exec setsid podman system service --time=0 "unix://$SOCKET" </dev/null >>"$SERVICE_LOG" 2>&1) &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 100); do ping && break; sleep 0.1; done
  ping || die "the API service did not answer within 10 s; see $SERVICE_LOG"
fi

# 4. The RabbitMQ image, built from Debian's packages: no registry needed.
debian_mirror() {
  # The first Debian source apt uses for this machine's release, from
  # deb822 files (URIs:/Suites:) or one-line entries (deb URI suite ...).
  local codename
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  [ -n "$codename" ] || return 1
  {
    for f in /etc/apt/sources.list.d/*.sources; do
      [ -f "$f" ] || continue
      awk -v want="$codename" '
        function flush() { if (deb && suite && enabled && uri != "") { print uri; found = 1; exit } }
        /^[ \t]*$/ { flush(); deb = suite = 0; enabled = 1; uri = ""; next }
        BEGIN { enabled = 1 }
        tolower($1) == "types:"   { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
        tolower($1) == "uris:"    { uri = $2 }
        tolower($1) == "suites:"  { for (i = 2; i <= NF; i++) if ($i == want) suite = 1 }
        tolower($1) == "enabled:" { enabled = (tolower($2) != "no") }
        END { if (!found) flush() }' "$f"
    done
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      sed -e 's/#.*//' -e 's/\[[^]]*\]//' |
      awk -v want="$codename" '$1 == "deb" && $3 == want { print $2 }'
  } | head -n 1
}

if podman image exists "$IMAGE"; then
  say "image $IMAGE: already built"
else
  mirror=$(debian_mirror || true)
  [ -n "$mirror" ] || die "found no Debian mirror for this release in /etc/apt/sources.list*; I build the image from the one apt uses"
  command -v debootstrap >/dev/null || PATH=$PATH:/usr/sbin:/sbin
  work=$(mktemp -d "${TMPDIR:-/var/tmp}/myevents-rabbitmq.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  root=$work/root
  say "building $IMAGE: Debian $SUITE with rabbitmq-server from $mirror (a few minutes)"
  if ! debootstrap --variant=minbase --include=rabbitmq-server "$SUITE" "$root" "$mirror" >"$work/debootstrap.log" 2>&1; then
    tail -n 20 "$work/debootstrap.log" >&2
    die "debootstrap failed (the end of its log is above)"
  fi
  version=$(chroot "$root" dpkg-query -W -f '${Version}' rabbitmq-server)
  case $version in
    "$RABBITMQ_SERIES"*) ;;
    *) die "Debian $SUITE now has RabbitMQ $version, not ${RABBITMQ_SERIES%.}: change IMAGE's tag in $0" ;;
  esac
  # Tests reach the broker from outside the container as guest, and
  # testcontainers waits for "Server startup complete" on its stdout.
  mkdir -p "$root/etc/rabbitmq/conf.d"
  cat >"$root/etc/rabbitmq/conf.d/10-myevents.conf" <<'EOF'
# Written by scripts/podman-up.sh: a broker for tests only.
loopback_users.guest = false
log.console = true
EOF
  echo '[rabbitmq_management].' >"$root/etc/rabbitmq/enabled_plugins"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc "$root"/usr/share/man
  # The server runs as rabbitmq, straight from its own script (not Debian's
  # wrapper, which would send its output to a file), so that it logs to
  # stdout and stops cleanly on SIGTERM.
  tar -C "$root" --numeric-owner -c . |
    podman import \
      --change 'USER rabbitmq' --change 'WORKDIR /var/lib/rabbitmq' \
      --change 'CMD ["/usr/lib/rabbitmq/bin/rabbitmq-server"]' \
      --change 'EXPOSE 5672' --change 'EXPOSE 15672' \
      --message "RabbitMQ $version from Debian $SUITE packages, for tests (scripts/podman-up.sh)" \
      - "$IMAGE" >/dev/null
  say "image $IMAGE: built (RabbitMQ $version)"
fi

# 5. The environment, for eval.
cat <<EOF
export DOCKER_HOST=unix://$SOCKET
export TESTCONTAINERS_RYUK_DISABLED=true
export TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1
export BROKERTEST_RABBITMQ_IMAGE=$IMAGE
export BROKERTEST_RABBITMQ=container
export BROKERTEST_KAFKA=embedded
EOF
