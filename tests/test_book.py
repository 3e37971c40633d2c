"""The book builds on tiny parameters and reads well in a real browser (Debian's headless Chromium).

Every page of _toc.yml is opened over HTTP: it loads with no console error, its internal links
resolve, its math is typeset by MathJax, its figures decode, and notebook pages carry a Binder
launch link to this repository's notebook.
"""
import functools
import http.server
import shutil
import threading
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

import pytest
import yaml

from kr_lib.book import build_book, executed_pages

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [pytest.mark.slow, pytest.mark.book]
PAGES = {page.removesuffix(".ipynb"): how for page, how in executed_pages(ROOT, "tiny").items()}


def _toc_pages():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]
    for part in toc.get("parts", []):
        for chapter in part["chapters"]:
            pages.append(chapter["file"])
            pages += [s["file"] for s in chapter.get("sections", [])]
    return pages


@pytest.fixture(scope="session")
def html_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("book")
    index = build_book(out, preset="tiny")
    return index.parent


@pytest.fixture(scope="session")
def server(html_dir):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(html_dir))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: apt-get install chromium (scripts/bootstrap.sh does it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


def test_every_toc_page_was_built(html_dir):
    for page in _toc_pages():
        assert (html_dir / f"{page}.html").exists(), page
    assert (html_dir / "index.html").exists()


@pytest.mark.parametrize("page", _toc_pages())
def test_page_in_chromium(page, html_dir, server, browser):
    tab = browser.new_page()
    errors = []
    tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on("requestfailed", lambda req: errors.append(f"request failed: {req.url}"))
    url = urljoin(server, f"{page}.html")
    response = tab.goto(url, wait_until="networkidle")
    assert response.ok, f"{url}: HTTP {response.status}"

    # Math: every math element that Sphinx emitted is typeset by MathJax.
    if tab.locator(".math").count():
        tab.wait_for_selector("mjx-container", state="attached", timeout=20_000)
        assert tab.locator("mjx-container").count() >= tab.locator(".math").count() // 2
        assert not tab.locator("mjx-merror").count(), "MathJax reported a TeX error"

    # Figures: every image in the article decoded to a real picture.
    sizes = tab.eval_on_selector_all("article img", "els => els.map(e => [e.currentSrc, e.naturalWidth])")
    assert all(w > 0 for _, w in sizes), f"broken images: {[s for s, w in sizes if not w]}"

    # Internal links: every link into the book resolves to a built file.
    hrefs = tab.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
    for href in hrefs:
        target, _ = urldefrag(href)
        if target.startswith(server):
            rel = urlparse(target).path.lstrip("/") or "index.html"
            assert (html_dir / rel).exists() or (html_dir / rel / "index.html").exists(), f"{page}: broken link {href}"

    if page in PAGES:
        binder = [h for h in hrefs if "mybinder.org" in h]
        repo = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
        slug = urlparse(repo).path.strip("/")
        assert binder, f"{page}: no Binder launch link"
        source = PAGES[page]["source"]  # the notebook the page was executed from
        assert all(f"/v2/gh/{slug}/" in h and h.endswith(f"tree/{source}") for h in binder), binder
        assert (ROOT / source).exists()
        if f"{page}.ipynb" == source:  # a chapter; pages made from a summary notebook may have no data yet
            assert sizes, f"{page}: a notebook chapter without a figure"

    assert not errors, f"{page}: console errors {errors}"
    tab.close()
