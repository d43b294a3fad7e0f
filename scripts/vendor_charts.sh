#!/usr/bin/env bash
# Reproduce static/vendor/lightweight-charts/<version>/ from the npm package.
#
# The chart library is committed as a versioned static file (no CDN, no build step at
# deploy time); this script is how that file was made and how to upgrade it:
#   scripts/vendor_charts.sh            # the pinned version below
#   scripts/vendor_charts.sh 5.3.0      # another version (then update the templates' path)
# Needs npm (it only downloads the package tarball; nothing is installed globally).
set -euo pipefail

VERSION="${1:-5.2.1}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/static/vendor/lightweight-charts/$VERSION"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

cd "$WORK"
npm pack --silent "lightweight-charts@$VERSION" >/dev/null
tar xzf "lightweight-charts-$VERSION.tgz"
mkdir -p "$DEST"
cp package/dist/lightweight-charts.standalone.production.js "$DEST/"
cp package/LICENSE "$DEST/LICENSE"
sha256sum "$DEST/lightweight-charts.standalone.production.js"
echo "Vendored lightweight-charts $VERSION into static/vendor/lightweight-charts/$VERSION/"
