#!/bin/sh
# Entrypoint of the lip2wav-gpu / lip2wav-npu images: set up the device stack's environment, then run one
# sub-command. LIP2WAV_TARGET (gpu|npu) is baked into each image; tasks.py sets LIP2WAV_DEVICES / LIP2WAV_EMULATE.
set -eu

target="${LIP2WAV_TARGET:-}"

usage() {
    cat <<USAGE
usage: docker run [DOCKER OPTIONS] lip2wav-${target:-TARGET} COMMAND [ARGS...]

Lip2Wav ${target:-?} image. Commands:
  train       python -m ${target:-TARGET}_training.train ARGS (one process per device in LIP2WAV_DEVICES);
              flags: --data DIR --preset NAME --hparams k=v,... --run-dir DIR --steps N --checkpoint-every N
  export      python -m export.freeze ARGS (freeze a checkpoint with this image's TensorFlow)
  atc         python -m export.atc ARGS (frozen graph -> Ascend .om, where atc is installed)
  help        print this message

Environment: LIP2WAV_DEVICES=0,1 (device ids, default 0), LIP2WAV_EMULATE=1 (run on the CPU, no device).
Prefer 'invoke train --target ${target:-TARGET}' on the host: it mounts data, run dir and devices for you.
Speech from video and scores run on a workstation with the run directory this image wrote:
  $WORKSTATION_ONLY
USAGE
}

# synthesize and evaluate need a video reader, a face detector and PESQ, which has no wheel for the images'
# Python 3.7 (it needs a compiler): the images train, freeze and compile; the workstation does the rest.
WORKSTATION_ONLY="invoke synthesize --checkpoint RUN_DIR --video clip.mp4 / invoke evaluate --checkpoint RUN_DIR --data DIR"

# Vendor scripts read unset variables and may return non-zero; source them without -eu.
source_if_present() {
    if [ -f "$1" ]; then
        set +eu
        # shellcheck disable=SC1090
        . "$1"
        set -eu
    fi
}

# CANN (toolkit, else the NNAE runtime) and the TF Adapter, where the base image has them.
ascend="${LIP2WAV_ASCEND_ROOT:-/usr/local/Ascend}"
if [ -f "$ascend/ascend-toolkit/set_env.sh" ]; then
    source_if_present "$ascend/ascend-toolkit/set_env.sh"
else
    source_if_present "$ascend/nnae/set_env.sh"
fi
source_if_present "$ascend/tfplugin/set_env.sh"

# Single-process defaults; containers.launch overrides them per process when several devices are listed.
devices="${LIP2WAV_DEVICES:-0}"
first_device="${devices%%,*}"
export DEVICE_ID="${DEVICE_ID:-$first_device}"
export ASCEND_DEVICE_ID="${ASCEND_DEVICE_ID:-$DEVICE_ID}"
export RANK_ID="${RANK_ID:-0}"
export RANK_SIZE="${RANK_SIZE:-1}"

# The container runs as the host user's uid, which may have no home in the image; numba (librosa) and
# matplotlib need a writable cache there, as site-packages is read-only for that user.
if [ -z "${HOME:-}" ] || [ ! -w "${HOME}" ]; then
    export HOME=/tmp
fi
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$HOME/.cache/numba}"
export MPLCONFIGDIR="${MPLCONFIGDIR:-$HOME/.cache/matplotlib}"

# Every command below is exec'd: the Python process replaces this shell, so the SIGTERM of `docker stop` or a
# scheduler reaches it directly (training then saves a checkpoint and exits 143).
command="${1:-help}"
case "$command" in
    help|-h|--help)
        usage
        exit 0
        ;;
    train)
        shift
        if [ -z "$target" ]; then
            echo "error: LIP2WAV_TARGET is not set: build the image with 'invoke build-npu' or 'invoke build-gpu'" >&2
            exit 2
        fi
        exec python3 -m containers.launch train "$@"
        ;;
    atc)
        shift
        exec python3 -m export.atc "$@"
        ;;
    synthesize|evaluate)
        echo "error: $command does not run in this image (no video reader, face detector or PESQ): run" \
            "'invoke $command --checkpoint RUN_DIR ...' on a workstation with the run directory this image wrote" >&2
        exit 2
        ;;
    export)
        shift
        exec python3 -m export.freeze "$@"
        ;;
    *)
        echo "error: unknown command '$command': use train, export, atc or help" >&2
        usage >&2
        exit 2
        ;;
esac
