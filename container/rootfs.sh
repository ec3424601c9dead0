#!/usr/bin/env bash
# Builds the runtime base of the images from Debian's packages, for machines that cannot
# pull debian:bookworm-slim: a minimal Debian bookworm root file system made by
# debootstrap, with the CA certificates (the webhook sender's TLS needs them), trimmed like
# the slim image (no documentation, manuals, locales or apt lists), written as a tar
# archive that the Containerfile's `local` base unpacks.
#
#   container/rootfs.sh /var/cache/portauthority/rootfs-bookworm.tar
#
# Needs root and debootstrap; the Debian mirror is DEBIAN_MIRROR (default deb.debian.org).
set -euo pipefail
out="${1:?usage: rootfs.sh OUTPUT.tar}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
work="$(mktemp -d "${TMPDIR:-/tmp}/portauthority-rootfs.XXXXXX")"
trap 'rm -rf "$work"' EXIT
debootstrap --variant=minbase --include=ca-certificates --arch="$(dpkg --print-architecture)" bookworm "$work/root" "$mirror"
rm -rf "$work"/root/usr/share/{doc,man,info,locale,lintian,linda} \
    "$work"/root/var/lib/apt/lists/* "$work"/root/var/cache/apt/* \
    "$work"/root/var/cache/debconf/*-old "$work"/root/var/log/* "$work"/root/tmp/*
mkdir -p "$(dirname "$out")"
tar --numeric-owner --xattrs -C "$work/root" -cf "$out.partial" .
mv "$out.partial" "$out"
echo "wrote $out ($(du -h "$out" | cut -f1))"
