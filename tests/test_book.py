"""The book: builds from the smoke-profile notebooks with warnings as errors, loads nothing from a CDN,
links only to pages that exist, gives every notebook page its Colab, download and provenance, and
publishes through a workflow that is valid against GitHub's schema."""
from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from _book import ROOT, built_book

CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
REPO_URL = CONFIG["repository"]["url"].rstrip("/")
REPO_PATH = urlsplit(REPO_URL).path  # /owner/name
BRANCH = CONFIG["repository"]["branch"]

# What a page loads by itself may come only from the book's own folder; the repository and Colab are
# also allowed there (the launch buttons' URLs). Links a reader clicks (<a href>) may go anywhere.
# URLs inside the vendored third-party bundles (_static/vendor) that no page requests, and why.
VENDORED_EXCEPTIONS = {
    # embed-amd.js: the fallback for widget modules it does not bundle. Every page overrides it with
    # data-jupyter-widgets-cdn (book/_ext/augmax_book.py); the browser test fails on any request that
    # leaves localhost.
    "https://cdn.jsdelivr.net/npm/": "widget-manager fallback, overridden",
    "https://fonts.googleapis.com/css?family=Roboto+Mono": "inside a CSS comment of embed-amd.js",
    # MathJax's speech-rule engine (loaded only when a reader turns on the accessibility explorer):
    # MathJax sets window.SREfeature.json to its own [sre] folder, which we serve.
    "https://cdn.jsdelivr.net/npm/speech-rule-engine@": "speech-rule-engine default, overridden",
    "https://cdn.jsdelivr.net/npm/sre-mathmaps-ie@": "Internet Explorer only",
    "https://cdn.jsdelivr.net/npm/wicked-good-xpath@1.3.0/dist/wgxpath.install.js": "browsers without XPath (IE)",
}
CDN_HOSTS = re.compile(r"(jsdelivr|unpkg|cdnjs|cloudflare|googleapis|gstatic|bootstrapcdn|code\.jquery\.com|"
                       r"cdn\.mathjax\.org|polyfill\.io|esm\.sh|skypack|plot\.ly|fontawesome\.com/releases|binder)",
                       re.I)
URL = re.compile(r"(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}[^\s\"'<>)\\]*")


@pytest.fixture(scope="module")
def book():
    return built_book()


def _html_files(html: Path):
    return sorted(html.rglob("*.html"))


class _Links(HTMLParser):
    """Every URL-valued attribute of a page, with its tag, the text of its scripts and styles, and its ids."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.refs, self.ids, self.code = [], set(), []
        self._in_code = False

    def handle_starttag(self, tag, attrs):
        self._in_code = tag in ("script", "style")
        for name, value in attrs:
            if name == "id" and value:
                self.ids.add(value)
            if name in ("href", "src", "data", "poster", "action") and value:
                self.refs.append((tag, name, value))
            if name == "srcset" and value:
                self.refs += [(tag, name, part.split()[0]) for part in value.split(",") if part.strip()]
            if name.startswith("data-") and value and value.startswith(("http://", "https://", "//")):
                self.refs.append((tag, name, value))
            if name == "style" and value:
                self.code.append(value)

    def handle_endtag(self, tag):
        self._in_code = False

    def handle_data(self, data):
        if self._in_code:
            self.code.append(data)


def _parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def _text(path: Path) -> str:
    """A page's text without tags (code blocks are split into highlighted spans)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", path.read_text(encoding="utf-8")))


def _host(url: str) -> str:
    return (urlsplit(url if "//" in url[:8] else "//" + url).hostname or "").lower()


def _allowed_anywhere(url: str) -> bool:
    host = _host(url)
    if host in ("localhost", "127.0.0.1"):
        return True
    if host == "colab.research.google.com":
        return urlsplit(url).path.startswith(f"/github{REPO_PATH}/blob/{BRANCH}/notebooks/")
    return host == "github.com" and (urlsplit(url).path.rstrip("/") + "/").startswith(REPO_PATH + "/")


def test_book_builds_with_warnings_as_errors(book):
    assert (book.html / "index.html").is_file()
    assert "build succeeded" in book.log and "WARNING" not in book.log, book.log[-3000:]


def test_book_references_no_cdn(book):
    """No built file makes a browser fetch anything from another host."""
    problems = []
    for path in _html_files(book.html):
        # What a browser fetches by itself: attributes other than <a href> (a reader's click), and
        # URLs inside scripts and styles. Text on the page (e.g. where to download a data set) is not.
        page = _parse(path)
        loaded = [v for tag, name, v in page.refs if not (tag == "a" and name == "href")]
        for code in page.code:
            if "application/vnd.jupyter.widget-state" in code[:200]:
                continue
            loaded += URL.findall(re.sub(r'xmlns(:\w+)?="[^"]*"', "", code))
        for url in set(loaded):
            if url.startswith(("http://", "https://", "//")) and not _allowed_anywhere(url):
                problems.append(f"{path.relative_to(book.html)}: {url}")
    for path in sorted([*book.html.rglob("*.js"), *book.html.rglob("*.css"), *book.html.rglob("*.mjs")]):
        allowed = VENDORED_EXCEPTIONS if "vendor" in path.relative_to(book.html).parts else {}
        for url in set(URL.findall(path.read_text(encoding="utf-8", errors="replace"))):
            if url.startswith("//"):
                continue  # protocol-relative matches in minified code are mostly comments and regexes
            if CDN_HOSTS.search(_host(url)) and url not in allowed:
                problems.append(f"{path.relative_to(book.html)}: {url}")
    assert not problems, "the built book references other hosts:\n" + "\n".join(sorted(problems)[:40])


def test_vendored_scripts_are_the_pinned_packages(book):
    vendor = book.html / "_static" / "vendor"
    lock = json.loads((ROOT / "book" / "package-lock.json").read_text())["packages"]
    for name, served in [("requirejs", "require.js"), ("@jupyter-widgets/html-manager", "embed-amd.js"),
                         ("mathjax", "mathjax/tex-mml-chtml.js")]:
        assert (vendor / served).stat().st_size > 10_000, served
        assert lock[f"node_modules/{name}"]["version"] in {"2.3.8", "1.0.15", "3.2.2"}
    assert "RequireJS 2.3.8" in (vendor / "require.js").read_text()[:400]


def test_internal_links_resolve(book):
    """Every relative link, image and script points at a built file, and every #anchor exists."""
    ids: dict[Path, set] = {}
    broken = []
    for path in _html_files(book.html):
        if path.parent.name == "_static":
            continue  # the themes' Jinja macro files, not pages
        page = _parse(path)
        ids.setdefault(path, page.ids)
        for tag, attr, ref in page.refs:
            parts = urlsplit(ref)
            if parts.scheme or ref.startswith(("//", "mailto:", "javascript:", "data:")):
                continue
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            if not target.exists():
                broken.append(f"{path.relative_to(book.html)}: <{tag} {attr}> {ref}")
                continue
            if parts.fragment and target.suffix == ".html" and tag == "a":
                if target not in ids:
                    ids[target] = _parse(target).ids
                if unquote(parts.fragment) not in ids[target]:
                    broken.append(f"{path.relative_to(book.html)}: {ref} (no id {parts.fragment!r})")
    assert not broken, "broken internal links:\n" + "\n".join(broken[:40])


def test_every_notebook_page_has_colab_download_and_provenance(book):
    for name in book.notebooks:
        page = book.html / "notebooks" / f"{name}.html"
        html = page.read_text(encoding="utf-8")
        colab = f"https://colab.research.google.com/github{REPO_PATH}/blob/{BRANCH}/notebooks/{name}.ipynb"
        assert colab in html, f"{page.name}: no Colab launch button to {colab}"
        download = f"../_sources/notebooks/{name}.ipynb"
        assert f'href="{download}"' in html, f"{page.name}: no download button for the notebook"
        source = json.loads((page.parent / download).read_text())
        assert any(c.get("outputs") for c in source["cells"] if c["cell_type"] == "code"), \
            f"{name}: the download is not the executed notebook"
        box = re.search(r'<div class="[^"]*augmax-provenance[^"]*">(.*?)</div>', html, re.S)
        assert box, f"{page.name}: no box saying which profile and data its outputs came from"
        assert "smoke" in box.group(1), f"{page.name}: the provenance box does not name the smoke profile"
        assert "injected-parameters" not in html or "remove-cell" in json.dumps(source), page.name


def test_pages_the_issue_asks_for(book):
    html = book.html
    bibliography = _text(html / "book" / "bibliography.html").lower()
    for words in ["AugMax: Adversarial Composition", "AugMix: A Simple Data Processing", "IBN-Net",
                  "Attacks Which Do Not Kill Training", "Towards Deep Learning Models Resistant",
                  "Benchmarking Neural Network Robustness", "Do ImageNet Classifiers Generalize",
                  "RobustBench"]:
        assert words.lower() in bibliography, f"bibliography lacks {words!r}"
    # Every entry links its paper: a URL (or a DOI) in the .bib file, and the link on the page.
    entries = re.findall(r"@\w+\{([^,]+),(.*?)\n\}", (ROOT / "book" / "references.bib").read_text(), re.S)
    assert entries and all(re.search(r"^\s*(url|doi)\s*=", body, re.M) for _, body in entries), \
        [key for key, body in entries if not re.search(r"^\s*(url|doi)\s*=", body, re.M)]
    assert "https://arxiv.org/abs/2110.13771" in (html / "book" / "bibliography.html").read_text(encoding="utf-8")
    api = (html / "book" / "api.html").read_text(encoding="utf-8")
    for obj in ["augmax_lib.augmix.augmix", "augmax_lib.norm.DuBIN"]:
        assert f'id="{obj}"' in api, f"API reference lacks {obj}"
    for page in ["book/intro.html", "book/paper.html", "book/running.html"]:
        assert (html / page).is_file(), page


def test_repository_url_is_written_once(book):
    """Pages get the URL from _config.yml; no hand-written copy of it in the book's sources."""
    sources = [p for p in (ROOT / "book").rglob("*.md")]
    assert not [p for p in sources if REPO_URL in p.read_text()], "write @REPO_URL@, not the URL"
    running = _text(book.html / "book" / "running.html")
    assert f"git clone {REPO_URL}" in running and "@REPO_URL@" not in running


def test_workflow_is_valid_and_publishes_the_book():
    workflow = ROOT / ".github" / "workflows" / "book.yml"
    proc = subprocess.run([str(Path(sys.executable).with_name("check-jsonschema")), "--builtin-schema",
                           "vendor.github-workflows", str(workflow)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    spec = yaml.safe_load(workflow.read_text())
    triggers = spec[True] if True in spec else spec["on"]  # YAML 1.1 reads `on` as a boolean
    assert triggers["push"]["branches"] == ["main"] and "pull_request" in triggers
    steps = spec["jobs"]["build"]["steps"]
    uses = [s.get("uses", "").split("@")[0] for s in steps]
    assert "actions/upload-pages-artifact" in uses and "actions/upload-artifact" in uses
    assert any("make book" in s.get("run", "") for s in steps)
    assert spec["jobs"]["build"]["env"]["PROFILE"] == "quick"
    deploy = spec["jobs"]["deploy"]
    assert deploy["steps"][-1]["uses"].startswith("actions/deploy-pages@")
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}


def test_fetch_assets_refuses_a_tarball_that_differs_from_the_lock(monkeypatch, tmp_path):
    sys.path.insert(0, str(ROOT / "book"))
    import fetch_assets

    good = io.BytesIO()
    with tarfile.open(fileobj=good, mode="w:gz") as tar:
        data = b'{"name": "x", "version": "1.0.0"}'
        info = tarfile.TarInfo("package/package.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    payload = good.getvalue()
    pinned = "sha512-" + base64.b64encode(hashlib.sha512(payload).digest()).decode()

    class Response(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(fetch_assets.urllib.request, "urlopen", lambda url, timeout: Response(payload))
    assert fetch_assets._download("x", "1.0.0", pinned) == payload
    with pytest.raises(SystemExit, match="pins"):
        fetch_assets._download("x", "1.0.0", "sha512-" + base64.b64encode(b"0" * 64).decode())
    monkeypatch.setattr(fetch_assets, "MODULES", tmp_path)
    fetch_assets._unpack("@scope/x", payload)
    assert json.loads((tmp_path / "@scope" / "x" / "package.json").read_text())["version"] == "1.0.0"
