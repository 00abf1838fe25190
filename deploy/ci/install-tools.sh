#!/usr/bin/env bash
# Installs, from Debian's packages and only when missing, what `make container-test` and
# `make compose-test` need: podman with runc (crun fails on this machine's cgroup v1
# setup), debootstrap for the base images, podman-compose and catatonit (pods), and the
# PostgreSQL server
# used by the key-store tests. Idempotent; prints what it installed.
set -euo pipefail
need=()
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v runc >/dev/null 2>&1 || need+=(runc)
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || need+=(debootstrap)
command -v podman-compose >/dev/null 2>&1 || need+=(podman-compose)
# A pod's infra container (the one holding its network namespace) runs catatonit.
command -v catatonit >/dev/null 2>&1 || [ -x /usr/libexec/podman/catatonit ] || need+=(catatonit)
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql-15)
if [ ${#need[@]} -gt 0 ]; then
    SUDO=$( [ "$(id -u)" = 0 ] || echo sudo )
    export DEBIAN_FRONTEND=noninteractive
    echo "install-tools: installing ${need[*]}"
    $SUDO apt-get install -y -q --no-install-recommends "${need[@]}" \
        || { $SUDO apt-get update -q && $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"; }
fi
