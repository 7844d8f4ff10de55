#!/usr/bin/env bash
# What the mesh page's browser test needs beyond the system tools (Chromium and Node.js, from
# scripts/install-system.sh): playwright-core from npm (no browser download: it drives
# /usr/bin/chromium), into the git-ignored node_modules at the repository root. Does
# nothing when it is there.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in chromium node npm; do
  command -v "$tool" >/dev/null || { echo "missing $tool: run scripts/install-system.sh as root" >&2; exit 1; }
done
version=1.64.1
if [ "$(node -p "try { require('./node_modules/playwright-core/package.json').version } catch (e) { '' }" 2>/dev/null)" != "$version" ]; then
  echo "installing playwright-core $version with npm" >&2
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-save --no-package-lock --no-audit --no-fund "playwright-core@$version" >/dev/null
fi
