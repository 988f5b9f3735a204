// MathJax 3 for the theory pages and the tutorials. pymdownx.arithmatex (generic mode) wraps
// every formula of a Markdown page in \( \) or \[ \] inside an "arithmatex" element; the
// notebooks' Markdown cells (rendered by mkdocs-jupyter) keep $ and $$. Only those elements are
// typeset. AMS tags number the equations that use \tag. Material's instant navigation swaps
// pages without a reload, so each new page is typeset again.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
    processEnvironments: true,
    tags: "ams",
  },
  options: {
    // Elements with any class are skipped, except those two; an element without a class
    // (the <p> and <li> of a notebook cell) inherits its parent's choice.
    ignoreHtmlClass: ".+",
    processHtmlClass: "arithmatex|jp-RenderedMarkdown",
  },
};

document$.subscribe(() => {
  if (window.MathJax && MathJax.startup && MathJax.typesetPromise) {
    MathJax.startup.output.clearCache();
    MathJax.typesetClear();
    MathJax.texReset();
    MathJax.typesetPromise();
  }
});
