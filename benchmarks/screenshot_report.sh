#!/usr/bin/env bash
# Render a `ga-gan compare` HTML report in headless Chromium and save a screenshot, to look at
# what a reader sees (fonts, tables, inlined images) without a desktop.
#
#   benchmarks/screenshot_report.sh REPORT.html SHOT.png [WIDTHxHEIGHT]
#
# Needs Chromium (Debian: apt-get install chromium). The page loads nothing from the network:
# every image is inlined in the HTML file.
set -euo pipefail
html=$(realpath "$1")
shot=$(realpath -m "$2")
size=${3:-1400x2000}
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
  --window-size="${size/x/,}" --screenshot="$shot" "file://$html" 2>/dev/null
echo "wrote $shot"
