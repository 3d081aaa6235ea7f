#!/bin/sh
# prepare-rootfs.sh: copied into a build context by `factory render` for images without a shell
# (distroless, scratch). It runs in the throwaway helper stage, never in the image, and writes under
# /rootfs exactly the files that the final stage copies with one `COPY --from=helper /rootfs/ /`:
#
#   --user NAME:UID:GID  /rootfs/etc/passwd and /rootfs/etc/group: the upstream's own entries (the
#                        Dockerfile copies them in first; scratch has none, so root is written) plus
#                        the user. An entry that already exists with the same name and ids is kept
#                        (an org parent image made it); a name or id taken by another entry fails.
#   --ca-certificates    /rootfs/etc/ssl/certs/ca-certificates.crt, Debian's current bundle
#   --timezone ZONE      /rootfs/etc/localtime, /rootfs/etc/timezone, /rootfs/usr/share/zoneinfo/ZONE
#   --busybox            /rootfs/busybox/busybox (static) and one symlink per applet beside it
#
# The helper image must be Debian or Ubuntu (apt). Values arrive as exec-form arguments, so no shell
# parses them, and the renderer has already checked them against the manifest schema's patterns.
set -eu

out=/rootfs
user=
ca=
tz=
busybox=
while [ $# -gt 0 ]; do
  case $1 in
    --user) user=$2; shift 2 ;;
    --ca-certificates) ca=1; shift ;;
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
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends "$@"
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
  fi
  if ! grep -q "^$name:x:$uid:$gid:" "$out/etc/passwd"; then
    if grep -q -e "^$name:" -e "^[^:]*:[^:]*:$uid:" "$out/etc/passwd"; then
      fail "user name $name or uid $uid is already taken in the upstream's /etc/passwd; pick another user in the manifest"
    fi
    append_line "$out/etc/passwd" "$name:x:$uid:$gid::/nonexistent:/sbin/nologin"
  fi
  chmod 0644 "$out/etc/passwd" "$out/etc/group"
}

mkdir -p "$out"

packages=
if [ -n "$ca" ]; then packages="$packages ca-certificates"; fi
if [ -n "$tz" ]; then packages="$packages tzdata"; fi
if [ -n "$busybox" ]; then packages="$packages busybox-static"; fi
# word splitting is wanted here: the names above are fixed words
# shellcheck disable=SC2086
install_packages $packages

if [ -n "$user" ]; then add_user "$user"; fi

if [ -n "$ca" ]; then
  install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$out/etc/ssl/certs/ca-certificates.crt"
fi

if [ -n "$tz" ]; then
  # copies, not symlinks: the zone file may itself be a link, and the upstream may have its own
  install -D -m 0644 "/usr/share/zoneinfo/$tz" "$out/usr/share/zoneinfo/$tz"
  install -D -m 0644 "/usr/share/zoneinfo/$tz" "$out/etc/localtime"
  echo "$tz" >"$out/etc/timezone"
fi

if [ -n "$busybox" ]; then
  bin=$(command -v busybox)  # /bin or /usr/bin, depending on the release
  install -D -m 0755 "$bin" "$out/busybox/busybox"
  for applet in $("$bin" --list); do
    if [ "$applet" != busybox ]; then ln -s busybox "$out/busybox/$applet"; fi
  done
fi
