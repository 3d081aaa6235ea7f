#!/bin/sh
# apply-fixes.sh: copied into the build context of every apt or apk image by `factory render`. It runs first
# in the org layer's one RUN, from a bind mount (so it is in no layer). Two build args steer it; without
# them (policy.security_fixes: off, or a plain build) it only updates the package lists, as the RUN did
# before security fixes existed:
#
# $ARCHIVE_SUITES=configured: add the configured mirrors' release, -updates and -security suites to the
#    image's sources (the base image may list only the release, as a Debian bootstrapped from `bookworm`
#    alone does), so that every package the org layer installs comes in its fixed version; the RUN removes
#    that sources file again before it ends.
# $SECURITY_FIXES: upgrade exactly these packages: those for which the distribution's security suite has a
#    newer version than the base image carries, as the factory computed them from the verified archive
#    indexes before the build (docs/security-fixes.md). Nothing else is upgraded.
#
#   --apt CODENAME COMPONENTS MIRROR SECURITY_MIRROR [PORTS_MIRROR]
#       Debian and Ubuntu. PORTS_MIRROR: Ubuntu's archive for architectures other than amd64 and i386.
#       Packages must be signed by keys the image already trusts.
#   --apk BRANCH MIRROR
#       Alpine: BRANCH's main and community repositories of MIRROR, with the image's own keys.
#
# A package the base image holds (apt-mark hold) is not upgraded: the build goes on, and the factory's
# gate after the build names it as still pending. Values arrive as arguments that the renderer checked
# against the config schema's patterns.
set -eu

fixes=${SECURITY_FIXES:-}
suites=${ARCHIVE_SUITES:-image}
list=/etc/apt/sources.list.d/factory-fixes.list

case ${1:-} in
  --apt)
    codename=$2 components=$3 mirror=$4 security=$5 ports=${6:-}
    arch=$(dpkg --print-architecture)
    if [ -n "$ports" ] && [ "$arch" != amd64 ] && [ "$arch" != i386 ]; then
      mirror=$ports
      security=$ports
    fi
    if [ "$suites" = configured ]; then
      {
        echo "deb $mirror $codename $components"
        echo "deb $mirror $codename-updates $components"
        echo "deb $security $codename-security $components"
      } > "$list"
    fi
    apt-get update
    held=" $(apt-mark showhold | tr '\n' ' ') "
    upgrade=
    for p in $fixes; do
      case $held in
        *" $p "*) echo "apply-fixes: $p is held by the base image: not upgraded" >&2 ;;
        *) upgrade="$upgrade $p" ;;
      esac
    done
    if [ -n "$upgrade" ]; then
      # shellcheck disable=SC2086  # a list of package names
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends --only-upgrade $upgrade
    fi
    ;;
  --apk)
    branch=$2 mirror=$3
    if [ -n "$fixes" ] && [ "$suites" = configured ]; then
      # shellcheck disable=SC2086  # a list of package names
      apk upgrade --no-cache -X "$mirror/$branch/main" -X "$mirror/$branch/community" $fixes
    elif [ -n "$fixes" ]; then
      # shellcheck disable=SC2086
      apk upgrade --no-cache $fixes
    fi
    ;;
  *)
    echo "apply-fixes: expected --apt or --apk, got: ${1:-nothing}" >&2
    exit 2
    ;;
esac
