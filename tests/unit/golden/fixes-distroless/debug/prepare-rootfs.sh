#!/bin/sh
# prepare-rootfs.sh: copied into a build context by `factory render`. It runs in a throwaway helper
# stage, never in the image, and writes under /rootfs exactly the files that the final stage copies
# with one `COPY --from=helper /rootfs/ /`. The helper stage is either
#
#   the helper image   (images without a shell: distroless, scratch) a pinned Debian/Ubuntu image;
#                      the Dockerfile first copies the upstream's /etc/passwd and /etc/group (if any)
#                      to /rootfs/etc;
#   --upstream         (apt or apk images that ask only for the org hardening) the upstream image
#                      itself, on the target platform: its own /etc files are the starting point and
#                      its own package manager installs ca-certificates and tzdata here, so that the
#                      image gets the changed files and none of the package manager's leftovers.
#
#   --user NAME:UID:GID  /rootfs/etc/passwd and /rootfs/etc/group (and /etc/shadow, /etc/gshadow when
#                        the upstream has them): the upstream's own entries (scratch has none, so root
#                        is written) plus the user. An entry that already exists with the same name and
#                        ids is kept (an org parent image made it); a name or id taken by another entry
#                        fails.
#   --ca-certificates    /rootfs/etc/ssl/certs/ca-certificates.crt, the distro's current public bundle,
#                        plus the --org-certs
#   --org-certs DIR      the org's CA certificates, DIR/*.crt with one certificate each: into
#                        /usr/local/share/ca-certificates (so that a later update-ca-certificates keeps
#                        them), the bundle, OpenSSL's hash links in /etc/ssl/certs, and
#                        /etc/ssl/org-ca-certificates.crt (the org CAs alone, for NODE_EXTRA_CA_CERTS)
#   --java               (with --upstream) also import the org CAs into the JRE's cacerts with keytool
#   --timezone ZONE      /rootfs/usr/share/zoneinfo/ZONE, /rootfs/etc/localtime, /rootfs/etc/timezone
#   --busybox            /rootfs/busybox/busybox (static) and one symlink per applet beside it
#
# With --upstream, setuid/setgid programs of the upstream are also copied without those bits: the only
# way a new layer can take the bit away is to carry the file.
#
# Values arrive as exec-form arguments, so no shell parses them, and the renderer has already checked
# them against the manifest schema's patterns.
set -eu

out=/rootfs
local_cas=/usr/local/share/ca-certificates
bundle=/etc/ssl/certs/ca-certificates.crt
org_bundle=/etc/ssl/org-ca-certificates.crt
upstream=
user=
ca=
org_certs=
java=
tz=
busybox=
while [ $# -gt 0 ]; do
  case $1 in
    --upstream) upstream=1; shift ;;
    --user) user=$2; shift 2 ;;
    --ca-certificates) ca=1; shift ;;
    --org-certs) org_certs=$2; ca=1; shift 2 ;;
    --java) java=1; shift ;;
    --timezone) tz=$2; shift 2 ;;
    --busybox) busybox=1; shift ;;
    *) echo "prepare-rootfs: unknown argument: $1" >&2; exit 2 ;;
  esac
done

fail() {
  echo "prepare-rootfs: $*" >&2
  exit 1
}

install_packages() {
  if [ $# -eq 0 ]; then return 0; fi
  if command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends "$@"
  elif command -v apk >/dev/null; then
    apk add --no-cache "$@"
  else
    fail "neither apt-get nor apk in the helper stage: it must be a Debian, Ubuntu or Alpine image"
  fi
}

# keep FILE: copy a file or symlink of this stage to the same path under /rootfs, with its owner and mode
keep() {
  mkdir -p "$out$(dirname "$1")"
  cp -Pp "$1" "$out$1"
}

# append_line FILE LINE: add LINE, first ending the file's last line if it has no newline
append_line() {
  if [ -s "$1" ] && [ -n "$(tail -c 1 "$1")" ]; then echo >>"$1"; fi
  echo "$2" >>"$1"
}

add_user() {
  name=${1%%:*}
  ids=${1#*:}
  uid=${ids%%:*}
  gid=${ids#*:}
  mkdir -p "$out/etc"
  if [ ! -e "$out/etc/passwd" ]; then echo 'root:x:0:0:root:/root:/sbin/nologin' >"$out/etc/passwd"; fi
  if [ ! -e "$out/etc/group" ]; then echo 'root:x:0:' >"$out/etc/group"; fi

  if ! grep -q "^$name:x:$gid:" "$out/etc/group"; then
    if grep -q -e "^$name:" -e "^[^:]*:[^:]*:$gid:" "$out/etc/group"; then
      fail "group name $name or gid $gid is already taken in the upstream's /etc/group; pick another user in the manifest"
    fi
    append_line "$out/etc/group" "$name:x:$gid:"
    # locked, no password; written here rather than by groupadd so that no date enters the file
    if [ -e "$out/etc/gshadow" ]; then append_line "$out/etc/gshadow" "$name:!::"; fi
  fi
  if ! grep -q "^$name:x:$uid:$gid:" "$out/etc/passwd"; then
    if grep -q -e "^$name:" -e "^[^:]*:[^:]*:$uid:" "$out/etc/passwd"; then
      fail "user name $name or uid $uid is already taken in the upstream's /etc/passwd; pick another user in the manifest"
    fi
    append_line "$out/etc/passwd" "$name:x:$uid:$gid::/nonexistent:/sbin/nologin"
    # locked account, empty "last change" (useradd would write today's date: not reproducible)
    if [ -e "$out/etc/shadow" ]; then append_line "$out/etc/shadow" "$name:!::0:99999:7:::"; fi
  fi
  chmod 0644 "$out/etc/passwd" "$out/etc/group"
}

# The org CAs in the helper's trust store, then the files that store is made of, copied out.
trust_org_cas() {
  mkdir -p "$local_cas" "$out$local_cas" "$out$(dirname "$org_bundle")"
  : >"$out$org_bundle"
  for cert in "$org_certs"/*.crt; do
    install -m 0644 "$cert" "$local_cas/"
    install -m 0644 "$cert" "$out$local_cas/"
    cat "$cert" >>"$out$org_bundle"
  done
  chmod 0644 "$out$org_bundle"
}

# The links update-ca-certificates made for the org CAs (name.pem and OpenSSL's hash.0): they point
# into /usr/local/share/ca-certificates, which the image gets too. Links to the public CAs point into
# the ca-certificates package, which the image does not get; the bundle covers those.
keep_org_links() {
  for link in /etc/ssl/certs/*; do
    if [ -L "$link" ]; then
      case $(readlink -f "$link") in
        "$local_cas"/*) keep "$link" ;;
      esac
    fi
  done
}

import_into_java() {
  command -v keytool >/dev/null || fail "runtime java, but no keytool on PATH to add the org CAs to cacerts"
  for cert in "$org_certs"/*.crt; do
    alias=factory-$(basename "$cert" .crt)
    if ! keytool -list -cacerts -storepass changeit -alias "$alias" >/dev/null 2>&1; then
      keytool -importcert -noprompt -cacerts -storepass changeit -alias "$alias" -file "$cert"
    fi
  done
  java_home=$(dirname "$(dirname "$(readlink -f "$(command -v keytool)")")")
  keep "$(readlink -f "$java_home/lib/security/cacerts")"
}

mkdir -p "$out"

if [ -n "$upstream" ]; then
  for f in /etc/passwd /etc/group /etc/shadow /etc/gshadow; do
    if [ -e "$f" ]; then keep "$f"; fi
  done
  # before anything is installed here: only the upstream's own programs
  find / -xdev -path "$out" -prune -o -type f \( -perm -4000 -o -perm -2000 \) -print | while read -r f; do
    keep "$f"
    chmod a-s "$out$f"
  done
fi

packages=
if [ -n "$ca" ]; then packages="$packages ca-certificates"; fi
if [ -n "$tz" ]; then packages="$packages tzdata"; fi
if [ -n "$busybox" ]; then packages="$packages busybox-static"; fi
# word splitting is wanted here: the names above are fixed words
# shellcheck disable=SC2086
install_packages $packages

if [ -n "$user" ]; then add_user "$user"; fi

if [ -n "$ca" ]; then
  if [ -n "$org_certs" ]; then trust_org_cas; fi
  update-ca-certificates
  install -D -m 0644 "$bundle" "$out$bundle"
  if [ -n "$org_certs" ]; then keep_org_links; fi
  if [ -n "$java" ] && [ -n "$org_certs" ]; then import_into_java; fi
fi

if [ -n "$tz" ]; then
  mkdir -p "$out/etc"
  install -D -m 0644 "/usr/share/zoneinfo/$tz" "$out/usr/share/zoneinfo/$tz"
  if [ -n "$upstream" ]; then
    # the distro's own form: a link to the zone file (tzdata's configuration reads it)
    ln -snf "/usr/share/zoneinfo/$tz" "$out/etc/localtime"
  else
    # a copy: the zone file may itself be a link, and the upstream may have its own
    install -D -m 0644 "/usr/share/zoneinfo/$tz" "$out/etc/localtime"
  fi
  echo "$tz" >"$out/etc/timezone"
fi

if [ -n "$busybox" ]; then
  bin=$(command -v busybox)  # /bin or /usr/bin, depending on the release
  install -D -m 0755 "$bin" "$out/busybox/busybox"
  for applet in $("$bin" --list); do
    if [ "$applet" != busybox ]; then ln -s busybox "$out/busybox/$applet"; fi
  done
fi
