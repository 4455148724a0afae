#!/usr/bin/env bash
# Wheels of the runtime packages that the lent GPU machine's image lacks, into .whl/.
#
# The device image has PyTorch (CUDA), numpy, typer, rich, pyyaml and pytest, but not
# Optuna, SQLAlchemy or pydantic, and it cannot download anything. This fetches them for
# its Python (3.12, x86-64 manylinux), pinned to the versions installed here (the tested
# ones), so that `run(carry=[".whl"])` can install them there (benchmarks/device/suite.sh).
# Run here, from anywhere, with the project's virtual environment built (.venv).
set -euo pipefail
cd "$(dirname "$0")/../.."
python="${PYTHON:-.venv/bin/python}"
exclude="$(git rev-parse --git-path info/exclude)" # a worktree's .git is a file
mkdir -p "$(dirname "$exclude")"
grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >>"$exclude"
packages=(
    optuna sqlalchemy greenlet alembic mako colorlog tqdm
    pydantic pydantic-core annotated-types typing-inspection typing-extensions
    optuna-dashboard bottle plotly narwhals
)
pins=()
for name in "${packages[@]}"; do
    pins+=("$name==$("$python" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name")")
done
rm -rf .whl
"$python" -m pip download -q --no-deps --only-binary=:all: -d .whl \
    --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    "${pins[@]}"
du -sh .whl
ls .whl
