#!/usr/bin/env bash
# Refresh the vendored front-end libraries from the npm registry (served from static/, no CDN).
# Usage: scripts/vendor_js.sh   (versions below; commit the result)
set -euo pipefail
HTMX=2.0.11
ALPINE=3.17.5
here=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
npm pack --silent "htmx.org@$HTMX" "alpinejs@$ALPINE" >/dev/null
tar xzf "htmx.org-$HTMX.tgz" && cp package/dist/htmx.min.js "$here/site/static/vendor/htmx-$HTMX.min.js" && rm -rf package
tar xzf "alpinejs-$ALPINE.tgz" && cp package/dist/cdn.min.js "$here/site/static/vendor/alpine-$ALPINE.min.js" && rm -rf package
echo "vendored htmx $HTMX and Alpine.js $ALPINE into site/static/vendor/"
