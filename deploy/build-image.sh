#!/usr/bin/env bash
# Build Berth's image on a host with no image registry:
#   1. a Debian 12 base image made from Debian's own packages: debootstrap into a directory,
#      then `docker import` (BERTH_BASE_IMAGE, default berth-base/debian:bookworm; made once,
#      reused while it exists);
#   2. Berth and its dependencies as wheels, built here with this host's pip (the build
#      container reaches no package index);
#   3. `docker build` of the Dockerfile FROM that base (BERTH_IMAGE, default berth:local).
# Usage: bash deploy/build-image.sh [--base-only]   (as root; installs debootstrap if missing)
# --base-only makes the base image alone (deploy/setup-host.sh does, for the image tests).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
base_image="${BERTH_BASE_IMAGE:-berth-base/debian:bookworm}"
image="${BERTH_IMAGE:-berth:local}"
mirror="${BERTH_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
python="${BERTH_PYTHON:-python3}"
say() { echo "[build-image] $*"; }

if ! docker image inspect "$base_image" > /dev/null 2>&1; then
    command -v debootstrap > /dev/null || {
        say "installing debootstrap"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap > /dev/null
    }
    rootfs="$(mktemp -d /var/tmp/berth-rootfs.XXXXXX)"
    trap 'rm -rf "$rootfs"' EXIT
    # minbase plus what the daemon runs: Python, git (source builds), the docker CLI
    # (`docker build`; Debian ships it only inside docker.io), tini (PID 1).
    say "debootstrap bookworm into $rootfs (from $mirror)"
    debootstrap --variant=minbase \
        --include=python3,python3-venv,git,docker.io,ca-certificates,tini \
        bookworm "$rootfs" "$mirror" > /var/tmp/berth-debootstrap.log 2>&1 || {
        tail -20 /var/tmp/berth-debootstrap.log
        exit 1
    }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    say "importing $base_image"
    tar -C "$rootfs" -c . | docker import --change 'ENV LANG=C.UTF-8' - "$base_image" > /dev/null
    rm -rf "$rootfs"
    trap - EXIT
fi

[ "${1:-}" = "--base-only" ] && exit 0

wheels="$root/build/wheels"
rm -rf "$wheels"
mkdir -p "$wheels"
say "building wheels of Berth and its dependencies"
log=/var/tmp/berth-build-image.log
"$python" -m pip wheel --quiet --wheel-dir "$wheels" "$root" > "$log" 2>&1 || {
    tail -20 "$log"
    exit 1
}
say "docker build -t $image (FROM $base_image)"
DOCKER_BUILDKIT=0 docker build --quiet --build-arg "BASE_IMAGE=$base_image" -t "$image" "$root" \
    > "$log" 2>&1 || {
    tail -20 "$log"
    exit 1
}
say "built $image"
