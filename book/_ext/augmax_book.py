"""Sphinx hooks of the book: serve every script from _static, and refuse notebooks that were not staged.

- Drops sphinx-thebe's scripts (its `THEBE_JS_URL` points at unpkg; the book has no live kernel).
- Points the widget manager's fallback for widget modules it does not bundle at the book itself,
  per page, instead of jsDelivr.
- Replaces `@REPO_URL@` in the book's pages by `repository.url` of _config.yml, the one place it is written.
- Warns (an error under `-W`) when a page would still load a script or stylesheet from another host,
  and when a notebook in the toc was not staged by book/build_book.py (no outputs, no provenance).
"""
from __future__ import annotations

import json
from pathlib import Path

from sphinx.util import logging

logger = logging.getLogger(__name__)

STAGED_KEY = "augmax_book"  # notebook metadata written by book/build_book.py


# The AMD modules embed-amd.js defines (its `define("...")` names, html-manager 1.0.15).
WIDGET_MODULES = ("base", "controls", "base7", "controls7", "html-manager")

# The widget manager typesets labels with MathJax 2's `MathJax.Hub.Queue` whenever `window.MathJax`
# exists; the book serves MathJax 3, which has no Hub. Map the call onto MathJax 3's typesetPromise.
MATHJAX_HUB_SHIM = (
    "(function () {"
    " function install() { var mj = window.MathJax; if (!mj || mj.Hub) return;"
    "  mj.Hub = {Queue: function (job) { var m = window.MathJax, el = job && job[2];"
    "   if (m && m.typesetPromise) { ((m.startup && m.startup.promise) || Promise.resolve())"
    "    .then(function () { return m.typesetPromise(el ? [el] : undefined); }); } }}; }"
    " install(); document.addEventListener('DOMContentLoaded', install);"
    "})(); ")


def _url(asset) -> str:
    return str(getattr(asset, "filename", asset) or "")


def _is_external(url: str) -> bool:
    return url.startswith(("http://", "https://", "//"))


def _filter_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if scripts is None:
        return
    kept = []
    for script in scripts:
        attrs = dict(getattr(script, "attributes", {}) or {})
        if "THEBE_JS_URL" in (attrs.get("body") or "") or _url(script).endswith("sphinx-thebe.js"):
            continue
        if "data-jupyter-widgets-cdn" in attrs:
            # Only used for widget modules embed-amd.js lacks (ours are all bundled in it): never a CDN.
            attrs["data-jupyter-widgets-cdn"] = context["pathto"]("_static/vendor/widget-modules/", 1)
            script = type(script)(script.filename, **attrs)
            # Each bundled module finds its fonts beside the URL requirejs gives it (relative to the page
            # by default): give every one a URL in _static/vendor/html-manager, where the fonts are.
            assets = context["pathto"]("_static/vendor/html-manager", 1)
            paths = ", ".join(f'"@jupyter-widgets/{m}": a + "/{m.rsplit("/", 1)[-1]}"' for m in WIDGET_MODULES)
            kept.append(type(script)(None, body=MATHJAX_HUB_SHIM + (
                f'(function () {{ var a = new URL("{assets}", document.baseURI).href; '
                f'window.__jupyter_widgets_assets_path__ = a + "/"; '
                f'require.config({{paths: {{{paths}, "@jupyter-widgets/html-manager/dist": a}}}}); }})();')))
        kept.append(script)
    context["script_files"] = kept
    for item in [*kept, *context.get("css_files", [])]:
        if _is_external(_url(item)):
            logger.warning(f"{pagename}: loads {_url(item)} from another host; serve it from book/_static "
                           "(see book/fetch_assets.py)", type="augmax_book", subtype="cdn")


def _check_staged(app):
    if app.builder.format != "html":
        return
    for path in sorted(Path(app.srcdir, "notebooks").glob("*.ipynb")):
        try:
            meta = json.loads(path.read_text(encoding="utf-8")).get("metadata", {})
        except (OSError, ValueError) as err:
            logger.warning(f"{path}: not a readable notebook ({err})", type="augmax_book", subtype="staged")
            continue
        if STAGED_KEY not in meta:
            logger.warning(f"{path.relative_to(app.srcdir)} was not executed and staged by book/build_book.py, "
                           "so its page would show no outputs and no provenance: build with `make book`",
                           type="augmax_book", subtype="staged")


def _repo_url(app) -> str:
    url = (app.config.html_theme_options or {}).get("repository_url", "")
    if not url:
        logger.warning("_config.yml has no repository.url", type="augmax_book", subtype="repo")
    return url.rstrip("/")


def _substitute_repo_url(app, docname, source):
    if "@REPO_URL@" in source[0]:
        source[0] = source[0].replace("@REPO_URL@", _repo_url(app))


def setup(app):
    app.connect("source-read", _substitute_repo_url)
    app.connect("html-page-context", _filter_scripts, priority=900)
    app.connect("env-before-read-docs", lambda app, env, docnames: _check_staged(app))
    return {"parallel_read_safe": True, "parallel_write_safe": True}
