#!/usr/bin/env bash
# Runs docker-compose.yml once in a real container engine (Podman + podman-compose) on a machine that
# cannot pull from any container registry: the base image is a Debian bookworm root filesystem made with
# debootstrap, the project image is built from the repository's Dockerfile on top of it (its FROM is
# replaced with `podman build --from`), Python packages come from the host's pip sources (PyPI through the
# host network, plus the local wheel folder and file indexes, bind-mounted at build time), and then
# `podman-compose up` runs the SuperLink, the SuperNodes and the one-shot runner until the runner exits.
#
# Not part of CI or the test suite: it needs root, several minutes and a few gigabytes.
# Needs: podman, podman-compose, debootstrap (Debian: apt-get install podman podman-compose debootstrap).
#
# Usage: sudo scripts/podman_compose_check.sh [--reuse-image] [--clean]
#   --reuse-image   keep an existing fedsyn:latest image instead of building it again
#   --clean         afterwards remove both images and the work folder (containers and network always go)
# Environment:
#   FEDSYN_PODMAN_WORK   work folder for the root filesystem, logs and timings (default /var/tmp/fedsyn-podman)
#   FEDSYN_HOST_PYTHON   a Python whose installed versions the image must match (pip freeze becomes the
#                        build's constraints; default .venv/bin/python)
#   FEDSYN_TORCH_PINS    pins that replace the host's torch, torchvision, triton, nvidia-* and cuda-*
#                        ones, e.g. "torch==2.13.0+cpu torchvision==0.28.0+cpu" where such wheels exist
#   DEBIAN_MIRROR        default http://deb.debian.org/debian
#   PIP_SOURCES          host folders mounted read-only at the same path while building; one with a
#                        simple/ folder is a file index, any other a find-links folder (default: this
#                        machine's /opt/wheels /opt/pypi /opt/pypi-more, those that exist)
#   PIP_INDEXES          extra pip indexes for the build (default: the file indexes of PIP_SOURCES)
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${FEDSYN_PODMAN_WORK:-/var/tmp/fedsyn-podman}
HOST_PYTHON=${FEDSYN_HOST_PYTHON:-$REPO/.venv/bin/python}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
BASE_IMAGE=localhost/fedsyn-base:bookworm
PROJECT=fedsyn
# Podman on these machines needs runc and limits below the host's hard limits. containers.conf covers
# every podman call (podman-compose 1.0.3 puts --podman-args after the subcommand, where `podman start`
# rejects --runtime); `podman build` has its own default nproc limit, hence ULIMITS there.
ULIMITS="--ulimit nofile=1024:1024 --ulimit nproc=1024:1024"
IMAGE=localhost/fedsyn:latest
CLEAN=0
REUSE=0
for arg in "$@"; do
    case $arg in
        --clean) CLEAN=1 ;;
        --reuse-image) REUSE=1 ;;
        *) echo "unknown argument $arg (allowed: --reuse-image, --clean)" >&2; exit 2 ;;
    esac
done

mkdir -p "$WORK/logs"
SUMMARY=$WORK/summary.txt
: > "$SUMMARY"
cat > "$WORK/containers.conf" << EOF
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
EOF
export CONTAINERS_CONF=$WORK/containers.conf
note() { echo "$*" | tee -a "$SUMMARY"; }

# step NAME COMMAND...: runs COMMAND at the lowest CPU priority, logs it, records its duration.
step() {
    local name=$1; shift
    local start=$SECONDS rc=0
    echo "== $name: $*"
    nice -n 19 "$@" > >(tee "$WORK/logs/$name.log") 2>&1 || rc=$?
    local outcome=ok
    (( rc == 0 )) || outcome="failed (exit $rc)"
    note "$name: $outcome in $((SECONDS - start)) s (log $WORK/logs/$name.log)"
    return "$rc"
}

for tool in podman podman-compose debootstrap; do
    command -v "$tool" > /dev/null || { echo "missing $tool (apt-get install $tool)" >&2; exit 2; }
done
[[ $(id -u) == 0 ]] || { echo "run as root (debootstrap and rootful podman)" >&2; exit 2; }
[[ -x "$HOST_PYTHON" ]] || { echo "FEDSYN_HOST_PYTHON=$HOST_PYTHON is not an executable Python" >&2; exit 2; }
note "podman $(podman version --format '{{.Client.Version}}'), $(podman-compose --version 2>&1 | grep -o 'podman-composer version.*')"

# 1. Base image: Debian bookworm with Python 3.11 in a virtual environment on PATH (stands in for
#    python:3.11-slim, whose `python` and `pip` the Dockerfile uses; Debian's own Python is
#    externally managed, PEP 668, so pip must not install into it).
if ! podman image exists "$BASE_IMAGE"; then
    # An interrupted debootstrap leaves its own folder behind.
    if [[ ! -x "$WORK/rootfs/usr/bin/python3" || -d "$WORK/rootfs/debootstrap" ]]; then
        rm -rf "$WORK/rootfs"
        step debootstrap debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
            bookworm "$WORK/rootfs" "$MIRROR"
    fi
    [[ -x "$WORK/rootfs/opt/venv/bin/python" ]] || step venv chroot "$WORK/rootfs" python3 -m venv /opt/venv
    rm -rf "$WORK/rootfs/var/cache/apt/archives/"*.deb "$WORK/rootfs/var/lib/apt/lists/"*
    note "rootfs: $(du -sh "$WORK/rootfs" | cut -f1)"
    step import bash -c "tar -C '$WORK/rootfs' -c . | podman import \
        --change 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' - '$BASE_IMAGE'"
fi

# 2. Build constraints: the host environment's versions (torch included: the CPU torch wheels come from
#    download.pytorch.org, which cannot be reached here, and PyPI's torchvision does not load its
#    operators next to a CPU torch). FEDSYN_TORCH_PINS replaces the torch lines.
"$HOST_PYTHON" -m pip freeze --exclude-editable > "$WORK/constraints.txt"
if [[ -n "${FEDSYN_TORCH_PINS:-}" ]]; then
    grep -v -i -E '^(torch|torchvision|triton|nvidia-.*|cuda-.*)==' "$WORK/constraints.txt" > "$WORK/c.txt"
    tr ' ' '\n' <<< "$FEDSYN_TORCH_PINS" >> "$WORK/c.txt"
    mv "$WORK/c.txt" "$WORK/constraints.txt"
fi

SOURCES=${PIP_SOURCES:-/opt/wheels /opt/pypi /opt/pypi-more}
FILE_INDEXES=()
FIND_LINKS=()
MOUNTS=""
for d in $SOURCES; do
    [[ -d $d ]] || continue
    MOUNTS+=" -v $d:$d:ro"
    if [[ -d $d/simple ]]; then FILE_INDEXES+=("file://$d/simple"); else FIND_LINKS+=("$d"); fi
done
INDEXES=${PIP_INDEXES:-${FILE_INDEXES[*]}}
# HTTPS from the build container goes out through the host network: trust what the host trusts.
HOST_CA=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
cat > "$WORK/pip.conf" << EOF
[global]
cert = /etc/fedsyn-host-ca.crt
constraint = /etc/fedsyn-constraints.txt
find-links = ${FIND_LINKS[*]}
EOF
BUILD_ARGS="--from $BASE_IMAGE --pull=never --network host $ULIMITS"
BUILD_ARGS+=" -v $WORK/pip.conf:/etc/pip.conf:ro -v $WORK/constraints.txt:/etc/fedsyn-constraints.txt:ro"
BUILD_ARGS+=" -v $HOST_CA:/etc/fedsyn-host-ca.crt:ro"
BUILD_ARGS+=$MOUNTS

cd "$REPO"
COMPOSE=(podman-compose -p "$PROJECT")

# 3. The project image, from the Dockerfile as it is (PIP_EXTRA_INDEX_URL is the Dockerfile's build arg).
#    Every service names the same image, and podman-compose 1.0.3 builds it once per service: build it
#    for one. --no-cache: the mounted constraints are not part of the layer cache key.
if (( REUSE )) && podman image exists "$IMAGE"; then
    note "build: skipped, reusing $IMAGE"
else
    # Without the old image, a failed build cannot pass for a successful one below.
    podman rmi -f "$IMAGE" > /dev/null 2>&1 || true
    step build "${COMPOSE[@]}" --podman-build-args "$BUILD_ARGS" build --no-cache \
        --build-arg "PIP_EXTRA_INDEX_URL=$INDEXES" superlink
fi
# podman-compose 1.0.3 exits 0 when the build fails.
podman image exists "$IMAGE" || { note "no image $IMAGE: the build failed"; exit 1; }
note "image: $(podman image inspect "$IMAGE" --format '{{.Size}}') bytes"
podman run --rm "$IMAGE" python -c \
    "import torch, torchvision, flwr; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'flwr', flwr.__version__)" \
    | tee -a "$SUMMARY"

# 4. The federation: up until the runner exits, its exit status is ours. The secure topology mounts the
#    test credentials of `make certs`; they are made here when the folder has none.
mkdir -p results
[[ -f certs/ca.crt ]] || "$HOST_PYTHON" -m fedsyn.federation.certs certs --supernodes 2
rc=0
step up "${COMPOSE[@]}" up --no-build --abort-on-container-exit \
    --exit-code-from runner || rc=$?
for service in superlink supernode-1 supernode-2 runner; do
    podman logs "${PROJECT}_${service}_1" > "$WORK/logs/service-$service.log" 2>&1 || true
done
note "runner exit status: $rc"
note "report: $(ls -l results/report.html 2>/dev/null || echo 'missing')"
step down "${COMPOSE[@]}" down || true
podman network rm -f "${PROJECT}_default" > /dev/null 2>&1 || true  # podman-compose 1.0.3 leaves it behind
podman system df | tee -a "$SUMMARY"
note "work folder: $(du -sh "$WORK" | cut -f1)"

if (( CLEAN )); then
    podman rmi -f "$IMAGE" "$BASE_IMAGE" || true
    rm -rf "$WORK"
fi
exit "$rc"
