"""The built book in a real browser (Debian's headless Chromium driven by Playwright), with every request
outside localhost blocked: pages load without errors, images are non-empty, and the saved widgets render
and respond to a slider with no kernel. Screenshots go to the build folder (light and dark theme)."""
from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from _book import built_book

CHROMIUM = os.environ.get("AUGMAX_CHROMIUM", "/usr/bin/chromium")
INSTALL = ("install it with `sudo apt-get install -y chromium` (Debian/Ubuntu; .ci/run does this) and "
           "`pip install playwright==1.65.2` (no `playwright install` needed)")


def _chromium_or_skip():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip(f"Playwright is not installed: {INSTALL}")
    path = CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium")
    if not path:
        pytest.skip(f"no Chromium at {CHROMIUM}: {INSTALL}")
    return sync_playwright, path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


# Every request that is not to 127.0.0.1 goes to a proxy that is not there, so it fails inside the
# browser (no interception round trips through Python); the test records and fails on each one.
DEAD_PROXY = {"server": "http://127.0.0.1:9", "bypass": "127.0.0.1,localhost"}


@pytest.fixture(scope="module")
def site():
    """The built book served on 127.0.0.1 (a random free port) for the duration of the module."""
    sync_playwright, chromium = _chromium_or_skip()
    book = built_book()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(_QuietHandler, directory=str(book.html)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    shots = book.html.parents[1] / "screenshots"  # _build/test-book/screenshots
    shots.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, proxy=DEAD_PROXY,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                           "--disable-background-networking", "--disable-extensions"])
        tabs = {}
        try:
            yield {"tab": lambda scheme="light": tabs.setdefault(scheme, _Tab(browser, base, scheme)),
                   "base": base, "book": book, "shots": shots}
        finally:
            for tab in tabs.values():
                tab.context.close()
            browser.close()
            server.shutdown()


class _Tab:
    """One browser tab (light or dark system theme) that records errors and requests leaving localhost."""

    def __init__(self, browser, base, scheme):
        self.base = base
        self.blocked, self.errors = [], []
        self.context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme=scheme,
                                           service_workers="block")
        self.page = self.context.new_page()
        self.page.on("console", self._console)
        self.page.on("response", lambda r: r.status >= 400 and self.errors.append(f"HTTP {r.status}: {r.url}"))
        self.page.on("pageerror", lambda e: self.errors.append(f"exception: {e}"))
        self.page.on("request", self._request)

    def _console(self, message):
        # "Failed to load resource" repeats a failed response without its URL: the response event has it.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(f"console: {message.text}")

    def _request(self, request):
        url = request.url
        if not (url.startswith(self.base) or urlsplit(url).scheme in ("data", "blob", "about")):
            self.blocked.append(url)

    def open(self, path):
        self.blocked.clear()
        self.errors.clear()
        self.page.goto(self.base + path, wait_until="load")
        self.page.wait_for_load_state("networkidle")
        return self.page


def _pages(html: Path) -> list[str]:
    return sorted(str(p.relative_to(html)) for p in html.rglob("*.html")
                  if p.parent.name != "_static" and p.name not in ("genindex.html", "search.html"))


def _broken_images(page) -> list[str]:
    page.evaluate("() => Promise.all([...document.images].map(i => i.decode().catch(() => null)))")
    return page.evaluate("""() => [...document.images]
        .filter(i => i.offsetParent !== null || i.closest('.widget-stack, .jupyter-widgets'))
        .filter(i => !(i.complete && i.naturalWidth > 0 && i.naturalHeight > 0))
        .map(i => i.currentSrc.slice(0, 120) || i.outerHTML.slice(0, 120))""")


def test_every_page_loads_offline_without_errors(site):
    html = site["book"].html
    problems = []
    tab = site["tab"]()
    for path in _pages(html):
        page = tab.open(path)
        problems += [f"{path}: {e}" for e in tab.errors]
        problems += [f"{path}: request to another host: {u}" for u in tab.blocked]
        problems += [f"{path}: empty image {s}" for s in _broken_images(page)]
    assert not problems, "\n".join(problems[:40])


# Saved widgets a reader can move (progress bars from tqdm are saved as widgets too, but do nothing).
CONTROLS = {"IntSliderModel", "FloatSliderModel", "SelectionSliderModel", "DropdownModel",
            "ToggleButtonsModel", "SelectModel", "RadioButtonsModel"}


def _widget_pages(html: Path) -> list[str]:
    """Notebook pages whose saved widget state has a control (slider, dropdown, ...)."""
    pages = []
    for p in _pages(html):
        text = (html / p).read_text(encoding="utf-8")
        if p.startswith("notebooks/") and CONTROLS & set(re.findall(r'"model_name":\s*"(\w+)"', text)):
            pages.append(p)
    return pages


def _visible_widget_images(page) -> list[str]:
    return page.evaluate("""() => [...document.querySelectorAll('.jupyter-widgets img, .widget-image')]
        .filter(i => i.offsetParent !== null && i.getBoundingClientRect().width > 0)
        .map(i => i.src.slice(-200))""")


def _move_first_control(page) -> bool:
    """Move the first slider (arrow keys on its handle) or pick another option of the first dropdown."""
    handle = page.locator(".jupyter-widgets .noUi-handle, .jupyter-widgets .ui-slider-handle").first
    if handle.count():
        handle.focus()
        page.keyboard.press("ArrowRight")
        return True
    select = page.locator(".jupyter-widgets select").first
    if select.count():
        values = select.evaluate("s => [...s.options].map(o => o.value)")
        if len(values) > 1:
            select.select_option(values[1])
            return True
    return False


def test_widgets_render_from_saved_state_and_respond_without_a_kernel(site):
    html = site["book"].html
    pages = _widget_pages(html)
    if not pages:
        pytest.fail("no notebook page has saved widget state: the course notebooks must save their widgets")
    problems = []
    tab = site["tab"]()
    for path in pages:
        page = tab.open(path)
        try:
            page.wait_for_selector(".jupyter-widgets .widget-slider, .jupyter-widgets select, "
                                   ".jupyter-widgets .widget-image", timeout=15_000)
        except Exception:
            problems.append(f"{path}: no widget rendered from the saved state ({tab.errors[:3]})")
            continue
        before = _visible_widget_images(page)
        if not before:
            problems.append(f"{path}: the widgets show no image")
            continue
        if not _move_first_control(page):
            problems.append(f"{path}: no slider or dropdown to move")
            continue
        page.wait_for_timeout(300)
        after = _visible_widget_images(page)
        if after == before:
            problems.append(f"{path}: moving the first control did not change the image shown")
        problems += [f"{path}: {e}" for e in tab.errors]
        problems += [f"{path}: request to another host: {u}" for u in tab.blocked]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_screenshots_of_the_landing_page_and_a_widget_page(site, scheme):
    html, shots = site["book"].html, site["shots"]
    landing = "book/intro.html"
    widget_pages = _widget_pages(html)
    targets = [("landing", landing)] + ([("widgets", widget_pages[0])] if widget_pages else [])
    tab = site["tab"](scheme)
    for name, path in targets:
        page = tab.open(path)
        theme = page.evaluate("() => document.documentElement.dataset.theme")
        assert theme == scheme, f"{path}: the page shows the {theme} theme when the system asks for {scheme}"
        if name == "widgets":
            page.wait_for_selector(".jupyter-widgets .widget-image, .jupyter-widgets img", timeout=15_000)
            page.locator(".jupyter-widgets").first.scroll_into_view_if_needed()
        out = shots / f"{name}-{scheme}.png"
        page.screenshot(path=str(out))
        assert out.stat().st_size > 10_000, out
        if scheme == "dark":
            # Text in the content area must stay light on the dark background.
            colour = page.evaluate("""() => getComputedStyle(document.querySelector('main p, article p')).color""")
            rgb = [int(v) for v in colour[colour.index("(") + 1:colour.index(")")].split(",")[:3]]
            assert sum(rgb) / 3 > 150, f"{path}: body text {colour} is too dark for the dark theme"


# ------------------------------------------------------------------- "AugMax by hand": the models in the page
LIVE_PAGE = "notebooks/03_augmax.html"


def _live_ready(page):
    page.wait_for_function("() => { const e = document.querySelector('.augmax-live'); return e && e.dataset.ready; }",
                           timeout=180_000)
    state = page.eval_on_selector(".augmax-live", "e => e.dataset.ready")
    assert state == "1", page.inner_text(".augmax-live-status")


def _floats(b64: str, shape):
    import base64

    import numpy as np
    import torch

    return torch.from_numpy(np.frombuffer(base64.b64decode(b64), dtype="<f4").copy()).reshape(shape)


def test_the_live_models_give_pytorchs_probabilities_respond_to_sliders_and_are_fast(site):
    import json

    import torch

    from augmax_lib.course import live_models
    from augmax_lib.models.pretrained import load_pretrained

    tab = site["tab"]()
    page = tab.open(LIVE_PAGE)
    _live_ready(page)
    data = json.loads(page.eval_on_selector(".augmax-live-data", "e => e.textContent"))
    c, h, w = data["shape"]
    image, chains = _floats(data["image"], (c, h, w)), _floats(data["chains"], (data["k"], c, h, w))
    models = {label: load_pretrained(name) for label, name in live_models.LIVE_MODELS.items()}
    # Exactness: for the same mixed image, the page's probabilities are PyTorch's (to 1e-3).
    answer = data["answers"]["AugMax-DuBIN"]
    for m, weights in ((0.0, [1, 1, 1]), (0.7, [0.2, 0.3, 0.5]), (1.0, [1, 0, 0]), (answer["m"], answer["w"])):
        got = page.evaluate("async ([m, w]) => (await document.querySelector('.augmax-live').augmaxLive"
                            ".setMix(m, w)).probs", [m, weights])
        x = live_models.mix(image, chains, m, weights)
        for label, model in models.items():
            with torch.no_grad():
                expected = torch.softmax(model(x[None]), 1)[0]
            gap = float((torch.tensor(got[label]) - expected).abs().max())
            assert gap < 1e-3, f"{label} at m={m}, w={weights}: the page's probabilities differ by {gap}"
    frames = data["corruptions"]
    name = sorted(frames)[0]
    got = page.evaluate("async (n) => (await document.querySelector('.augmax-live').augmaxLive.setCorruption(n, 5))"
                        ".probs", name)
    import base64

    import numpy as np

    pixels = torch.from_numpy(np.frombuffer(base64.b64decode(frames[name]), np.uint8).copy()).reshape(5, c, h, w)
    with torch.no_grad():
        expected = torch.softmax(models["Normal"](pixels[4:5].float() / 255), 1)[0]
    assert float((torch.tensor(got["Normal"]) - expected).abs().max()) < 1e-3
    # Moving a slider with the keyboard changes what is shown.
    shown = "() => [...document.querySelectorAll('.augmax-live-models')[0].querySelectorAll('ol')].map(o => o.dataset.probs)"
    before = page.evaluate(shown)
    page.locator(".augmax-live-m").focus()
    for _ in range(25):
        page.keyboard.press("ArrowLeft")
    page.wait_for_function(f"(b) => JSON.stringify(({shown})()) !== JSON.stringify(b)", arg=before, timeout=10_000)
    # Speed: one prediction of all three models, median of 15.
    ms = page.evaluate("async () => document.querySelector('.augmax-live').augmaxLive.time(15)")
    assert ms < 100, f"one prediction of the three models takes {ms:.0f} ms in the page"
    # The page states what the live models add to its weight, and that is what the files weigh.
    html = site["book"].html
    files = [*(html / "_static" / "live").glob("*.onnx"),
             *[html / "_static" / "vendor" / "ort" / f for f in live_models.RUNTIME_FILES]]
    stated = int(page.eval_on_selector(".augmax-live-weight", "e => e.dataset.bytes"))
    assert stated == sum(f.stat().st_size for f in files)
    assert f"{stated / 1e6:.1f} MB" in page.inner_text(".augmax-live-weight")
    assert not tab.blocked and not tab.errors, (tab.blocked, tab.errors)


def test_the_live_models_run_from_a_folder_on_disk(site):
    # Opened as file:// (no server at all), the page loads every file as a script and still runs the models.
    page = site["tab"]().context.new_page()
    try:
        page.goto((site["book"].html / LIVE_PAGE).as_uri(), wait_until="load")
        _live_ready(page)
        probs = page.evaluate("async () => (await document.querySelector('.augmax-live').augmaxLive"
                              ".setMix(0.5, [1, 1, 1])).probs")
        assert all(abs(sum(p) - 1) < 1e-4 for p in probs.values())
    finally:
        page.close()


def test_the_live_models_run_in_a_notebooks_output_with_the_pinned_runtime(site, tmp_path):
    # In JupyterLab or Colab the output carries the ONNX files and loads onnxruntime-web from the CDN, checking
    # each file's sha256. Here a local folder with the book's vendored copy stands in for the CDN (no network).
    import hashlib
    import json

    import torch

    from augmax_lib.course import live_models
    from augmax_lib.models.pretrained import load_pretrained

    vendored = site["book"].html / "_static" / "vendor" / "ort"
    for name, sha in live_models.ORT_RUNTIME["files"].items():  # the pins are the book's copy of the runtime
        assert hashlib.sha256((vendored / name).read_bytes()).hexdigest() == sha, name
    lock = json.loads((Path(__file__).parents[1] / "book" / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/onnxruntime-web"]["version"] == live_models.ORT_RUNTIME["version"]
    assert f"onnxruntime-web@{live_models.ORT_RUNTIME['version']}/" in live_models.ORT_RUNTIME["cdn"]
    shutil.copytree(vendored, tmp_path / "cdn")
    g = torch.Generator().manual_seed(0)
    image, chains = torch.rand(3, 32, 32, generator=g), torch.rand(3, 3, 32, 32, generator=g)
    answers = {label: {"m": 0.3, "w": [0.2, 0.3, 0.5]} for label in live_models.LIVE_MODELS}
    frames = {"fog": (torch.rand(5, 3, 32, 32, generator=g) * 255).to(torch.uint8)}
    output = live_models.by_hand(image, chains, [f"class {i}" for i in range(10)], answers, frames,
                                 embed_models=True, runtime_url="cdn/")
    # A page like a notebook's output area: no book around it (no data-content_root, no _static).
    (tmp_path / "notebook.html").write_text(f"<!doctype html><html><body>{output.data}</body></html>")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(_QuietHandler, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    page = site["tab"]().context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/notebook.html", wait_until="load")
        _live_ready(page)
        got = page.evaluate("async () => (await document.querySelector('.augmax-live').augmaxLive"
                            ".setMix(0.7, [0.2, 0.3, 0.5])).probs")
        x = live_models.mix(image, chains, 0.7, [0.2, 0.3, 0.5])
        for label, name in live_models.LIVE_MODELS.items():
            with torch.no_grad():
                expected = torch.softmax(load_pretrained(name)(x[None]), 1)[0]
            assert float((torch.tensor(got[label]) - expected).abs().max()) < 1e-3, label
        assert "checked against its pinned sha256" in page.inner_text(".augmax-live-weight")
        assert not errors, errors
    finally:
        page.close()
        server.shutdown()


def test_a_notebooks_widget_refuses_a_runtime_file_that_is_not_the_pinned_one(site, tmp_path):
    import torch

    from augmax_lib.course import live_models

    vendored = site["book"].html / "_static" / "vendor" / "ort"
    shutil.copytree(vendored, tmp_path / "cdn")
    with open(tmp_path / "cdn" / "ort.wasm.min.js", "a") as f:
        f.write("\n// changed\n")
    image, chains = torch.zeros(3, 32, 32), torch.zeros(3, 3, 32, 32)
    output = live_models.by_hand(image, chains, [str(i) for i in range(10)],
                                 {label: {"m": 0.5, "w": [1, 1, 1]} for label in live_models.LIVE_MODELS},
                                 {"fog": torch.zeros(5, 3, 32, 32, dtype=torch.uint8)}, embed_models=True,
                                 runtime_url="cdn/")
    (tmp_path / "notebook.html").write_text(f"<!doctype html><html><body>{output.data}</body></html>")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(_QuietHandler, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    page = site["tab"]().context.new_page()
    try:
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/notebook.html", wait_until="load")
        page.wait_for_function("() => document.querySelector('.augmax-live').dataset.ready", timeout=60_000)
        assert page.eval_on_selector(".augmax-live", "e => e.dataset.ready") == "error"
        assert "ort.wasm.min.js: its sha256 is not the pinned one" in page.inner_text(".augmax-live-status")
        assert page.evaluate("() => window.ort === undefined")  # the changed file never ran
    finally:
        page.close()
        server.shutdown()
