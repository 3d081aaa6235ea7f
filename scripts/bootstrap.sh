#!/usr/bin/env bash
# Install the factory's real toolchain, idempotently.
#
# Debian 13 (trixie): everything from the distribution.
# Debian 12 (bookworm): the engine pieces that bookworm ships too old (docker 20.10 cannot build
# multi-platform with the docker driver) come from trixie's .debs, unpacked with `dpkg -x` into a
# private tools folder; the system's libc and runc are never touched (trixie's runc needs newer glibc).
# Anything else: check and explain, install nothing.
#
# Layout under $FACTORY_STATE (default /var/lib/factory):
#   tools/root/   unpacked trixie .debs          tools/bin/   symlinks the factory puts first on PATH
#   cache/debs/   fixture .debs (busybox-static for amd64 and arm64)
set -euo pipefail

STATE=${FACTORY_STATE:-/var/lib/factory}
TOOLS=$STATE/tools
DEBS=$STATE/cache/debs
APT_PRIVATE=$STATE/cache/apt-trixie
# Bump when the set of tools changes, so that a stale tools folder is refreshed.
TOOLSET_VERSION=6

SYSTEM_PKGS=(ca-certificates curl runc iptables qemu-user-static binfmt-support docker-registry
             mmdebstrap arch-test
             chromium)  # headless, for the catalog page test (tests/integration/test_catalog.py)
TRIXIE_ENGINE_PKGS=(docker.io docker-cli docker-buildx cosign containerd tini)
TOOL_BINS=(docker dockerd containerd containerd-shim-runc-v2 ctr docker-proxy cosign tini)

log() { printf 'bootstrap: %s\n' "$*" >&2; }
die() { printf 'bootstrap: error: %s\n' "$*" >&2; exit 2; }

distro_codename() {
  # shellcheck disable=SC1091
  . /etc/os-release 2>/dev/null || return 0
  [ "${ID:-}" = debian ] && printf '%s' "${VERSION_CODENAME:-}"
}

missing_system_pkgs() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || printf '%s ' "$p"
  done
}

apt_install() {
  local missing
  missing=$(missing_system_pkgs "$@")
  [ -z "$missing" ] && return 0
  log "installing system packages: $missing"
  apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

# apt-get against trixie with its own lists and cache, so the system's sources stay untouched.
private_apt() {
  local tool=$1; shift
  "$tool" -o Dir::Etc::SourceList="$APT_PRIVATE/sources.list" -o Dir::Etc::SourceParts=/dev/null \
    -o Dir::State::Lists="$APT_PRIVATE/lists" -o Dir::Cache="$APT_PRIVATE/cache" \
    -o APT::Architectures::=amd64 -o APT::Architectures::=arm64 -o Debug::NoLocking=1 "$@"
}

private_apt_update() {
  mkdir -p "$APT_PRIVATE/lists/partial" "$APT_PRIVATE/cache/archives/partial"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
    > "$APT_PRIVATE/sources.list"
  private_apt apt-get update -qq
}

download_debs() {  # dest pkg...
  local dest=$1; shift
  mkdir -p "$dest"
  (cd "$dest" && private_apt apt-get download -qq "$@" 2>/dev/null)
}

install_engine_from_trixie() {
  local tmp
  tmp=$(mktemp -d)
  download_debs "$tmp" "${TRIXIE_ENGINE_PKGS[@]}"
  # The .deb file names carry the versions: re-extract only when they changed, so that a running
  # dockerd's files are not swapped under it for nothing.
  if [ "$(cd "$tmp" && ls ./*.deb)" = "$(cat "$TOOLS/root/.debs" 2>/dev/null)" ]; then
    rm -rf "$tmp"; log "engine packages unchanged"; return 0
  fi
  rm -rf "$TOOLS/root.new" && mkdir -p "$TOOLS/root.new"
  for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$TOOLS/root.new"; done
  (cd "$tmp" && ls ./*.deb) >"$TOOLS/root.new/.debs"
  rm -rf "$TOOLS/root" "$tmp" && mv "$TOOLS/root.new" "$TOOLS/root"
}

link_tools() {  # prefix where the binaries live (/ or $TOOLS/root)
  local root=$1 name src
  mkdir -p "$TOOLS/bin"
  for name in "${TOOL_BINS[@]}"; do
    src=""
    for d in usr/bin usr/sbin usr/libexec/docker; do
      [ -x "$root/$d/$name" ] && src="$root/$d/$name" && break
    done
    [ -n "$src" ] || die "$name not found under $root after install"
    ln -sfn "$src" "$TOOLS/bin/$name"
  done
  # dockerd looks for docker-init on PATH for --init; Debian ships it as tini-static.
  ln -sfn "$root/usr/bin/tini-static" "$TOOLS/bin/docker-init"
  link_buildx_plugin "$root"
}

link_buildx_plugin() {  # prefix where the binaries live (/ or $TOOLS/root)
  # The docker CLI finds plugins only in fixed folders; this one is meant for local installs. It is
  # one link for the whole machine, so a bootstrap for another state folder (a cold-state test run)
  # can move it: every bootstrap, up to date or not, points it back at its own buildx.
  local plugin=$1/usr/libexec/docker/cli-plugins/docker-buildx
  [ -x "$plugin" ] || die "docker-buildx not found under $1"
  mkdir -p /usr/local/lib/docker/cli-plugins
  ln -sfn "$plugin" /usr/local/lib/docker/cli-plugins/docker-buildx
}

engine_root() {  # codename -> where the engine's files are
  if [ "$1" = trixie ]; then printf '/'; else printf '%s' "$TOOLS/root"; fi
}

fetch_fixture_debs() {
  ls "$DEBS"/busybox-static_*_arm64.deb "$DEBS"/tini_*_arm64.deb >/dev/null 2>&1 && return 0
  log "fetching busybox-static and tini (amd64, arm64) for test fixtures"
  download_debs "$DEBS" busybox-static:amd64 busybox-static:arm64 tini:amd64 tini:arm64
}

explain_unsupported() {
  cat >&2 <<MSG
bootstrap: this system is not Debian 12 or 13 running as root, so nothing was installed.
The factory needs, on PATH or under $TOOLS/bin:
  docker engine >= 26 with the containerd image store, docker buildx, cosign >= 2,
  qemu-user-static with binfmt_misc (arm64), the distribution registry (docker-registry),
  mmdebstrap and arch-test (test fixtures), trivy (pip extra 'dev').
Run 'factory doctor' to see what is missing.
MSG
  exit 2
}

main() {
  local codename stamp
  codename=$(distro_codename)
  [ "$(id -u)" = 0 ] || explain_unsupported
  case "$codename" in bookworm|trixie) ;; *) explain_unsupported ;; esac

  stamp="$TOOLS/.toolset-$TOOLSET_VERSION-$codename"
  if [ -f "$stamp" ] && [ -z "$(missing_system_pkgs "${SYSTEM_PKGS[@]}")" ]; then
    link_buildx_plugin "$(engine_root "$codename")"
    log "up to date ($codename, $TOOLS)"
    return 0
  fi
  mkdir -p "$TOOLS" "$DEBS"
  apt_install "${SYSTEM_PKGS[@]}"
  private_apt_update
  if [ "$codename" = trixie ]; then
    apt_install "${TRIXIE_ENGINE_PKGS[@]}"
  else
    log "fetching ${TRIXIE_ENGINE_PKGS[*]} from trixie into $TOOLS/root"
    install_engine_from_trixie
  fi
  link_tools "$(engine_root "$codename")"
  fetch_fixture_debs
  rm -f "$TOOLS"/.toolset-*
  touch "$stamp"
  log "done: tools in $TOOLS/bin"
}

main "$@"
