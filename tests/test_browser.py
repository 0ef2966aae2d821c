"""The HTML report in a real headless browser (Debian's chromium): every section present,
every figure loaded; a screenshot of the first screen is kept as a test artifact.

Skipped only when /usr/bin/chromium is absent (``.ci/run`` installs it).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from grpo_align.cli import main

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACT = Path(__file__).resolve().parents[1] / "test-artifacts" / "report-first-screen.png"
SECTIONS = ["binary", "reverse-kl", "practice"]

#: Injected into a copy of the page: after load, record how many <img> decoded to real pixels.
IMAGE_CHECK = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0 && i.naturalHeight > 0; });
  document.body.setAttribute("data-images-loaded", ok.length + "/" + imgs.length);
});
</script>"""

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="chromium not installed at /usr/bin/chromium")


def _chromium(profile: Path, *args: str) -> subprocess.CompletedProcess:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ]
    return subprocess.run([str(CHROMIUM), *flags, *args], capture_output=True, text=True, timeout=90)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("browser") / "report"
    assert main(["reproduce", "--quick", "--only", *SECTIONS, "--out", str(out)]) == 0
    return out


def test_every_section_and_figure_loads(report, tmp_path):
    page = report / "index.html"
    checked = tmp_path / "checked.html"
    checked.write_text(page.read_text().replace("</body>", IMAGE_CHECK + "</body>"))
    proc = _chromium(tmp_path / "profile", "--virtual-time-budget=10000", "--dump-dom", checked.as_uri())
    dom = proc.stdout
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((report / "summary.json").read_text())
    assert [s["name"] for s in summary["sections"]] == SECTIONS
    for s in summary["sections"]:
        assert re.search(rf'<section[^>]*id="{re.escape(s["name"])}"', dom), s["name"]
    n_figures = len(list((report / "figures").glob("*.png")))
    assert n_figures >= len(SECTIONS)
    assert dom.count("<img") == n_figures
    match = re.search(r'data-images-loaded="(\d+)/(\d+)"', dom)
    assert match, "the image check did not run"
    assert match.group(1) == match.group(2) == str(n_figures)


def test_first_screen_screenshot(report, tmp_path):
    shot = tmp_path / "first-screen.png"
    proc = _chromium(
        tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,900", (report / "index.html").as_uri()
    )
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (900, 1280)
    assert float(np.std(pixels[..., :3])) > 0.05, "the first screen is blank"
    ARTIFACT.parent.mkdir(exist_ok=True)
    shutil.copyfile(shot, ARTIFACT)
