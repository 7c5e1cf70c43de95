#!/usr/bin/env bash
# Runs a command inside a Debian 13 (trixie) root that has PoCL 6, an OpenCL 3.0 driver with generic
# address space, which ILGPU needs (Debian 12's PoCL 3.1 lacks it, so ILGPU cannot use it). This is how the
# OpenCL tests run for real on a machine without a GPU: PoCL runs OpenCL on the CPU.
#
#   sudo scripts/opencl-root.sh dotnet tests/bin/Debug/net10.0/scratchnet.dll devices
#   sudo scripts/opencl-root.sh dotnet test tests/bin/Debug/net10.0/ScratchNet.Tests.dll --filter TestCategory=OpenCL
#
# The root is made once with debootstrap (about a minute from the Debian mirror) and reused:
# SCRATCHNET_OPENCL_ROOT says where (default /var/tmp/scratchnet-opencl-root). The command runs in the
# repository's folder, with this machine's .NET and the repository bound in at the same paths; every
# mount is undone when the command ends, also when it fails or is interrupted. Needs root (mount, chroot).
set -euo pipefail

ROOT=${SCRATCHNET_OPENCL_ROOT:-/var/tmp/scratchnet-opencl-root}
REPO=$(cd "$(dirname "$0")/.." && pwd)
DOTNET=$(readlink -f "$(command -v dotnet)")
DOTNET_DIR=$(dirname "$DOTNET")

if [ "$#" -eq 0 ]; then
    echo "usage: scripts/opencl-root.sh COMMAND [ARGS...]" >&2
    exit 2
fi
if [ "$(id -u)" != "0" ]; then
    echo "opencl-root.sh: needs root (debootstrap, mount, chroot); try: sudo $0 $*" >&2
    exit 1
fi

if [ ! -f "$ROOT/.scratchnet-ready" ]; then
    if ! command -v debootstrap >/dev/null; then
        echo "opencl-root.sh: installing debootstrap" >&2
        apt-get install -y -qq debootstrap >/dev/null
    fi
    echo "opencl-root.sh: making a Debian 13 root with PoCL 6 in $ROOT (once)" >&2
    rm -rf "$ROOT"
    debootstrap --variant=minbase --include=pocl-opencl-icd,ocl-icd-libopencl1,clinfo,libicu76 trixie "$ROOT" >/dev/null
    touch "$ROOT/.scratchnet-ready"
fi

mounted=()
cleanup() {
    # Undo the mounts in reverse order; a busy one is detached lazily rather than left behind.
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
        umount "${mounted[$i]}" 2>/dev/null || umount -l "${mounted[$i]}" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bind() {   # bind SOURCE at the same path inside the root
    mkdir -p "$ROOT$1"
    mount --bind "$1" "$ROOT$1"
    mounted+=("$ROOT$1")
}
mkdir -p "$ROOT/proc"
mount -t proc proc "$ROOT/proc"
mounted+=("$ROOT/proc")
bind /sys
bind /dev
bind "$DOTNET_DIR"
bind "$REPO"
mkdir -p "$ROOT/usr/local/bin"
ln -sf "$DOTNET" "$ROOT/usr/local/bin/dotnet"

# A clean environment inside, with what the tests read passed on.
set +e
chroot "$ROOT" /usr/bin/env -i \
    PATH=/usr/local/bin:/usr/bin:/bin HOME=/root TMPDIR=/tmp \
    DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1 \
    CI="${CI:-}" SCRATCHNET_REQUIRE_ALL="${SCRATCHNET_REQUIRE_ALL:-}" SCRATCHNET_DEBUG="${SCRATCHNET_DEBUG:-}" \
    /bin/bash -c 'cd "$0" && exec "$@"' "$REPO" "$@"
status=$?
set -e
exit $status
