#!/usr/bin/env bash
# Lock, build, publish, deploy and run the cuda-split example, then move the deployed
# stack somewhere else and run it again. Prints the time of every stage and the sizes.
#
#   examples/cuda-split/run.sh                 # everything, in this directory
#   FRESH_LOCK=1 examples/cuda-split/run.sh    # relock from scratch instead of reusing the locks
#
# Needs about 20 GB of free disk (build 5.4 GB, archives 2.5 GB, deployment 5.4 GB, and
# the moved copy reuses the deployment). Not part of CI: it installs ~5 GB of wheels.
#
# Settings (environment variables):
#   VENVLAYERS      the venvlayers command (default: the repository's .venv, else PATH)
#   LOCAL_WHEELS    space-separated wheel directories (default: this machine's stores,
#                   /opt/pypi-more/files /opt/pypi/files)
#   RUNTIME_PREFIX  a CPython 3.11.7 install to import as the runtime if the cache has no
#                   cpython@3.11.7 yet (default: ~/.pyenv/versions/3.11.7 when present)
#   WORK            where to deploy (default: _deployed/ beside this script; emptied first)
#   FRESH_LOCK=1    ignore the committed locks and resolve again
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
if [[ -z "${VENVLAYERS:-}" ]]; then
    if [[ -x "$repo/.venv/bin/venvlayers" ]]; then VENVLAYERS="$repo/.venv/bin/venvlayers"
    else VENVLAYERS=venvlayers; fi
fi
LOCAL_WHEELS="${LOCAL_WHEELS:-/opt/pypi-more/files /opt/pypi/files}"
RUNTIME_PREFIX="${RUNTIME_PREFIX:-$HOME/.pyenv/versions/3.11.7}"
WORK="${WORK:-$here/_deployed}"
wheels=()
for dir in $LOCAL_WHEELS; do wheels+=(--local-wheels "$dir"); done

cd "$here"
declare -a summary=()
stage() {  # stage LABEL COMMAND...: run, show the output, record the wall time
    local label="$1"; shift
    echo
    echo "==> $label: $*"
    local start end
    start=$(date +%s.%N)
    "$@"
    end=$(date +%s.%N)
    local seconds
    seconds=$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.1f", e - s }')
    summary+=("$(printf '%-34s %8s s' "$label" "$seconds")")
}

# The runtime: the cache must hold cpython@3.11.7 (python-build-standalone downloads may
# be unavailable, so import a local install when there is one).
if ! "$VENVLAYERS" runtime list --json | grep -q '"cpython@3.11.7"'; then
    if [[ -x "$RUNTIME_PREFIX/bin/python3.11" ]]; then
        stage "runtime import" "$VENVLAYERS" runtime import "$RUNTIME_PREFIX" --name cpython@3.11.7
    else
        stage "runtime fetch" "$VENVLAYERS" runtime fetch cpython@3.11.7
    fi
fi

if [[ "${FRESH_LOCK:-0}" == 1 ]]; then
    stage "lock (from scratch)" "$VENVLAYERS" lock --reset-lock '*' "${wheels[@]}"
else
    stage "lock (if needed)" "$VENVLAYERS" lock --if-needed "${wheels[@]}"
fi
stage "build" "$VENVLAYERS" build "${wheels[@]}"
stage "publish" "$VENVLAYERS" publish

rm -rf "$WORK"
mkdir -p "$WORK"
target="$WORK/stack"
if "$VENVLAYERS" deploy --help >/dev/null 2>&1; then
    mode=deploy
    stage "deploy (fresh directory)" "$VENVLAYERS" deploy _artifacts --target "$target"
    stage "first run (venvlayers run)" "$VENVLAYERS" run app-cuda-check --target "$target"
else
    mode=local-export
    stage "local-export (fresh directory)" "$VENVLAYERS" local-export -o "$target"
    stage "first run" "$target/app-cuda-check/bin/python" -m cuda_check
fi

moved="$WORK/moved-elsewhere/stack"
mkdir -p "$(dirname "$moved")"
mv "$target" "$moved"
echo
echo "==> moved $target -> $moved"
stage "run after the move" "$moved/app-cuda-check/bin/python" -m cuda_check
# Nothing may still come from the old location (the dynamic linker's view).
stale=$(LD_DEBUG=libs "$moved/app-cuda-check/bin/python" -m cuda_check 2>&1 >/dev/null \
    | grep -c -F "$target/" || true)
echo "references to the old location under LD_DEBUG=libs: $stale"

echo
echo "==> summary ($mode)"
printf '%s\n' "${summary[@]}"
echo
echo "archives:"
for archive in _artifacts/*.tar.*; do
    printf '  %-34s %s\n' "$(basename "$archive")" "$(du -h --apparent-size "$archive" | cut -f1)"
done
echo "deployed layers (moved copy):"
for layer in "$moved"/*/; do
    printf '  %-34s %s\n' "$(basename "$layer")" "$(du -sh "$layer" | cut -f1)"
done
printf '  %-34s %s\n' "total" "$(du -sh "$moved" | cut -f1)"
[[ "$stale" == 0 ]]
