// MathJax 3, served from this site (javascripts/mathjax/, copied at build time from the
// django-static-mathjax wheel by scripts/mkdocs_hooks.py): no CDN, works offline.
// Markdown pages: pymdownx.arithmatex (generic) wraps math as \( \) and \[ \] in .arithmatex.
// Notebook pages: nbconvert leaves $ $ and $$ $$ in the markdown cells (.jp-RenderedMarkdown).
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
    processEnvironments: true,
  },
  options: {
    // Inside a page's content (.md-typeset) only the arithmatex spans and the notebooks'
    // rendered markdown/HTML cells are typeset; code, outputs and plain text are left alone.
    ignoreHtmlClass: "md-typeset|tex2jax_ignore",
    processHtmlClass: "arithmatex|jp-RenderedMarkdown|jp-RenderedLatex|tex2jax_process",
  },
  startup: {
    pageReady: function () {
      return MathJax.startup.defaultPageReady().then(function () {
        document.documentElement.setAttribute("data-math-typeset", "done");
      });
    },
  },
};
