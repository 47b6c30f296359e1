#!/usr/bin/env python3
"""Check the built documentation site in a real browser (headless Chromium), offline.

Serves ``site/`` on 127.0.0.1 (``http.server`` in a thread), opens every lecture page and a few
other pages with math in headless Chromium driven by selenium, and checks on each page:

- the math is typeset: MathJax put ``mjx-container`` elements in the page, none is a TeX error
  (``mjx-merror``), and no ``$$``, ``\\(``, ``\\[`` or ``$x$`` is left in the visible text
  (code excluded);
- every image loaded (``naturalWidth > 0``);
- the console shows no error (a missing file, a failed script);
- every resource the page loaded came from the local server: the browser resolves no other host,
  so the site must work offline.

It saves a full-page screenshot of each lecture page into ``--screenshots`` and, with
``--figure PATH``, the top of lecture 01 (the picture on docs/course.md).

Needs Debian's ``chromium`` and ``chromium-driver`` (or ``CHROME_BIN`` / ``CHROMEDRIVER``) and
``pip install selenium`` (in the docs extra); selenium is given the system driver, so nothing
is downloaded. Usage::

    mkdocs build --strict
    python scripts/check_site.py --site site --screenshots /tmp/site-shots \\
        [--figure docs/figures/lecture01.png]

Exit status 0 when every page passes, 1 otherwise, 2 when no browser or no site is available.
"""
from __future__ import annotations

import argparse
import base64
import functools
import http.server
import os
import shutil
import sys
import threading
import time
from pathlib import Path

EXTRA_PAGES = ("index.html", "course.html", "adjoint.html", "hvp.html", "equations.html")
"""Pages checked besides the lectures: the home page, the course page and pages with math."""
NO_MATH = ("index.html", "equations.html")
"""Pages without math: no ``mjx-container`` is expected there."""

MATH_TIMEOUT = 90  # seconds for MathJax to finish a page (the lectures are long)


class Unavailable(RuntimeError):
    """No browser, no driver, no selenium or no built site: the check cannot run."""


def find_browser():
    """(chromium binary, chromedriver) from CHROME_BIN / CHROMEDRIVER or the PATH; raise Unavailable."""
    browser = os.environ.get("CHROME_BIN") or next(
        (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
        None)
    driver = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver") or next(
        (p for p in ("/usr/lib/chromium/chromedriver", "/usr/bin/chromedriver") if os.path.exists(p)),
        None)
    if not browser:
        raise Unavailable("no Chromium found (apt-get install chromium chromium-driver, or set CHROME_BIN)")
    if not driver:
        raise Unavailable("no chromedriver found (apt-get install chromium-driver, or set CHROMEDRIVER)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        raise Unavailable("selenium is not installed (pip install '.[docs]')")
    return browser, driver


def lecture_pages(site):
    return sorted(p.relative_to(site).as_posix() for p in (site / "lectures").glob("[0-9]*.html"))


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(site):
    """Start a thread serving ``site`` on 127.0.0.1; return (server, base URL)."""
    handler = functools.partial(_Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, "http://127.0.0.1:%d/" % server.server_address[1]


def start_browser(browser, driver, width=1280, height=1000):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--hide-scrollbars", "--window-size=%d,%d" % (width, height),
                "--force-device-scale-factor=1",
                # offline: every host but the local server fails to resolve
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=driver), options=opts)


# Run in the page: what is left of the math, the images, the resources.
PAGE_STATE_JS = r"""
const clone = document.body.cloneNode(true);
clone.querySelectorAll('pre, code, script, style, mjx-container, textarea, .md-search, '
                     + '.clipboard-copy-txt')
     .forEach(e => e.remove());
const text = clone.textContent;
const raw = [];
const pats = [/\$\$/g, /\\\(/g, /\\\[/g, /(^|[^\\\w$])\$[^$\s][^$\n]{0,80}?[^$\s\\]\$(?![\w$])/g];
for (const re of pats) {
  let m; while ((m = re.exec(text)) !== null && raw.length < 5) {
    raw.push(text.slice(Math.max(0, m.index - 30), m.index + 40).replace(/\s+/g, ' '));
  }
}
return {
  typeset: document.documentElement.getAttribute('data-math-typeset'),
  mathjax: typeof window.MathJax === 'object' && !!window.MathJax.version,
  containers: document.querySelectorAll('mjx-container').length,
  errors: Array.from(document.querySelectorAll('mjx-merror')).slice(0, 5)
               .map(e => e.textContent.slice(0, 80)),
  raw: raw,
  images: Array.from(document.images).length,
  broken: Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))
               .map(i => i.src.slice(0, 120)),
  external: performance.getEntriesByType('resource').map(r => r.name)
               .filter(n => !n.startsWith(location.origin) && !n.startsWith('data:')),
  height: Math.max(document.body.scrollHeight, document.documentElement.scrollHeight),
};
"""


def _wait(driver, predicate_js, timeout):
    end = time.time() + timeout
    while time.time() < end:
        if driver.execute_script(predicate_js):
            return True
        time.sleep(0.25)
    return False


def check_page(driver, base, page, math_expected=True):
    """Open ``page``; return (state dict, list of problems)."""
    driver.get_log("browser")  # drop what earlier pages left
    driver.get(base + page)
    _wait(driver, "return document.readyState === 'complete'", 60)
    # after the load event MathJax has run its script, or it never will (then stop waiting)
    _wait(driver, "return document.documentElement.getAttribute('data-math-typeset') === 'done'"
                  " || !(window.MathJax && window.MathJax.version)", MATH_TIMEOUT)
    typeset = driver.execute_script(
        "return document.documentElement.getAttribute('data-math-typeset') === 'done'")
    # scroll through the page so that anything loaded lazily is loaded
    driver.execute_script("window.scrollTo(0, document.body.scrollHeight)")
    _wait(driver, "return Array.from(document.images).every(i => i.complete)", 30)
    driver.execute_script("window.scrollTo(0, 0)")
    state = driver.execute_script(PAGE_STATE_JS)
    console = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    problems = []
    if not state["mathjax"]:
        problems.append("MathJax did not load")
    if state["mathjax"] and not typeset:
        problems.append("MathJax did not finish typesetting within %d s" % MATH_TIMEOUT)
    if math_expected and state["containers"] == 0:
        problems.append("no typeset math (no mjx-container)")
    if state["errors"]:
        problems.append("TeX errors: %s" % state["errors"])
    if state["raw"]:
        problems.append("raw math left in the text: %s" % state["raw"])
    if state["broken"]:
        problems.append("images not loaded: %s" % state["broken"])
    if state["external"]:
        problems.append("resources from outside the site: %s" % state["external"][:5])
    if console:
        problems.append("console errors: %s" % [e.get("message", "")[:200] for e in console[:5]])
    state["console"] = console
    return state, problems


def screenshot_full(driver, path, height, width=1280, max_height=16000):
    """A PNG of the whole page (up to ``max_height`` px) through the DevTools protocol."""
    h = int(min(height, max_height))
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": h, "deviceScaleFactor": 1, "mobile": False})
    try:
        shot = driver.execute_cdp_cmd("Page.captureScreenshot",
                                      {"format": "png", "captureBeyondViewport": True,
                                       "clip": {"x": 0, "y": 0, "width": width, "height": h,
                                                "scale": 1}})
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    Path(path).write_bytes(base64.b64decode(shot["data"]))


def check_site(site, screenshots=None, figure=None, pages=None, log=print):
    """Check the pages of a built site; return {page: problems}. Raise Unavailable."""
    site = Path(site)
    if not (site / "index.html").is_file():
        raise Unavailable("no built site in %s (run mkdocs build --strict)" % site)
    lectures = lecture_pages(site)
    if not lectures:
        raise Unavailable("the site in %s has no lecture pages" % site)
    browser, driver_path = find_browser()
    pages = list(pages) if pages else lectures + [p for p in EXTRA_PAGES if (site / p).is_file()]
    if screenshots:
        Path(screenshots).mkdir(parents=True, exist_ok=True)
    server, base = serve(site)
    driver = start_browser(browser, driver_path)
    results = {}
    try:
        for page in pages:
            t0 = time.time()
            state, problems = check_page(driver, base, page,
                                         math_expected=page not in NO_MATH)
            results[page] = problems
            log("%-34s %s  math %4d  images %3d  %.1fs%s" % (
                page, "ok  " if not problems else "FAIL", state["containers"], state["images"],
                time.time() - t0, "".join("\n    - " + p for p in problems)))
            if screenshots and page in lectures:
                screenshot_full(driver, Path(screenshots) / (Path(page).stem + ".png"),
                                state["height"])
            if figure and page == lectures[0]:
                driver.execute_script("window.scrollTo(0, 0)")
                Path(figure).parent.mkdir(parents=True, exist_ok=True)
                driver.save_screenshot(str(figure))
    finally:
        driver.quit()
        server.shutdown()
    return results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--site", default="site", help="the built site (default: site)")
    ap.add_argument("--screenshots", help="folder for a full-page screenshot of each lecture")
    ap.add_argument("--figure", help="save the top of lecture 01 here (docs/figures/lecture01.png)")
    ap.add_argument("pages", nargs="*", help="pages to check (default: lectures and a few more)")
    args = ap.parse_args(argv)
    try:
        results = check_site(args.site, args.screenshots, args.figure, args.pages or None)
    except Unavailable as exc:
        print("check_site: cannot run: %s" % exc, file=sys.stderr)
        return 2
    failed = [p for p, probs in results.items() if probs]
    print("%d pages checked, %d failed" % (len(results), len(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
