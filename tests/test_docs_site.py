"""The built documentation site in a real headless browser (Debian's chromium), offline.

Opens the index, the Concepts pages (formulas and figures), the theory page and one
executed tutorial: every image decodes to real pixels, MathJax (served from the site)
typesets every formula without an error or an undefined macro, no TeX is left visible as
text, and the page logs no console error. Skipped unless the site is built (``python3 tasks.py
docs`` writes ``site/``; ``.ci/run`` builds it, then runs this file) and chromium is at
/usr/bin/chromium.
"""

from __future__ import annotations

import functools
import http.server
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "site"
CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.skipif(not (SITE / "index.html").is_file(), reason="site not built (python3 tasks.py docs)"),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="chromium not installed at /usr/bin/chromium"),
]

#: Injected into a copy of the page: collect console errors and failed loads, then, after
#: load and MathJax's typesetting, record on <body> the image and formula counts, the TeX
#: still visible as text outside code (a formula arithmatex or MathJax missed), and the
#: formulas MathJax typeset as an error or with an undefined macro.
PROBE = r"""<script>
window.__errors = [];
(function () {
  var orig = console.error;
  console.error = function () { window.__errors.push(Array.prototype.join.call(arguments, " ")); orig.apply(console, arguments); };
  window.addEventListener("error", function (e) {
    window.__errors.push("load error: " + (e.message || (e.target && (e.target.src || e.target.href)) || "?"));
  }, true);
  window.addEventListener("load", function () {
    var done = function () {
      var imgs = Array.prototype.slice.call(document.images);
      var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0 && i.naturalHeight > 0; });
      var b = document.body;
      b.setAttribute("data-images", ok.length + "/" + imgs.length);
      b.setAttribute("data-math", document.querySelectorAll("mjx-container").length + "/" + document.querySelectorAll(".arithmatex").length);
      b.setAttribute("data-errors", String(window.__errors.length));
      // TeX left visible in the article's text (outside code and typeset formulas)
      var article = document.querySelector(".md-content");
      var raw = [];
      if (article) {
        var copy = article.cloneNode(true);
        Array.prototype.forEach.call(copy.querySelectorAll("pre, code, script, style, mjx-container"), function (n) { n.remove(); });
        raw = copy.textContent.match(/\$|\\[()\[\]]|\\[A-Za-z]+/g) || [];
      }
      b.setAttribute("data-raw-tex", raw.length + ":" + raw.slice(0, 10).join(" "));
      // formulas MathJax could not parse (merror) or with an undefined macro (noundefined: red)
      if (window.MathJax && MathJax.startup && MathJax.startup.document && MathJax.startup.toMML) {
        var failed = [];
        Array.from(MathJax.startup.document.math).forEach(function (item) {
          if (/<merror|mathcolor="red"/.test(MathJax.startup.toMML(item.root))) { failed.push(item.math); }
        });
        b.setAttribute("data-tex-errors", failed.length + ":" + failed.slice(0, 3).join(" | ").slice(0, 300));
      } else {
        b.setAttribute("data-tex-errors", "unchecked: no MathJax.startup.toMML");
      }
      b.setAttribute("data-error-text", window.__errors.join(" | ").slice(0, 500));
    };
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) { MathJax.startup.promise.then(done, done); } else { done(); }
  });
})();
</script>"""


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """The site served on the loopback interface, as a reader's browser gets it (the search
    index loads in a web worker, which file:// pages cannot start)."""
    handler = functools.partial(_QuietHandler, directory=str(SITE))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _probe(page: Path, base: str, tmp_path: Path) -> dict[str, str]:
    """Load a probed copy of ``page`` (beside it, so relative links resolve) and read the marks."""
    html = page.read_text()
    copy = page.with_name(f"_probe_{page.name}")
    copy.write_text(html.replace("<head>", "<head>" + PROBE, 1))
    try:
        flags = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=15000",
            "--dump-dom",
            f"{base}/{copy.relative_to(SITE).as_posix()}",
        ]
        proc = subprocess.run([str(CHROMIUM), *flags], capture_output=True, text=True, timeout=120)
    finally:
        copy.unlink()
    assert proc.returncode == 0, proc.stderr[-2000:]
    marks = dict(re.findall(r'data-(images|math|errors|error-text|raw-tex|tex-errors)="([^"]*)"', proc.stdout))
    assert "images" in marks, "the probe did not run: " + proc.stderr[-1000:]
    return marks


def _loaded(fraction: str) -> tuple[int, int]:
    done, total = (int(x) for x in fraction.split("/"))
    return done, total


@pytest.mark.parametrize(
    ("page", "min_images", "needs_math"),
    [
        ("index.html", 0, False),
        ("concepts/stationary-policy.html", 1, True),
        ("concepts/preference.html", 0, True),
        ("concepts/penalties.html", 0, True),
        ("concepts/aggregation.html", 0, True),
        ("concepts/boundary.html", 0, True),
        ("tutorials/beta_and_g.html", 1, False),
        ("THEORY.html", 0, True),
    ],
)
def test_page_loads_offline(page, min_images, needs_math, server, tmp_path):
    marks = _probe(SITE / page, server, tmp_path)
    assert marks["errors"] == "0", marks.get("error-text")
    done, total = _loaded(marks["images"])
    assert done == total >= min_images, marks["images"]
    typeset, formulas = _loaded(marks["math"])
    if needs_math:
        assert formulas > 0 and typeset >= formulas, marks["math"]
        assert marks["tex-errors"].startswith("0:"), marks["tex-errors"]
        assert marks["raw-tex"].startswith("0:"), marks["raw-tex"]


def test_site_has_every_section():
    for rel in [
        "getting-started.html",
        "reference/cli.html",
        "reference/mappings.html",
        "reference/presets.html",
        "reference/api/theory.html",
        "THEORY.html",
        "javascripts/mathjax/tex-svg-full.js",
        *(f"tutorials/{p.stem}.html" for p in (ROOT / "docs" / "tutorials").glob("*.py")),
    ]:
        assert (SITE / rel).is_file(), rel
    # the CLI reference lists every subcommand of the parser it was generated from
    from grpo_align.cli import COMMANDS

    cli = (SITE / "reference" / "cli.html").read_text()
    for name in COMMANDS:
        assert f"grpo-align {name}" in cli, name
    # no page loads a script, style sheet, image or frame from the network (links may point out)
    remote = re.compile(r'<(?:script|img|link|iframe)\b[^>]*\b(?:src|href)="(?:https?:)?//', re.I)
    for page in SITE.rglob("*.html"):
        assert not remote.search(page.read_text()), page
