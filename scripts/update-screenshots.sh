#!/usr/bin/env bash
# Copy the README's screenshots from the browser tests' artifacts (run `make test` first).
set -euo pipefail
cd "$(dirname "$0")/.."
src=artifacts/screenshots
dst=docs/screenshots
mkdir -p "$dst"
for name in admin-overview admin-member admin-programme admin-till-confirmation \
            cockpit-dashboard cockpit-rewards cockpit-wallet; do
  for width in desktop phone; do
    test -f "$src/$name-$width.png" || { echo "missing $src/$name-$width.png" >&2; exit 1; }
    cp "$src/$name-$width.png" "$dst/"
  done
done
echo "updated $dst"
