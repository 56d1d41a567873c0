#!/usr/bin/env bash
# tools/devbench-bundle.sh [DIR]: the benchmark bundle for a lent machine without network
# (bench/README.md, "On a lent machine"), built by the shared ../shared/devbench/build.sh
# with two things it cannot do alone:
#
#   - a wheel for every locked dependency the package index holds only as source (http-ece,
#     under pywebpush): build.sh downloads binaries only (the machine has no compiler or
#     network), so without one the bundle does not build at all. `pip wheel` makes them here;
#     the pure-Python ones (py3-none-any) install on the machine's Python 3.12;
#   - the versions of requirements.lock, as constraints, so the bundle measures what
#     production installs rather than whatever is newest on the index that day.
#
# It then checks the bundle: every wheel of a locked package is a file the lock pins by hash
# or one built here from a source the lock's hash vouched for (tools/lock_pins.py, check).
#
# What a run may carry is 64 MiB for the working tree and the carried paths together, and the
# bundle's wheels alone are about 57 MiB: with build.sh's copy of the tree (src/) beside the
# tree itself it was over. So src/ is left out of the bundle and DIR/go.sh, the command a run
# calls, makes it on the machine from the tree that travelled with it, then runs run.sh. The
# size checked is the tree's (tracked and untracked files git does not ignore) and the
# bundle's together: over the limit, a run would be refused only once it is asked for, on the
# session's few minutes of device time.
set -euo pipefail
dir=${1:-.devbench}
shared=${DEVBENCH_SHARED:-../shared/devbench}
limit_bytes=${DEVBENCH_LIMIT_BYTES:-$((64 * 1024 * 1024))}
python=${PYTHON:-python3}  # with pip and packaging
target_python=3.12          # the Python build.sh downloads for

[ -f requirements.lock ] || { echo "run from the project's root" >&2; exit 2; }
[ -f "$shared/build.sh" ] || { echo "no $shared/build.sh (DEVBENCH_SHARED names it)" >&2; exit 2; }

extra=$(mktemp -d)
trap 'rm -rf "$extra"' EXIT

# The lock's pins that apply on the machine's Python (tools/lock_pins.py says why).
"$python" tools/lock_pins.py constraints requirements.lock "$target_python" > "$extra/constraints.txt"
[ -s "$extra/constraints.txt" ] || { echo "no pins read from requirements.lock" >&2; exit 2; }

# Every locked dependency as a wheel for this interpreter, checked against the lock's hashes;
# only the pure-Python ones serve the other machine's interpreter.
"$python" -m pip wheel --quiet --no-deps --require-hashes -r requirements.lock -w "$extra/built"
mkdir "$extra/wheels"
find "$extra/built" -name '*-none-any.whl' -exec mv {} "$extra/wheels/" \;

PIP_FIND_LINKS="$extra/wheels" PIP_CONSTRAINT="$extra/constraints.txt" bash "$shared/build.sh" "$dir"

"$python" tools/lock_pins.py check requirements.lock "$dir/whl" "$extra/wheels"

rm -rf "${dir:?}/src"
cat > "$dir/go.sh" <<'EOF'
#!/usr/bin/env bash
# Written by tools/devbench-bundle.sh: run.sh with src/ made from the working tree that
# travelled beside this bundle (the bundle leaves it out; see that script). On the machine,
# from the project's root: bash .devbench/go.sh (results in $OUT).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
rm -rf "$here/src" && mkdir "$here/src"
tar -C "$here/.." --exclude="./$(basename "$here")" --exclude=./.git --exclude=./.venv -cf - . \
    | tar -C "$here/src" -xf -
exec bash "$here/run.sh"
EOF

bundle=$(du -sb "$dir" | cut -f1)
# (a tracked file deleted in the tree does not travel: stat skips it)
tree=$({ git ls-files -z --cached --others --exclude-standard \
    | xargs -0 -r stat -c %s -- 2>/dev/null || true; } | awk '{ total += $1 } END { print total + 0 }')
echo "bundle: $dir, $bundle bytes; with the working tree ($tree bytes): $((bundle + tree))" \
    "(the limit on what a run carries: $limit_bytes)"
if [ $((bundle + tree)) -gt "$limit_bytes" ]; then
    echo "over the limit: a run could not carry the tree and the bundle" >&2
    exit 3
fi
echo "to run it: carry [\"$dir\"], command \"bash $dir/go.sh\""
