#!/usr/bin/env bash
# Makes the Debian bookworm base images of deploy/Dockerfile locally, with debootstrap,
# for machines where no container registry can be reached (CI, this project's machines).
#
#   deploy/ci/base-image.sh            # prints the two image names (build, runtime)
#
# Two images from one debootstrap:
#   exposure-base:bookworm-<recipe>-build    python3, python3-venv (ensurepip), libsodium23,
#                                            and gcc, python3-dev, libsodium-dev (the C
#                                            module of the project)
#   exposure-base:bookworm-<recipe>-runtime  the same minus the compiler and headers,
#                                            python3-venv and the pip and setuptools
#                                            wheels it brings
# <recipe> is a hash of RECIPE below: the images are made once and then reused from
# podman's store until the recipe changes (EXPOSURE_BASE_REBUILD=1 forces a new one,
# e.g. for Debian's security updates).
#
# The Debian mirror is the host's own (its apt sources), so that the image is made the
# same way the host gets its packages; security updates are applied from the host's
# security source when it has one.
set -euo pipefail

PACKAGES=python3,python3-venv,ca-certificates,libsodium23
# The build base only: what compiles indexer/core/_fingerprints.c.
BUILD_PACKAGES="gcc libc6-dev python3-dev libsodium-dev"
# Bump RECIPE when the way the image is made changes (not for comments).
RECIPE="bookworm minbase $PACKAGES build:$BUILD_PACKAGES security-upgraded runtime-without-installers v3"
recipe=$(printf '%s' "$RECIPE" | sha256sum | cut -c1-12)
name=localhost/exposure-base:bookworm-$recipe
build_image=$name-build
runtime_image=$name-runtime

log() { echo "base-image: $*" >&2; }

if [ -z "${EXPOSURE_BASE_REBUILD:-}" ] \
   && podman image exists "$build_image" && podman image exists "$runtime_image"; then
    log "reusing $build_image and $runtime_image"
    echo "$build_image $runtime_image"
    exit 0
fi

# The first deb822 (or one-line) Debian source of the host for a suite: "URI".
host_mirror() {
    local suite=$1
    {
        for f in /etc/apt/sources.list.d/*.sources; do
            [ -r "$f" ] || continue
            awk -v suite="$suite" '
                /^[[:space:]]*$/ { if (uri != "" && ok) { print uri; exit } uri=""; ok=0; next }
                /^URIs:/ { uri=$2 }
                /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) ok=1 }
                END { if (uri != "" && ok) print uri }' "$f"
        done
        cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
            | awk -v suite="$suite" '$1 == "deb" && $3 == suite { print $2 }'
    } | grep -v '^$' | head -n1
}

mirror=$(host_mirror bookworm || true)
security=$(host_mirror bookworm-security || true)
[ -n "$mirror" ] || log "no bookworm source in the host's apt sources: debootstrap's default mirror"

work=$(mktemp -d /var/tmp/exposure-base.XXXXXX)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs

log "debootstrap bookworm (minbase + $PACKAGES) from ${mirror:-the default mirror}"
debootstrap --variant=minbase --include="$PACKAGES" bookworm "$rootfs" ${mirror:+"$mirror"} \
    >"$work/debootstrap.log" 2>&1 || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }

# The image's apt sources: the same mirrors, so that `apt-get` in a build stage works.
# (debootstrap wrote the main suite's line; the updates and security suites are added.)
{
    [ -z "$mirror" ] || echo "deb $mirror bookworm-updates main"
    [ -z "$security" ] || echo "deb $security bookworm-security main"
} >> "$rootfs/etc/apt/sources.list"

in_root() { chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    DEBIAN_FRONTEND=noninteractive "$@"; }
log "security and point-release updates"
mount -t proc proc "$rootfs/proc"
trap 'umount "$rootfs/proc" 2>/dev/null || true; rm -rf "$work"' EXIT
in_root apt-get update -q >"$work/update.log" 2>&1 || { tail -n 20 "$work/update.log" >&2; exit 1; }
in_root apt-get -y -q upgrade >"$work/upgrade.log" 2>&1 || { tail -n 20 "$work/upgrade.log" >&2; exit 1; }
# What the runtime base keeps: these packages, nothing that the build tools brought.
in_root dpkg-query -W -f='${Package}\n' | sort > "$work/base-packages"
log "build tools for the build base: $BUILD_PACKAGES"
# shellcheck disable=SC2086  # one word per package
in_root apt-get install -y -q --no-install-recommends $BUILD_PACKAGES \
    >"$work/build-tools.log" 2>&1 || { tail -n 20 "$work/build-tools.log" >&2; exit 1; }
in_root apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/*.log
umount "$rootfs/proc"

import() {
    tar --numeric-owner -C "$rootfs" -c . \
        | podman import -q --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' - "$1" >/dev/null
}
log "importing $build_image"
import "$build_image"

# The runtime base: no compiler, no venv machinery, no pip or setuptools wheels (the
# service image must hold no installer).
in_root dpkg-query -W -f='${Package}\n' | sort | comm -13 "$work/base-packages" - \
    > "$work/build-only"
# shellcheck disable=SC2046  # one word per package
in_root apt-get purge -y -q $(cat "$work/build-only") \
    >"$work/purge.log" 2>&1 || { cat "$work/purge.log" >&2; exit 1; }
in_root dpkg --purge python3-venv python3.11-venv python3-pip-whl python3-setuptools-whl \
    >>"$work/purge.log" 2>&1 || { cat "$work/purge.log" >&2; exit 1; }
rm -rf "$rootfs"/usr/share/python-wheels
log "importing $runtime_image"
import "$runtime_image"

echo "$build_image $runtime_image"
