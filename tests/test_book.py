"""The book builds on tiny parameters and reads well in a real browser (Debian's headless Chromium).

Every page of _toc.yml is opened over HTTP in a 1400 px window: it loads with no console error, its
internal links resolve, its math is typeset by MathJax, its figures decode, notebook pages carry a
Binder launch link to this repository's notebook, and it reads like a book: no table, figure or output
wider than the content column, no output line cut off, no raw TeX outside rendered math, no absolute
path of the machine that built it, no file named that is not in the repository, and a title of its own.
"""
import functools
import html
import http.server
import re
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


#: Text of a page that names a file: a path with a suffix the project uses (placeholders like <run_id> excluded).
FILE_NAME = re.compile(r"(?<![\w/.<-])((?:[\w.-]+/)*[\w-]+\.(?:md|py|ipynb|yaml|yml|json|csv|txt|sh))\b")
#: TeX that was meant to be rendered: a control word with an argument, or a $...$ pair, in plain text.
RAW_TEX = re.compile(r"\\(?:frac|mathrm|mathcal|min|max|sum|prod|sqrt|widetilde|text|times|le|ge)\b|\$[^$\s][^$]*\$")
MACHINE_PATH = re.compile(r"(?:/work/|/root/|/home/|/tmp/|/usr/local/|site-packages|/\S*_build/)")  # absolute paths


def _title(path: Path) -> str:
    match = re.search(r"<title>(.*?)</title>", path.read_text(), re.S)
    return html.unescape(match.group(1)).strip() if match else ""


def test_every_page_has_a_title_of_its_own(html_dir):
    titles = {page: _title(html_dir / f"{page}.html") for page in _toc_pages()}
    seen: dict[str, str] = {}
    for page, title in titles.items():
        assert title, f"{page}: no <title>"
        assert title not in seen, f"{page} and {seen.get(title)} share the title {title!r}"
        seen[title] = page


def _layout_problems(tab) -> dict:
    """Measured in the browser: what sticks out of the content column, what is cut, what text is shown."""
    return tab.evaluate("""() => {
        const main = document.querySelector('article.bd-article') || document.querySelector('article');
        const limit = main.getBoundingClientRect().right + 2;
        const name = e => e.tagName.toLowerCase() + (e.className && typeof e.className === 'string' ? '.' + e.className.split(' ')[0] : '');
        const wide = [], cut = [];
        for (const e of main.querySelectorAll('table, img, .cell_output pre, .cell_output .output')) {
            const r = e.getBoundingClientRect();
            if (r.width > 0 && r.right > limit) wide.push(name(e) + ' ' + Math.round(r.right - limit) + ' px');
        }
        for (const e of main.querySelectorAll('.cell_output pre, .cell_output table')) {
            const box = e.closest('.output, pre') || e;
            if (e.scrollWidth > e.parentElement.clientWidth + 2 || box.scrollWidth > box.clientWidth + 2)
                cut.push(name(e) + ': ' + (e.innerText || '').split('\\n').find(l => l.length > 60)?.slice(0, 60));
        }
        const clone = main.cloneNode(true);
        clone.querySelectorAll('mjx-container, script, style, .cell_input, pre, code, .math').forEach(e => e.remove());
        return {wide, cut, prose: clone.innerText, all: main.innerText};
    }""")


def test_every_toc_page_was_built(html_dir):
    for page in _toc_pages():
        assert (html_dir / f"{page}.html").exists(), page
    assert (html_dir / "index.html").exists()


@pytest.mark.parametrize("page", _toc_pages())
def test_page_in_chromium(page, html_dir, server, browser):
    tab = browser.new_page(viewport={"width": 1400, "height": 900})
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

    # Reads like a book: nothing wider than the column, nothing cut, no raw TeX, no build paths, no
    # file named that the reader cannot find in the repository.
    layout = _layout_problems(tab)
    assert not layout["wide"], f"{page}: wider than the content column: {layout['wide'][:5]}"
    assert not layout["cut"], f"{page}: output cut off (scrolls sideways): {layout['cut'][:5]}"
    tex = RAW_TEX.findall(layout["prose"])
    assert not tex, f"{page}: raw TeX outside rendered math: {tex[:5]}"
    paths = MACHINE_PATH.findall(layout["all"])
    assert not paths, f"{page}: a path of the build machine on the page: {paths[:5]}"
    for name in set(FILE_NAME.findall(layout["all"])):
        found = (ROOT / name).exists() if "/" in name else any(ROOT.glob(f"**/{name}"))
        assert found, f"{page}: names {name}, which is not in the repository"

    assert not errors, f"{page}: console errors {errors}"
    tab.close()
