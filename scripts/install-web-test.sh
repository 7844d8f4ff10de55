#!/usr/bin/env bash
# What the mesh page's browser test needs: Debian's Chromium (apt) and playwright-core from
# npm (no browser download: it drives /usr/bin/chromium), into the git-ignored node_modules
# at the repository root. Node.js and npm come from apt when missing. Does nothing when all
# are present.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing ${missing[*]}: run as root, or apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "installing ${missing[*]} with apt-get" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
version=1.64.1
if [ "$(node -p "try { require('./node_modules/playwright-core/package.json').version } catch (e) { '' }" 2>/dev/null)" != "$version" ]; then
  echo "installing playwright-core $version with npm" >&2
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-save --no-package-lock --no-audit --no-fund "playwright-core@$version" >/dev/null
fi
