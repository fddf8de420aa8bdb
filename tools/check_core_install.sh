#!/usr/bin/env bash
# Proves the core install: `pip install scenic-eqx` with no extras, at the lower bounds.
#
# In a fresh virtualenv (a temporary folder, removed at the end):
#   1. pip install -c constraints-lowest.txt .   (the core dependencies at their lower bounds)
#   2. `import tensorflow` must fail;
#   3. tools/core_smoke.py: a ViT trained by loops.fit on data.from_arrays, resumed from
#      its checkpoint; the [logging] and [data] extras named where they are missing;
#   4. pip install '.[data]'; then TFDS imports and data.list_datasets() works.
# Extras are pinned by constraints.txt, the core by constraints-lowest.txt.
# Usage: tools/check_core_install.sh   (PYTHON=python3.12 to use another interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
started=$SECONDS
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
venv=$scratch/venv

# The core's pins, plus constraints.txt's for every other package (the extras of step 4).
core_names=$(grep -v '^#' constraints-lowest.txt | sed -n 's/^\([A-Za-z0-9_.-]*\)==.*/\1/p' | tr 'A-Z_.' 'a-z--')
{
    cat constraints-lowest.txt
    while IFS= read -r line; do
        name=$(printf '%s' "$line" | sed -n 's/^\([A-Za-z0-9_.-]*\)==.*/\1/p' | tr 'A-Z_.' 'a-z--')
        if [ -n "$name" ] && ! grep -qx "$name" <<<"$core_names"; then
            printf '%s\n' "$line"
        fi
    done < constraints.txt
} > "$scratch/constraints.txt"

echo "== core install at the lower bounds (constraints-lowest.txt)"
"${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -c "$scratch/constraints.txt" "$repo"
"$venv/bin/pip" list --disable-pip-version-check 2>/dev/null \
    | grep -iE '^(jax|jaxlib|equinox|optax|orbax-checkpoint|jaxtyping|beartype|numpy|tqdm) '
core_size=$(du -sh "$venv" | cut -f1)

# Run outside the checkout, so that only the installed package can be imported.
cd "$scratch"
if "$venv/bin/python" -c "import tensorflow" 2>/dev/null; then
    echo "FAIL: the core install can import tensorflow" >&2
    exit 1
fi
echo "== core smoke"
"$venv/bin/python" "$repo/tools/core_smoke.py"

echo "== pip install '.[data]' in the same virtualenv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -c "$scratch/constraints.txt" "$repo[data]"
"$venv/bin/python" -c "
import tensorflow_datasets
from scenic_eqx import data
names = data.list_datasets()
assert 'digits' in names, names
print(f'[data]: tensorflow_datasets {tensorflow_datasets.__version__}; {len(names)} datasets listed')
"
echo "virtualenv size: core $core_size, with [data] $(du -sh "$venv" | cut -f1); took $((SECONDS - started)) s"
echo "core install check: OK"
