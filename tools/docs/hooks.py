"""MkDocs hooks: MathJax served from the site itself, so the site needs no network.

MathJax 3 comes from the npm registry (``npm pack mathjax@3``, run once by
``python3 tasks.py docs`` into ``.venv/share/grpo-align-docs``); the build itself reads the
tarball offline and adds ``es5/tex-svg-full.js`` (every TeX extension, fonts inside: one
file, nothing loaded later) and MathJax's licence to the site. ``GRPO_ALIGN_MATHJAX`` may
name another tarball.
"""

from __future__ import annotations

import os
import re
import sys
import tarfile
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

#: tarball member -> path in the site
MATHJAX_FILES = {
    "package/es5/tex-svg-full.js": "javascripts/mathjax/tex-svg-full.js",
    "package/LICENSE": "javascripts/mathjax/LICENSE",
}


def mathjax_tarball() -> Path:
    """The MathJax npm tarball: ``GRPO_ALIGN_MATHJAX`` or the one ``tasks.py docs`` fetched."""
    named = os.environ.get("GRPO_ALIGN_MATHJAX")
    if named:
        return Path(named)
    found = sorted((Path(sys.prefix) / "share" / "grpo-align-docs").glob("mathjax-*.tgz"))
    if not found:
        raise PluginError(
            "MathJax not found: run `python3 tasks.py docs` (it fetches it once with "
            f"`npm pack mathjax@3 --pack-destination {Path(sys.prefix) / 'share' / 'grpo-align-docs'}`)"
            " or set GRPO_ALIGN_MATHJAX to a mathjax-3.*.tgz"
        )
    return found[-1]


def on_files(files: Files, config: Any) -> Files:
    tarball = mathjax_tarball()
    with tarfile.open(tarball) as tar:
        for member, dest in MATHJAX_FILES.items():
            handle = tar.extractfile(member)
            if handle is None:
                raise PluginError(f"{tarball}: no {member}; expected MathJax 3's npm package")
            files.append(File.generated(config, dest, content=handle.read()))
    return files


def on_post_page(output: str, page: Any, config: Any) -> str:
    """Drop the empty MathJax loader nbconvert's template puts in a notebook page.

    ``<script src="">`` would fetch the page itself as a script (a console error); the site's
    own MathJax (``extra_javascript``) is on every page already.
    """
    return re.sub(r'<script src="">\s*</script>', "", output)
