#!/bin/sh
# copy-generation SHARED_INDEX_DIR LOCAL_INDEX_DIR [GENERATION]
#
# The Kubernetes pods' init container (deploy/k8s/deployment.yaml): copies one published
# generation from the shared index volume (written by the index-build Job) to the pod's
# local disk, points the local `current` at it and verifies it (checksums, structure).
# The service then memory-maps local files, never a network filesystem.
#
# GENERATION (or $EXPOSURE_INDEX_GENERATION): a `gen-*` directory name, set in the pod
# template so that a rollout names what it serves; empty: whatever `current` is now.
# Exit 0 copied and verified; 1 not (the pod does not start, the old ones keep serving).
set -eu
src=${1:?usage: copy-generation SHARED_INDEX_DIR LOCAL_INDEX_DIR [GENERATION]}
dst=${2:?usage: copy-generation SHARED_INDEX_DIR LOCAL_INDEX_DIR [GENERATION]}
gen=${3:-${EXPOSURE_INDEX_GENERATION:-}}
if [ -z "$gen" ]; then
    gen=$(readlink "$src/current") || {
        echo "copy-generation: $src has no published generation yet (run the index-build Job)" >&2
        exit 1
    }
fi
case "$gen" in
    gen-*[!a-zA-Z0-9._-]* | *.partial | */*) echo "copy-generation: not a generation name: $gen" >&2; exit 1 ;;
    gen-*) ;;
    *) echo "copy-generation: not a generation name: $gen" >&2; exit 1 ;;
esac
if [ ! -d "$src/$gen" ]; then
    echo "copy-generation: $src/$gen does not exist; published: $(cd "$src" && ls -d gen-* 2>/dev/null | grep -v '\.partial$' | tr '\n' ' ')" >&2
    exit 1
fi
rm -rf "$dst/$gen.partial"
cp -R "$src/$gen" "$dst/$gen.partial"
mv "$dst/$gen.partial" "$dst/$gen"
ln -s "$gen" "$dst/current.new"
mv -f "$dst/current.new" "$dst/current"
exposure-index verify "$dst"
echo "copy-generation: serving $gen (copied from $src, verified)"
