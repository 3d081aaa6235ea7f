#!/usr/bin/env bash
# Local services for the embedded default: dockerd (containerd image store), a distribution
# registry on 127.0.0.1:5000 and binfmt for arm64.
#   services.sh up      start what is not already reachable (idempotent)
#   services.sh down    stop only what `up` started, by recorded pid
#   services.sh status  one line per service
set -euo pipefail

STATE=${FACTORY_STATE:-/var/lib/factory}
TOOLS=$STATE/tools
RUN=$STATE/run
LOGS=$STATE/log
REGISTRY_ADDR=${FACTORY_REGISTRY_ADDR:-127.0.0.1:5000}
DOCKER_SOCK=${FACTORY_DOCKER_SOCK:-/var/run/docker.sock}
export PATH=$TOOLS/bin:$PATH

log() { printf 'services: %s\n' "$*" >&2; }
die() { printf 'services: error: %s\n' "$*" >&2; exit 2; }

wait_for() {  # seconds description command...
  local secs=$1 what=$2; shift 2
  local i
  for ((i = 0; i < secs * 4; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.25
  done
  die "$what did not come up within ${secs}s (see $LOGS)"
}

docker_up() { DOCKER_HOST=unix://$DOCKER_SOCK docker version --format '{{.Server.Version}}'; }
registry_up() { curl -fsS -o /dev/null "http://$REGISTRY_ADDR/v2/"; }
binfmt_up() { grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null; }

start_daemon() {  # name command...   (detached from this shell, pid recorded)
  local name=$1; shift
  mkdir -p "$RUN" "$LOGS"
  setsid nohup "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
}

up_binfmt() {
  binfmt_up && return 0
  mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
  binfmt_up || die "binfmt for arm64 could not be enabled (is qemu-user-static installed? run scripts/bootstrap.sh)"
  log "binfmt: qemu-aarch64 enabled"
}

up_docker() {
  if docker_up >/dev/null 2>&1; then log "dockerd: already reachable at $DOCKER_SOCK"; return 0; fi
  command -v dockerd >/dev/null || die "dockerd not found: run scripts/bootstrap.sh"
  mkdir -p "$STATE/docker"
  # The containerd image store is what lets buildx's docker driver build multi-platform images.
  echo '{"features": {"containerd-snapshotter": true}}' >"$STATE/daemon.json"
  start_daemon dockerd dockerd --config-file "$STATE/daemon.json" --data-root "$STATE/docker" \
    --exec-root "$RUN/docker-exec" --pidfile "$RUN/dockerd.self.pid" -H "unix://$DOCKER_SOCK"
  wait_for 60 dockerd docker_up
  log "dockerd: started (pid $(cat "$RUN/dockerd.pid"), data in $STATE/docker)"
}

up_registry() {
  if registry_up 2>/dev/null; then log "registry: already reachable at $REGISTRY_ADDR"; return 0; fi
  command -v docker-registry >/dev/null || die "docker-registry not found: run scripts/bootstrap.sh"
  mkdir -p "$STATE/registry/data"
  cat >"$STATE/registry/config.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $STATE/registry/data
  delete:
    enabled: true
http:
  addr: $REGISTRY_ADDR
YAML
  start_daemon registry docker-registry serve "$STATE/registry/config.yml"
  wait_for 20 registry registry_up
  log "registry: started on $REGISTRY_ADDR (pid $(cat "$RUN/registry.pid"), data in $STATE/registry/data)"
}

stop_recorded() {  # name
  local pidfile=$RUN/$1.pid pid
  [ -f "$pidfile" ] || { log "$1: not started by us, left alone"; return 0; }
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 80); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    log "$1: stopped (pid $pid)"
  fi
  rm -f "$pidfile"
}

status() {
  binfmt_up && echo "binfmt    arm64 enabled" || echo "binfmt    arm64 NOT enabled"
  docker_up >/dev/null 2>&1 && echo "dockerd   up ($DOCKER_SOCK, $(docker_up))" || echo "dockerd   down"
  registry_up 2>/dev/null && echo "registry  up ($REGISTRY_ADDR)" || echo "registry  down"
}

case "${1:-up}" in
  up) up_binfmt; up_docker; up_registry ;;
  down) stop_recorded registry; stop_recorded dockerd ;;
  status) status ;;
  *) die "usage: services.sh up|down|status" ;;
esac
