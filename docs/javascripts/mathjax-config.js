// MathJax 3 for pymdownx.arithmatex (generic mode); MathJax itself is copied into the
// built site by tools/docs/hooks.py (no CDN: the site works offline).
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"]],
    displayMath: [["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true
  },
  options: {
    ignoreHtmlClass: ".*|",
    processHtmlClass: "arithmatex"
  }
};
