#!/usr/bin/env bash
# One entry point for developers and CI.
#   scripts/dev.sh demo [ARGS]   create .venv if needed, then run the built-in demo
#   scripts/dev.sh test [ARGS]   create .venv if needed, then lint and run the test suite
#   scripts/dev.sh env           only create/refresh the environment and compile the kernels
# The environment is a plain venv in .venv with the versions pinned in requirements.lock.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$root/.venv"
py="${PYTHON:-python3.11}"
command -v "$py" >/dev/null 2>&1 || py=python3

ensure_env() {
    local stamp="$venv/.lock-stamp" want
    want="$(sha256sum requirements.lock pyproject.toml | sha256sum | cut -c1-16)"
    if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        return 0
    fi
    echo "[dev] creating environment in .venv (pinned: requirements.lock)" >&2
    "$py" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
    "$venv/bin/python" -m pip install -q -r requirements.lock
    "$venv/bin/python" -m pip install -q --no-deps -e .
    echo "$want" > "$stamp"
}

# compile the numba kernels now, several at once (a no-op when done for these sources):
# otherwise the first run or test session of a new environment spends ~15 s doing it
warm_up() {
    "$venv/bin/python" -m supadupstack.warmup
}

cmd="${1:-test}"
shift || true
ensure_env
case "$cmd" in
    env) warm_up ;;
    demo) exec "$venv/bin/supadupstack" demo "$@" ;;
    test)
        "$venv/bin/ruff" check src tests benchmarks
        "$venv/bin/ruff" format --check src tests benchmarks
        # two workers, one test file each at a time (module fixtures are built once): the
        # suite takes 12 min instead of 17 on 2 cores; SUPADUPSTACK_TEST_WORKERS=0 runs serially
        exec "$venv/bin/python" -m pytest --durations=15 -n "${SUPADUPSTACK_TEST_WORKERS:-2}" \
            --dist loadfile "$@" ;;
    *) echo "usage: scripts/dev.sh {demo|test|env} [ARGS]" >&2; exit 2 ;;
esac
