"""``grpo-align predict``'s index.html in a real headless browser: it loads, every figure
decodes to real pixels, no script error or console error, and no request leaves the page.

Skipped only when /usr/bin/chromium is absent (``.ci/run`` installs it).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from grpo_align.cli import main

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[1]

#: Injected into a copy of the page: record decoded images and any error the page raises.
CHECK = """<script>
var errors = [];
window.addEventListener("error", function (e) { errors.push(String(e.message || e.type)); }, true);
var origError = console.error;
console.error = function () { errors.push(Array.prototype.join.call(arguments, " ")); origError.apply(console, arguments); };
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0 && i.naturalHeight > 0; });
  document.body.setAttribute("data-images-loaded", ok.length + "/" + imgs.length);
  document.body.setAttribute("data-errors", String(errors.length));
});
</script>"""

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="chromium not installed at /usr/bin/chromium")


def test_predict_page_loads_in_chromium(tmp_path):
    out = tmp_path / "out"
    stats = ROOT / "examples" / "pass_rates.jsonl"
    assert main(["predict", str(stats), "--preset", "paper", "--out", str(out), "--quiet"]) == 0
    page = (out / "index.html").read_text()
    # the check script goes first in <head>, so it sees every error of the page itself
    checked = tmp_path / "checked.html"
    checked.write_text(page.replace("<head>", "<head>" + CHECK, 1))
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--enable-logging=stderr",
        "--v=0",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=10000",
        "--dump-dom",
        checked.as_uri(),
    ]
    proc = subprocess.run([str(CHROMIUM), *flags], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    match = re.search(r'data-images-loaded="(\d+)/(\d+)"', dom)
    assert match, "the image check did not run"
    assert match.group(1) == match.group(2) == "3"
    assert 'data-errors="0"' in dom
    # the browser's own log: no console message from the page, no failed resource load
    console_lines = [line for line in proc.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console_lines, console_lines
    assert not re.search(r"(src|href)=\"(https?:)?//", page), "the page must not load external resources"
