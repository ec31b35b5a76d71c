# Sourced by the scripts beside it: make .venv with the project and its extras installed.
# Usage: . scripts/_venv.sh EXTRAS   (EXTRAS such as "test" or "test,multi")
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
stamp=".venv/.installed-$1"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ examples/pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[$1]"
    # the example pipelines, registered as entry points; [flowyml] brings the real flowyml
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e "./examples[flowyml]"
    touch "$stamp"
fi
