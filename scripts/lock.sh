#!/usr/bin/env bash
# The lock files (`make lock`): every requirement of this repository's distributions (the
# pyproject.toml files: the server at the top and any below it) resolved once, with hashes, for
# every platform and Python >= 3.11 (--universal). make, CI and the image install from them, so
# they resolve the same everywhere; `make lint` (scripts/check_deps.py) checks they pin what the
# pyproject.toml files declare. Run it after changing a dependency, and to take upgrades
# (UPGRADE=1: the newest versions the bounds allow, instead of keeping the pins).
#
#   requirements/dev.txt     every distribution with every extra: the virtualenv of make and CI
#   requirements/server.txt  the server and the distributions it depends on: the image (Dockerfile)
#   requirements/build.txt   the build backend the distributions name (build-system.requires)
#
# The repository's own distributions are left out of the files (they are installed from their
# directories, without dependencies).
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-.venv/bin/uv}
OUT=requirements
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# name, directory, build requirements and local dependencies of each distribution
python3 - "$WORK" <<'PY'
import pathlib, re, sys, tomllib
work = pathlib.Path(sys.argv[1])
root = pathlib.Path.cwd()
dists = {}
for path in sorted(root.rglob("pyproject.toml")):
    rel = path.relative_to(root)
    if any(p.startswith(".") or p in {"build", "dist", "node_modules"} for p in rel.parts):
        continue
    data = tomllib.loads(path.read_text())
    name = re.sub(r"[-_.]+", "-", data["project"]["name"]).lower()
    deps = [re.split(r"[ <>=!~;\[]", d, maxsplit=1)[0] for d in data["project"].get("dependencies", [])]
    dists[name] = (rel.parent, [re.sub(r"[-_.]+", "-", d).lower() for d in deps], data)
top = next(n for n, (d, _, _) in dists.items() if str(d) == ".")
image = {top} | {d for d in dists[top][1] if d in dists}
def source(directory):
    return "./" if str(directory) == "." else f"./{directory}"
with open(work / "every-distribution-and-extra", "w") as f:
    for name, (directory, _, data) in dists.items():
        extras = ",".join(data["project"].get("optional-dependencies", {}))
        f.write(f"-e {source(directory)}{f'[{extras}]' if extras else ''}\n")
with open(work / "the-server-image", "w") as f:
    for name in sorted(image):
        f.write(f"-e {source(dists[name][0])}\n")
with open(work / "build-system-requires", "w") as f:
    f.write("\n".join(sorted({r for _, _, data in dists.values() for r in data.get("build-system", {}).get("requires", [])})) + "\n")
(work / "local").write_text(" ".join(dists))
PY

no_emit=()
for name in $(cat "$WORK/local"); do no_emit+=(--no-emit-package "$name"); done
upgrade=()
[ "${UPGRADE:-0}" = 1 ] && upgrade=(--upgrade)
mkdir -p "$OUT"
declare -A inputs
inputs=([dev]=every-distribution-and-extra [server]=the-server-image [build]=build-system-requires)
for lock in dev server build; do
    # Each lock keeps its own pins unless upgraded; server.txt follows dev.txt's (the image runs
    # what the tests ran).
    constraints=()
    [ "$lock" = server ] && constraints=(--constraints "$OUT/dev.txt")
    "$UV" pip compile --quiet --universal --python-version 3.11 --generate-hashes "${upgrade[@]}" \
        --custom-compile-command "make lock" "${no_emit[@]}" "${constraints[@]}" \
        --output-file "$OUT/$lock.txt" "$WORK/${inputs[$lock]}"
    sed -i "s|$WORK/||" "$OUT/$lock.txt"  # the inputs' temporary place
done
echo "locked: $(grep -c '^[a-z]' "$OUT/dev.txt") packages in $OUT/dev.txt," \
    "$(grep -c '^[a-z]' "$OUT/server.txt") in server.txt, $(grep -c '^[a-z]' "$OUT/build.txt") in build.txt"
