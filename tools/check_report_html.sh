#!/usr/bin/env bash
# Opens a run's report.html in headless Chromium and checks that every image decodes (the
# report embeds them, so none may be missing or broken). Needs Debian's chromium
# (apt-get install chromium); nothing in mio depends on it.
# Usage: tools/check_report_html.sh runs/WORKFLOW/report.html
set -euo pipefail
report="$1"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# A copy that, once loaded, writes the count of decoded and broken images into the page.
sed 's#</body></html>#<script>window.addEventListener("load",()=>{const i=[...document.images];document.body.setAttribute("data-check",i.length+" images, "+i.filter(x=>x.complete\&\&x.naturalWidth>0).length+" decoded, "+document.querySelectorAll("svg").length+" charts")});</script></body></html>#' "$report" > "$tmp/report.html"
dom=$(chromium --headless --no-sandbox --disable-gpu --virtual-time-budget=10000 --dump-dom "file://$tmp/report.html" 2>/dev/null)
line=$(echo "$dom" | grep -o 'data-check="[^"]*"' || true)
echo "${line:-no result: the page did not load}"
total=$(echo "$line" | sed -E 's/data-check="([0-9]+) images, ([0-9]+) decoded.*/\1/')
ok=$(echo "$line" | sed -E 's/data-check="([0-9]+) images, ([0-9]+) decoded.*/\2/')
[ -n "$line" ] && [ "$total" = "$ok" ] && [ "$total" -gt 0 ]
