#!/usr/bin/env bash
# Regenerate the README/docs pictures from the real Seestar frames in ../shared/seestar_real:
# an SDS run with default settings per target, then its preview, plan and run summary copied
# to docs/<target>_{sds,plan,summary}.png. Usage: scripts/docs_pictures.sh [WORK_DIR]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
shared="$root/../shared/seestar_real"
work="${1:-$(mktemp -d)}"
[[ -d "$shared" ]] || { echo "docs_pictures: $shared is absent" >&2; exit 1; }
py="$root/.venv/bin/python"
for target in "M 94:m94" "NGC 7023:ngc7023"; do
    folder="${target%%:*}" name="${target##*:}"
    out="$work/$name"
    "$py" -m supadupstack run "$shared/${folder}_sub" -o "$out" -q
    cp "$out/supadupstack.png" "$root/docs/${name}_sds.png"
    for plot in plan summary; do
        [[ -f "$out/$plot.png" ]] && cp "$out/$plot.png" "$root/docs/${name}_${plot}.png"
    done
    echo "docs/${name}_*.png from $out"
done
