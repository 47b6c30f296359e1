"""The built documentation site, in a real browser: math typeset, figures loaded, no console error.

Runs ``scripts/check_site.py`` (docs/site.md): ``site/`` served on 127.0.0.1, every lecture page
and a few pages with math opened in headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by selenium), offline. Marked ``browser``, which the default run
deselects; run it with::

    mkdocs build --strict && python -m pytest -m browser

It skips, with the reason, when the site is not built (``MANUALGRAD_SITE`` names another folder
than ``site/``), or when Chromium, chromedriver or selenium is missing. The last test, not marked,
checks the build hook's docstring conversion (scripts/mkdocs_hooks.py) without a build; it needs
the docs extra (mkdocs, griffe) and skips without it.
"""
import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(os.environ.get("MANUALGRAD_SITE", ROOT / "site"))



def _check_site_module():
    spec = importlib.util.spec_from_file_location("check_site", ROOT / "scripts" / "check_site.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def check_site():
    module = _check_site_module()
    if not (SITE / "index.html").is_file():
        pytest.skip("no built site in %s: run `mkdocs build --strict` first" % SITE)
    try:
        module.find_browser()
    except module.Unavailable as exc:
        pytest.skip(str(exc))
    return module


@pytest.mark.browser
def test_every_lecture_page_has_typeset_math_loaded_figures_and_no_console_error(
        check_site, tmp_path):
    lines = []
    results = check_site.check_site(SITE, screenshots=tmp_path, log=lines.append)
    lectures = check_site.lecture_pages(SITE)
    assert len(lectures) == 5, lectures
    assert set(lectures) <= set(results)
    failed = {page: probs for page, probs in results.items() if probs}
    assert not failed, "\n".join(lines)
    for page in lectures:  # a screenshot of each lecture, not blank
        shot = tmp_path / (Path(page).stem + ".png")
        assert shot.is_file() and shot.stat().st_size > 20_000, shot


@pytest.mark.browser
def test_the_checker_fails_a_page_with_raw_math_and_a_broken_image(check_site, tmp_path):
    """The check itself: a page with untypeset TeX and a missing figure must fail."""
    bad = tmp_path / "site"
    (bad / "lectures").mkdir(parents=True)
    (bad / "index.html").write_text("<html><body>home</body></html>")
    (bad / "lectures" / "01_bad.html").write_text(
        "<html><body><p>Raw: $$x^2$$ and \\(y\\).</p><img src='missing.png'></body></html>")
    results = check_site.check_site(bad, pages=["lectures/01_bad.html"], log=lambda s: None)
    problems = " ".join(results["lectures/01_bad.html"])
    assert "MathJax did not load" in problems
    assert "raw math" in problems
    assert "images not loaded" in problems
    assert "console errors" in problems


def test_sphinx_roles_become_cross_references_or_plain_code():
    pytest.importorskip("mkdocs")
    pytest.importorskip("griffe")
    spec = importlib.util.spec_from_file_location("mkdocs_hooks", ROOT / "scripts" / "mkdocs_hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    modules = hooks.api_modules()
    assert "manualgrad.rnn" in modules and "manualgrad.ode.node" in modules
    text = (":func:`~manualgrad.rnn.forward`, :class:`Adjoint`, :mod:`manualgrad.ode.node`, "
            ":func:`manualgrad._validate.float_array`, :data:`numpy.pi`, x[k][-1], once::")
    out = hooks.convert_roles(text, "manualgrad.rnn", modules)
    assert "[`forward()`][manualgrad.rnn.forward]" in out          # ~: the last component
    assert "[`Adjoint`][manualgrad.rnn.Adjoint]" in out            # relative to the module
    assert "[`manualgrad.ode.node`][manualgrad.ode.node]" in out
    assert "`manualgrad._validate.float_array()`" in out and "][manualgrad._validate" not in out
    assert "`numpy.pi`" in out                                      # no API entry: plain code
    assert "x\\[k\\]\\[-1\\]" in out and out.endswith("once:")   # not a link; RST "::"
    assert ":func:" not in out and ":class:" not in out
