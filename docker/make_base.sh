#!/usr/bin/env bash
# A Debian bookworm base image with Python 3.11 and pip, made with debootstrap from the Debian archive
# (no container registry needed), imported into podman as localhost/tcpade-base:bookworm-py311.
# Then: podman build -f docker/Dockerfile.cpu --build-arg BASE=localhost/tcpade-base:bookworm-py311 ...
# Needs root, debootstrap and podman (Debian packages). Usage: sudo docker/make_base.sh [TAG]
# Behind a TLS-intercepting proxy: EXTRA_CA_DIR=/usr/local/share/ca-certificates adds its *.crt to the
# image's trust store, so that pip inside the build can reach PyPI.
set -euo pipefail
tag=${1:-localhost/tcpade-base:bookworm-py311}
mirror=${MIRROR:-http://deb.debian.org/debian}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

debootstrap --variant=minbase --include=python3,python3-pip,python-is-python3,ca-certificates \
    bookworm "$work/rootfs" "$mirror"
if [[ -n "${EXTRA_CA_DIR:-}" ]]; then
    cp "$EXTRA_CA_DIR"/*.crt "$work/rootfs/usr/local/share/ca-certificates/"
    chroot "$work/rootfs" update-ca-certificates
fi
# pip installs into the image's own Python, as in python:3.11-slim (the image is the environment)
rm -f "$work"/rootfs/usr/lib/python3*/EXTERNALLY-MANAGED
rm -rf "$work"/rootfs/var/lib/apt/lists/* "$work"/rootfs/var/cache/apt/*.bin
tar -C "$work/rootfs" -c . | podman import --change 'CMD ["python3"]' - "$tag"
echo "made $tag"
