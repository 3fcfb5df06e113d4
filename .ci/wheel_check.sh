#!/usr/bin/env bash
# The packaged install, checked as a user gets it: `python -m build` makes the sdist and, from it, the wheel; the
# wheel alone is installed (--no-deps --target) into a temporary folder; from another working folder the
# installed command and library run with the project's installed dependencies (.venv) on the path but never the
# clone's source, and with the model the wheel carries. Called by .ci/run after the tests; runs alone too:
#   .ci/wheel_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd -P)
py="$repo/.venv/bin/python"
fixtures="$repo/tests/fixtures/placepulse/images"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo ">> python -m build (sdist, then the wheel from it)"
had_egg_info=$([[ -e perceptions.egg-info ]] && echo yes || true)
if ! "$py" -m build --outdir "$work/dist" >"$work/build.log" 2>&1; then
    tail -40 "$work/build.log"
    exit 1
fi
[[ -n "$had_egg_info" ]] || rm -rf perceptions.egg-info  # the sdist step's by-product in the clone
wheel=$(ls "$work"/dist/perceptions-*.whl)
ls -l "$work"/dist/

echo ">> the wheel carries the repository's model/ as perceptions/_model/, byte for byte"
"$py" - "$wheel" "$repo/model" <<'EOF'
import hashlib, sys, zipfile
from pathlib import Path

wheel, model = sys.argv[1], Path(sys.argv[2])
names = zipfile.ZipFile(wheel).namelist()
print(f"{Path(wheel).name}: {Path(wheel).stat().st_size / 2**20:.1f} MiB, {len(names)} files")
shipped = {n.split("/", 2)[2]: n for n in names if n.startswith("perceptions/_model/")}
expected = {p.name for p in model.iterdir() if p.is_file() and not p.name.startswith(".")}
assert set(shipped) == expected, f"wheel's model files {sorted(shipped)} != model/ {sorted(expected)}"
with zipfile.ZipFile(wheel) as z:
    for name, member in shipped.items():
        same = hashlib.sha256(z.read(member)).digest() == hashlib.sha256((model / name).read_bytes()).digest()
        assert same, f"{member} differs from model/{name}"
assert not [n for n in names if n.startswith(("tests/", "model/"))], "the wheel carries files outside the package"
print(f"model files: {', '.join(sorted(shipped))}")
EOF

site="$work/site"
echo ">> pip install --no-deps --target $site"
"$py" -m pip install --quiet --no-deps --no-index --target "$site" "$wheel"

# From here: a working folder outside the clone; the installed wheel first on the path, the .venv's packages
# (torch, timm, ...) after it. The .venv's editable install of the clone must not be what gets imported.
mkdir "$work/run"
cd "$work/run"
export PYTHONPATH="$site"
export SITE_DIR="$site" REPO_DIR="$repo"
unset PERCEPTIONS_MODEL
perceptions="$site/bin/perceptions"
touch "$work/started"

echo ">> perceptions --version"
version=$("$perceptions" --version)
echo "$version"
[[ "$version" =~ ^perceptions\ [0-9][^\ ]*$ ]] || { echo "expected just the version outside a clone"; exit 1; }

echo ">> import perceptions; perceptions.load_model()"
"$py" -c '
import os
from pathlib import Path

import perceptions

site, repo = Path(os.environ["SITE_DIR"]).resolve(), Path(os.environ["REPO_DIR"]).resolve()
where = Path(perceptions.__file__).resolve()
print("perceptions.__file__ =", where)
assert site in where.parents and repo not in where.parents, "imported the clone, not the installed wheel"
model = perceptions.load_model()
print(model)
assert model.path.resolve() == site / "perceptions" / "_model", f"loaded {model.path}, not the wheel model"
'

echo ">> perceptions predict $fixtures (default model)"
"$perceptions" predict "$fixtures" --out predictions.csv --device cpu --workers 0 --no-progress
"$py" -c '
import pandas as pd
rows = pd.read_csv("predictions.csv")
assert len(rows) > 0 and rows.filter(like="_score").notna().all().all(), rows
print(f"predictions.csv: {len(rows)} rows, columns {list(rows.columns)}")
'

echo ">> perceptions explain (default model)"
image=$(ls "$fixtures"/* | head -1)
"$perceptions" explain "$image" --study safe --out heat.png
test -s heat.png

echo ">> PERCEPTIONS_MODEL pointing nowhere: one line, exit 2"
set +e
PERCEPTIONS_MODEL="$work/nowhere" "$perceptions" predict "$fixtures" --out bad.csv --device cpu \
    --workers 0 --no-progress 2>err.txt
code=$?
set -e
cat err.txt
[[ $code -eq 2 && $(wc -l <err.txt) -eq 1 ]] && grep -q "PERCEPTIONS_MODEL=" err.txt

echo ">> perceptions map --html (the template and Leaflet come from the installed package)"
"$perceptions" map predictions.csv --html map.html
grep -q "L.map" map.html && grep -q "Leaflet" map.html && ! grep -q "unpkg.com\|cdn" map.html

echo ">> perceptions serve (pages, static files and the model from the installed package): start, /api/health, stop"
"$perceptions" serve --images "$fixtures" --votes serve_votes.tsv --port 0 --device cpu >serve.out 2>serve.err &
serve_pid=$!
cat >serve_check.py <<'EOF'
import http.client, json, re, sys, time
from pathlib import Path

def get(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()

deadline = time.monotonic() + 180
while True:
    found = re.search(r"http://127\.0\.0\.1:(\d+)/", Path("serve.out").read_text())
    try:
        if found and get(int(found.group(1)), "/api/health") == (200, b'{"status":"ok"}'):
            break
    except OSError:
        pass
    if "error:" in Path("serve.err").read_text() or time.monotonic() > deadline:
        sys.exit("perceptions serve did not answer /api/health: " + Path("serve.err").read_text()[-2000:])
    time.sleep(0.5)
port = int(found.group(1))
for page in ("/score", "/vote", "/map", "/static/serve.js"):
    assert get(port, page)[0] == 200, page
status, body = get(port, "/api/pair?study=safe")
pair = json.loads(body)
assert status == 200 and get(port, pair["left_url"])[0] == 200, body
print(Path("serve.out").read_text().strip(), "- health, pages, static files, a pair and its image answered")
EOF
"$py" serve_check.py || { kill "$serve_pid"; exit 1; }
kill -INT "$serve_pid"
wait "$serve_pid" || { cat serve.err; echo "perceptions serve did not stop cleanly on Ctrl-C"; exit 1; }

echo ">> nothing written inside the installed package"
written=$(find "$site" -newer "$work/started" -type f ! -path '*/__pycache__/*')
[[ -z "$written" ]] || { echo "written inside the installed package: $written"; exit 1; }

echo "wheel check passed"
