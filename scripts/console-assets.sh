#!/usr/bin/env bash
# Refreshes the graph libraries the web console embeds (cytoscape.js and its
# dagre layout), from the npm registry at the versions pinned in
# internal/console/web/package-lock.json, into internal/console/assets/vendor
# with their licenses. The built files are committed: building midonet needs
# neither node nor the network. Run it after changing web/package.json.
set -euo pipefail
cd "$(dirname "$0")/../internal/console/web"
if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
out=../assets/vendor
mkdir -p "$out"
cp node_modules/cytoscape/dist/cytoscape.min.js "$out/"
cp node_modules/cytoscape/LICENSE "$out/cytoscape.LICENSE"
cp node_modules/cytoscape-dagre/dist/cytoscape-dagre.min.js "$out/"
cp node_modules/cytoscape-dagre/LICENSE "$out/cytoscape-dagre.LICENSE"
rm -rf node_modules
echo "vendor files in internal/console/assets/vendor:"; ls -l "$out"
