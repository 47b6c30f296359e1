"""Build hooks of the documentation site (``hooks:`` in mkdocs.yml; see docs/site.md).

What the stock plugins do not do, in one place:

- **Lectures.** ``lectures/*.ipynb`` and ``lectures/README.md`` join the site as
  ``lectures/...`` without a copy in git (``on_files``, before mkdocs-jupyter wraps the
  notebooks); the notebooks are executed by mkdocs-jupyter with a kernel pinned to the Python
  that runs the build (``on_config``: a temporary kernelspec first on ``JUPYTER_PATH``).
- **Math offline.** MathJax 3 is copied from the ``django-static-mathjax`` wheel (plain JS,
  fonts; no Django needed) into ``javascripts/mathjax/``; the MathJax 2 loader and the mermaid
  loader that nbconvert's template puts into every notebook (CDN URLs) are removed, and
  ``on_post_build`` fails the build if any page still names a CDN.
- **Links.** Relative links written for GitHub (``../lectures/x.ipynb`` from docs/,
  ``../docs/x.md`` from a notebook, ``../benchmarks/bench_rnn.py``) are mapped to the page of
  the site, or to the file on the repository when the site has no page for it.
- **Equation table.** In docs/equations.md the backticked names of the function column link to
  their API entries, and the tests of the test column to the generated test index (``tests.md``,
  one anchor per test).
- **Docstrings.** :class:`SphinxRoles` is a griffe extension (listed under mkdocstrings'
  ``extensions``) that turns the Sphinx roles of the docstrings (``:func:`~manualgrad.rnn.forward```)
  into mkdocstrings cross-references, or into plain code when the target has no API entry.
"""
from __future__ import annotations

import ast
import json
import logging
import os
import posixpath
import re
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
LECTURES = ROOT / "lectures"
TESTS = ROOT / "tests"
API_DIR = DOCS / "api"
MATHJAX_DEST = "javascripts/mathjax"
TESTS_PAGE = "tests.md"
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
LOCAL_BADGE = "figures/colab-badge.svg"
# Hosts that serve libraries to pages; none may appear in the built HTML (offline site).
CDN_HOSTS = ("cdnjs.cloudflare.com", "cdn.jsdelivr.net", "unpkg.com", "fonts.googleapis.com",
             "fonts.gstatic.com", "ajax.googleapis.com", "code.jquery.com", "polyfill.io",
             "cdn.mathjax.org", "cdn.plot.ly", "esm.sh")

log = logging.getLogger("mkdocs.hooks.manualgrad")


def repository_url():
    try:
        import manualgrad
        url = getattr(manualgrad, "REPOSITORY_URL", None)
    except Exception:  # the site still builds while the package is broken mid-edit
        url = None
    return (url or "https://github.com/manualgrad/manualgrad").rstrip("/")


def _repo_link(rel, is_dir=False):
    return "%s/%s/main/%s" % (repository_url(), "tree" if is_dir else "blob", rel)


# --------------------------------------------------------------------------------------------
# Kernel: the build's own Python
# --------------------------------------------------------------------------------------------

KERNEL_NAME = "manualgrad-site"


def on_config(config):
    kdir = Path(tempfile.mkdtemp(prefix="manualgrad-site-kernel-"))
    spec = kdir / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python (site build)", "language": "python",
        "env": {"MPLBACKEND": "Agg", "PYTHONPATH": os.pathsep.join(
            [str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])},
    }))
    os.environ["JUPYTER_PATH"] = os.pathsep.join(
        [str(kdir)] + [p for p in [os.environ.get("JUPYTER_PATH")] if p])
    os.environ.setdefault("MPLBACKEND", "Agg")
    jupyter = config.plugins.get("mkdocs-jupyter")
    if jupyter is not None:
        jupyter.config["kernel_name"] = KERNEL_NAME
    return config


# --------------------------------------------------------------------------------------------
# Files: lectures, MathJax, the test index
# --------------------------------------------------------------------------------------------

def _mathjax_root():
    import mathjax  # the django-static-mathjax wheel; only its static files are used
    root = Path(mathjax.__file__).resolve().parent / "static" / "mathjax" / "es5"
    if not (root / "tex-chtml-full.js").is_file():
        raise RuntimeError("django-static-mathjax has no es5/tex-chtml-full.js in %s" % root)
    return root


MATHJAX_PARTS = ("tex-chtml-full.js", "output/chtml/fonts/woff-v2", "input/tex/extensions",
                 "a11y", "ui", "adaptors")


@event_priority(100)  # before mkdocs-jupyter turns .ipynb files into pages
def on_files(files, config):
    for path in sorted(LECTURES.glob("*.ipynb")) + [LECTURES / "README.md"]:
        if path.is_file() and files.get_file_from_path("lectures/" + path.name) is None:
            # a plain File rooted at the checkout (not File.generated): mkdocs-jupyter's
            # wrapper reads src_dir to find the notebook
            files.append(File("lectures/" + path.name, src_dir=str(ROOT),
                              dest_dir=config["site_dir"],
                              use_directory_urls=config["use_directory_urls"]))
    root = _mathjax_root()
    for part in MATHJAX_PARTS:
        base = root / part
        for src in sorted([base] if base.is_file() else base.rglob("*")):
            if src.is_file():
                uri = MATHJAX_DEST + "/" + src.relative_to(root).as_posix()
                files.append(File.generated(config, uri, abs_src_path=str(src)))
    files.append(File.generated(config, TESTS_PAGE, content=tests_page()))
    return files


def _test_names(path):
    """(name, first docstring line) of every test function and class of a test file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    doc = (ast.get_docstring(tree) or "").strip().split("\n\n")[0].replace("\n", " ")
    out, seen = [], set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and \
                node.name.lower().startswith("test") and node.name not in seen:
            seen.add(node.name)
            first = (ast.get_docstring(node) or "").strip().split("\n")[0]
            out.append((node.lineno, node.name, first))
    return doc, [(name, first) for _, name, first in sorted(out)]


def test_anchor(rel, name=None):
    """Anchor of a test file (``tests/ode/test_node.py``) or of a test in it on ``tests.md``."""
    base = re.sub(r"[^\w]+", "-", rel[:-3] if rel.endswith(".py") else rel).strip("-")
    return base + ("--" + name if name else "")


def test_files():
    return sorted(p.relative_to(ROOT).as_posix() for p in TESTS.rglob("test_*.py"))


def tests_page():
    lines = ["# Test index", "",
             "Every test file of `tests/` and the tests in it, with the first line of each test's "
             "docstring. The [equation table](equations.md) links here; each file links to its "
             "source on the repository. Generated at build time by `scripts/mkdocs_hooks.py`.", ""]
    for rel in test_files():
        doc, names = _test_names(ROOT / rel)
        lines += ['## `%s` {#%s}' % (rel, test_anchor(rel)), "",
                  "[source](%s)%s" % (_repo_link(rel), (": " + doc) if doc else ""), ""]
        for name, first in names:
            lines.append('- <span id="%s"></span>`%s`%s' % (
                test_anchor(rel, name), name, (": " + _md_escape(first)) if first else ""))
        lines.append("")
    return "\n".join(lines)


def _md_escape(text):
    return _outside_code(text.replace("<", "&lt;"),
                         lambda t: _escape_brackets(t).replace("*", "\\*").replace("_", "\\_"))


def on_nav(nav, config, files):
    """Pages of docs/ that mkdocs.yml's nav does not list go under "Other pages" (never lost)."""
    from mkdocs.structure.nav import Section
    listed = {page.file.src_uri for page in nav.pages}
    extra = [f.page for f in files.documentation_pages()
             if f.src_uri not in listed and getattr(f, "page", None) is not None]
    if extra:
        log.info("pages not in mkdocs.yml's nav, listed under 'Other pages': %s",
                 ", ".join(p.file.src_uri for p in extra))
        section = Section("Other pages", extra)
        for page in extra:
            page.parent = section
        nav.items.append(section)
        nav.pages.extend(extra)
    return nav


# --------------------------------------------------------------------------------------------
# Links written for GitHub -> links of the site
# --------------------------------------------------------------------------------------------

def _real_source(file):
    """The file in the checkout a page comes from (docs/x.md, lectures/y.ipynb)."""
    return Path(file.abs_src_path) if file.abs_src_path else DOCS / file.src_uri


def _site_uri(path):
    """The site's src_uri of a checkout file, or None (docs/a/b.md -> a/b.md, lectures/x)."""
    try:
        return path.relative_to(DOCS).as_posix()
    except ValueError:
        pass
    try:
        return "lectures/" + path.relative_to(LECTURES).as_posix()
    except ValueError:
        return None


def _map_target(target, page_file, files, html):
    """A relative link target of ``page_file`` -> the link for the site (None: leave it)."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or target.startswith(("#", "/", "mailto:")) or not parts.path:
        return None
    real = (_real_source(page_file).parent / parts.path).resolve()
    frag = ("#" + parts.fragment) if parts.fragment else ""
    uri = _site_uri(real)
    dest = files.get_file_from_path(uri) if uri else None
    if dest is not None:
        if html:
            return dest.url_relative_to(page_file) + frag
        here = posixpath.dirname(page_file.src_uri)
        rel = posixpath.relpath(uri, here or ".")
        return None if rel == parts.path else rel + frag
    try:
        rel_repo = real.relative_to(ROOT).as_posix()
    except ValueError:
        return None
    if real.exists():
        return _repo_link(rel_repo, real.is_dir()) + frag
    return None


MD_LINK = re.compile(r"(\]\()([^)\s]+)(\))")


def _rewrite_md_links(markdown, page_file, files):
    def repl(m):
        new = _map_target(m.group(2), page_file, files, html=False)
        return m.group(1) + (new or m.group(2)) + m.group(3)
    return MD_LINK.sub(repl, markdown.replace(COLAB_BADGE, _badge_path(page_file)))


def _badge_path(page_file):
    return posixpath.relpath(LOCAL_BADGE, posixpath.dirname(page_file.src_uri) or ".")


# --------------------------------------------------------------------------------------------
# The equation table
# --------------------------------------------------------------------------------------------

def api_modules():
    """Modules that have an API page (``::: manualgrad.x`` lines of docs/api/*.md).

    Maps each module to the names of its members shown there (None: all public members), as
    set by an ``options: members: [...]`` (or ``false``) block under the ``:::`` line.
    """
    mods = {}
    for page in sorted(API_DIR.glob("*.md")):
        text = page.read_text(encoding="utf-8")
        for m in re.finditer(r"^:::\s*(\S+)\n((?:[ \t]+\S.*\n?)*)", text, re.M):
            mm = re.search(r"^\s+members:\s*(.+)$", m.group(2), re.M)
            shown = None
            if mm:
                value = mm.group(1).strip()
                shown = set() if value == "false" else set(re.findall(r"\w+", value))
            mods[m.group(1)] = shown
    return mods


_LOADED = {}


def _package():
    """The package's griffe tree: the one mkdocstrings loads when the extension runs, else ours."""
    if "pkg" not in _LOADED:
        import griffe
        _LOADED["pkg"] = griffe.load("manualgrad", search_paths=[str(ROOT)])
    return _LOADED["pkg"]


def _lookup(path):
    """The griffe object at a dotted path under manualgrad, aliases followed, or None."""
    pkg = _package()
    if path == "manualgrad":
        return pkg
    if not path.startswith("manualgrad."):
        return None
    try:
        obj = pkg[path[len("manualgrad."):]]
        if getattr(obj, "is_alias", False):
            obj = obj.final_target
        return obj
    except Exception:
        return None


def documented(path, modules=None):
    """The canonical path of ``path`` when it has an entry on an API page, else None.

    An entry exists when the object's module is listed on an API page and no part of its
    path is private (mkdocstrings' default filter ``!^_[^_]``).
    """
    obj = _lookup(path)
    if obj is None:
        return None
    canonical = obj.path
    modules = api_modules() if modules is None else modules
    mod = obj if obj.kind.value == "module" else obj.module
    if mod.path not in modules:
        return None
    shown = modules[mod.path]
    if shown is not None and obj is not mod and canonical[len(mod.path) + 1:].split(".")[0] not in shown:
        return None
    if any(p.startswith("_") and not (p.startswith("__") and p.endswith("__"))
           for p in canonical.split(".")):
        return None
    return canonical


def resolve(name, context=None, modules=None):
    """A name from a docs page or a docstring -> canonical documented path, or None."""
    name = re.sub(r"\[.*\]$", "", re.sub(r"\(.*\)$", "", name.strip()))
    if not re.fullmatch(r"[A-Za-z_][\w.]*", name):
        return None
    candidates = []
    if name.startswith("manualgrad"):
        candidates.append(name)
    scope = context
    while scope:
        candidates.append(scope + "." + name)
        scope = scope.rpartition(".")[0]
    candidates.append("manualgrad." + name)
    for cand in candidates:
        found = documented(cand, modules)
        if found:
            return found
    if "." in name:  # "Activation.grad2": a unique documented path ending so
        ends = [p for p in _documented_paths(modules) if p.endswith("." + name)]
        if len(ends) == 1:
            return ends[0]
    return None


def _documented_paths(modules):
    key = tuple(sorted((k, tuple(sorted(v)) if v is not None else None)
                       for k, v in modules.items()))
    if _LOADED.get("paths_key") != key:
        paths, seen = set(), set()

        def walk(obj):
            if id(obj) in seen or getattr(obj, "is_alias", False):
                return
            seen.add(id(obj))
            if documented(obj.path, modules) == obj.path:
                paths.add(obj.path)
            for member in list(obj.members.values()):
                walk(member)
        walk(_package())
        _LOADED["paths"], _LOADED["paths_key"] = paths, key
    return _LOADED["paths"]


def _scope_of(path):
    """Where the next bare name of a table cell is looked up: the module, or the class."""
    obj = _lookup(path)
    if obj is None:
        return None
    if obj.kind.value in ("module", "class"):
        return obj.path
    return obj.parent.path


CODE = re.compile(r"`([^`\n]+)`")
TEST_REF = re.compile(r"^(?:tests/)?((?:\w+/)*test_\w+\.py)?(?:::(\w+))?$")


def _link_function_cell(cell, modules):
    context = None

    def repl(m):
        nonlocal context
        text = m.group(1)
        if "/" in text and (ROOT / text).exists():
            return "[`%s`](%s)" % (text, _repo_link(text, (ROOT / text).is_dir()))
        target = resolve(text, context, modules)
        if target is None:
            return m.group(0)
        context = _scope_of(target)
        return "[`%s`][%s]" % (text, target)
    return CODE.sub(repl, cell)


def _link_test_cell(cell, page_file):
    current = None
    tests_uri = posixpath.relpath(TESTS_PAGE, posixpath.dirname(page_file.src_uri) or ".")

    def repl(m):
        nonlocal current
        mt = TEST_REF.match(m.group(1))
        if not mt or not (mt.group(1) or mt.group(2)):
            return m.group(0)
        if mt.group(1):
            current = "tests/" + mt.group(1)
        if current is None or not (ROOT / current).is_file():
            return m.group(0)
        if mt.group(2) and mt.group(2) not in dict(_test_names(ROOT / current)[1]):
            return m.group(0)
        return "[`%s`](%s#%s)" % (m.group(1), tests_uri, test_anchor(current, mt.group(2)))
    return CODE.sub(repl, cell)


def _link_equation_table(markdown, page_file):
    modules = api_modules()
    out = []
    header = None
    for line in markdown.split("\n"):
        if line.startswith("|") and not set(line) <= set("|-: "):
            cells = line.split("|")
            names = [c.strip().lower() for c in cells]
            if "function" in names and "tests" in names:
                header = (names.index("function"), names.index("tests"))
            elif header and len(cells) > max(header):
                fi, ti = header
                cells[fi] = _link_function_cell(cells[fi], modules)
                cells[ti] = _link_test_cell(cells[ti], page_file)
                line = "|".join(cells)
        elif not line.startswith("|"):
            header = None if line.strip() else header
        out.append(line)
    return "\n".join(out)


def on_page_markdown(markdown, page, config, files):
    markdown = _rewrite_md_links(markdown, page.file, files)
    if page.file.src_uri == "equations.md":
        markdown = _link_equation_table(markdown, page.file)
    return markdown


# --------------------------------------------------------------------------------------------
# Notebook pages: links, badge, no CDN loaders
# --------------------------------------------------------------------------------------------

NB_MATHJAX2 = re.compile(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", re.S)
NB_MERMAID = re.compile(r'<script type="module">\s*document\.addEventListener\("DOMContentLoaded",'
                        r'[^<]*?mermaid.*?</script>', re.S)
HTML_REF = re.compile(r'((?:href|src)=")([^"]+)(")')


def on_page_content(html, page, config, files):
    if not page.file.src_uri.endswith(".ipynb"):
        return html
    html = NB_MATHJAX2.sub("", html)
    html = NB_MERMAID.sub("", html)
    html = html.replace(COLAB_BADGE, _badge_path(page.file))

    def repl(m):
        target = m.group(2)
        if target.startswith("data:"):
            return m.group(0)
        new = _map_target(target, page.file, files, html=True)
        return m.group(1) + (new or target) + m.group(3)
    return HTML_REF.sub(repl, html)


def on_post_build(config):
    site = Path(config["site_dir"])
    bad = []
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8", errors="replace")
        for host in CDN_HOSTS:
            if host in text:
                bad.append("%s: %s" % (page.relative_to(site), host))
    for item in bad:
        log.warning("CDN URL in the built site (it must work offline): %s", item)


# --------------------------------------------------------------------------------------------
# Docstrings: Sphinx roles -> mkdocstrings cross-references (griffe extension)
# --------------------------------------------------------------------------------------------

ROLE = re.compile(r":(?:py:)?(func|data|class|mod|meth|attr|exc|obj|const|term|ref):`([^`]+)`")

try:
    import griffe as _griffe
    _Extension = _griffe.Extension
except Exception:  # pragma: no cover - griffe is installed with mkdocstrings[python]
    _Extension = object


def convert_roles(text, context, modules):
    """Sphinx roles in ``text`` -> ``[`x`][manualgrad.path]`` or plain code; RST ``::`` -> ``:``."""
    def repl(m):
        role, target = m.group(1), m.group(2).strip()
        label = None
        tm = re.fullmatch(r"(.*?)\s*<([^>]+)>", target)
        if tm:
            label, target = tm.group(1), tm.group(2)
        short = target.startswith("~")
        target = target.lstrip("~!.")
        shown = label or (target.rsplit(".", 1)[-1] if short else target)
        if role in ("func", "meth") and not shown.endswith(")") and not label:
            shown += "()"
        found = resolve(target, context, modules) if role not in ("term", "ref") else None
        return "[`%s`][%s]" % (shown, found) if found else "`%s`" % shown
    text = _outside_code(text, _escape_brackets)
    text = ROLE.sub(repl, text)
    # RST literal-block markers: "text::" ends a paragraph with ":", a lone "::" goes.
    text = re.sub(r"(?m)^[ \t]*::[ \t]*$", "", text)
    text = re.sub(r"(?m)(\S)::[ \t]*$", r"\1:", text)
    return numpy_sections(text)


CODE_SPAN = re.compile(r"(``.+?``|`[^`\n]+`)")


def _escape_brackets(text):
    """Brackets in running text are maths or usage (``x[k][-1]``, ``[dF/dP](P + e v)``,
    ``[--quick]``), never links: escape them so that neither Markdown nor autorefs reads a link."""
    return text.replace("[", "\\[").replace("]", "\\]")


def _outside_code(text, fn):
    """Apply ``fn`` to the parts of a docstring that are not code (spans, indented blocks)."""
    out, in_block, prev_blank = [], False, True
    for line in text.split("\n"):
        indented = line.startswith(("    ", "\t"))
        in_block = indented and (in_block or prev_blank)
        prev_blank = not line.strip()
        if in_block or (prev_blank and not line):
            out.append(line)
        else:
            parts = CODE_SPAN.split(line)
            out.append("".join(p if i % 2 else fn(p) for i, p in enumerate(parts)))
    return "\n".join(out)


SECTION = re.compile(r"^(Parameters|Returns|Yields|Raises|Attributes|Other Parameters|"
                     r"Notes|Examples|See Also|Warns|References)\n-{3,}[ \t]*$", re.M)
ENTRY = re.compile(r"^\w[\w, *]*\s:\s|^\w[\w, *]*$")


def numpy_sections(text):
    """NumPy-style sections (``Parameters`` over a dashed line) -> a bold title and a list."""
    lines = text.split("\n")
    out, i = [], 0
    while i < len(lines):
        if i + 1 < len(lines) and SECTION.match(lines[i] + "\n" + lines[i + 1]):
            out += ["**%s**" % lines[i], ""]
            i += 2
            while i < len(lines):
                line = lines[i]
                if not line.strip():
                    nxt = lines[i + 1] if i + 1 < len(lines) else ""
                    if not nxt.strip() or nxt[0] in " \t" or not ENTRY.match(nxt) or \
                            (i + 2 < len(lines) and SECTION.match(nxt + "\n" + lines[i + 2])):
                        break
                    i += 1
                    continue
                if line[0] not in " \t":
                    out.append("- " + line)
                else:
                    out.append("  " + line.strip())
                i += 1
        else:
            out.append(lines[i])
            i += 1
    return "\n".join(out)


class SphinxRoles(_Extension):
    """Griffe extension: rewrite the Sphinx roles of every docstring once the package is loaded."""

    def on_package(self, *, pkg, **kwargs):
        if pkg.name != "manualgrad":
            return
        _LOADED["pkg"] = pkg
        modules = api_modules()
        seen = set()

        def walk(obj):
            if id(obj) in seen or getattr(obj, "is_alias", False):
                return
            seen.add(id(obj))
            if obj.docstring is not None:
                ctx = obj.path if obj.kind.value in ("module", "class") else obj.parent.path
                obj.docstring.value = convert_roles(obj.docstring.value, ctx, modules)
            for member in list(obj.members.values()):
                walk(member)
        walk(pkg)

    on_package_loaded = on_package  # the name in griffe < 1.0
