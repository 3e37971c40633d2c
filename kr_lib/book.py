"""Building the book: papermill executes the parameterized notebooks, then Jupyter Book renders.

The book's sources (``_config.yml``, ``_toc.yml``, ``book/``, ``notebooks/``) are mirrored into a
staging folder (``_build/src`` in the output folder), where each page listed in ``book/executed_pages.yml`` is
replaced by its papermill-executed copy, and the Markdown of :data:`GENERATED_SOURCES` is written from the
records (the introduction's measured verdict). The staged paths equal the repository's, so every page's
Binder button opens the notebook it came from. A page is executed again only when its notebook, its
parameters or ``kr_lib``'s source hash changed (the stamp kept in the executed notebook's metadata);
Jupyter Book then renders with its own execution cache for any MyST code cells, cleared when the
library changes (jupyter-cache keys on cell code only). The pages to execute are independent (each reads
the sources and committed files only), so they run side by side: as many worker processes as fit the
cores and the memory (:func:`kr_lib.parallel.default_workers`, ``PAGE_MEMORY`` each), the cores shared
out among their kernels, the longest page (by its last executed time) first.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from .execute import check_parameters, execute_notebook
from .parallel import available_cpus, default_workers, worker_pool
from .project import find_project
from .provenance import source_hash
from .validate import positive_int

BOOK_SOURCES = ("_config.yml", "_toc.yml", "book", "notebooks")
PAGES_FILE = "book/executed_pages.yml"
PRESETS = ("default", "tiny")
MATHJAX_DIR = Path(".cache/mathjax/node_modules/mathjax/es5")
#: Memory one page's kernel may take (torch, a tiny training, pandas, figures): bounds the workers.
PAGE_MEMORY = 2 * 1024**3
#: Markdown generated from the records: the introduction's measured-redundancy verdict (``book/intro.md`` pulls
#: it in with a MyST ``{include}``), from the measurement cache by :func:`kr_lib.measured.findings.intro_paragraph`.
#: ``kr book`` writes it afresh into the staged sources at every build; the checkout's copy (so that a plain
#: ``jupyter-book build .`` finds it) is written by ``kr book --generated-only`` and a test keeps it current.
GENERATED_SOURCES = ("book/measured_verdict.md",)
#: ``repository.url`` of ``_config.yml`` until it is set to a fork (the README's "Your fork"): the repository
#: button and every page's Binder button point there.
PLACEHOLDER_REPOSITORY = "https://github.com/kr-book/kr-book"
REPOSITORY_VARIABLE = "KR_REPOSITORY_URL"


def repository_url(root: str | os.PathLike | None = None, environ=None) -> str:
    """The GitHub repository the book's buttons point at: ``$KR_REPOSITORY_URL`` when set (the Pages
    workflow sets it to the repository being built), else ``repository.url`` of ``_config.yml``."""
    import re

    environ = os.environ if environ is None else environ
    root = Path(root) if root is not None else find_project()
    url = environ.get(REPOSITORY_VARIABLE) or yaml.safe_load((root / "_config.yml").read_text())["repository"]["url"]
    if not re.fullmatch(r"https://github\.com/[A-Za-z0-9-]+/[A-Za-z0-9_.-]+", url):
        where = REPOSITORY_VARIABLE if environ.get(REPOSITORY_VARIABLE) else "_config.yml's repository.url"
        raise ValueError(f"{where} is {url!r}, not a GitHub repository address; "
                         "use https://github.com/OWNER/REPOSITORY")
    return url


def executed_pages(root: str | os.PathLike | None = None, preset: str = "default") -> dict[str, dict[str, Any]]:
    """Page path (as in ``_toc.yml``, with ``.ipynb``) -> ``{"source": path, "parameters": dict}``, from
    ``book/executed_pages.yml`` of the project ``root`` (default: :func:`kr_lib.project.find_project`)."""
    root = Path(root) if root is not None else find_project()
    if preset not in PRESETS:
        raise ValueError(f"unknown book preset {preset!r}; use one of {', '.join(PRESETS)}")
    spec = yaml.safe_load((root / PAGES_FILE).read_text()) or {}
    pages = {}
    for page, how in spec.items():
        how = how or {}
        unknown = set(how) - {"source", "parameters", "tiny", "inputs"}
        if unknown:
            raise ValueError(f"{PAGES_FILE}: page {page!r} has unknown key(s) {sorted(unknown)}; "
                             "use source, parameters, tiny, inputs")
        params = dict(how.get("parameters") or {})
        if preset == "tiny":
            params.update(how.get("tiny") or {})
        pages[page + ".ipynb"] = {"source": how.get("source", page + ".ipynb"), "parameters": params,
                                  "inputs": list(how.get("inputs") or [])}
    return pages


def _sync_file(src: Path, dst: Path) -> None:
    """Copy only when the content differs, so Sphinx rebuilds only what changed."""
    if dst.exists() and dst.read_bytes() == src.read_bytes():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def _page_stamp(source: Path, parameters: dict[str, Any], library_hash: str, inputs: list[Path] = ()) -> str:
    """What a page's output depends on: its notebook, its parameters, the library, and its input files
    (for example the result records a summary page draws)."""
    digest = hashlib.sha256(source.read_bytes())
    digest.update(json.dumps(parameters, sort_keys=True).encode())
    digest.update(library_hash.encode())
    for folder in inputs:
        for f in sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else [folder]:
            if f.exists() and not any(part.startswith(".") for part in f.relative_to(folder.parent).parts):
                digest.update(str(f.relative_to(folder.parent)).encode())
                digest.update(f.read_bytes())
    return digest.hexdigest()[:16]


def _staged_stamp(path: Path) -> str | None:
    try:
        return json.loads(path.read_text())["metadata"].get("kr_book", {}).get("stamp")
    except (OSError, ValueError, KeyError):
        return None


def stage_sources(root: Path, src: Path, skip: set[str]) -> None:
    """Mirror the book's sources from ``root`` into ``src``, except the pages in ``skip``."""
    wanted = set()
    for name in BOOK_SOURCES:
        path = root / name
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for f in files:
            rel = f.relative_to(root).as_posix()
            if "/." in "/" + rel or "__pycache__" in rel or rel.endswith((".partial.ipynb", ".failed.ipynb")):
                continue
            wanted.add(rel)
            if rel not in skip:
                _sync_file(f, src / rel)
    mathjax = root / MATHJAX_DIR
    if (mathjax / "tex-mml-chtml.js").exists():
        # MathJax served from the book itself: math renders offline and on any host.
        _sync_file(mathjax / "tex-mml-chtml.js", src / "_vendor/mathjax/tex-mml-chtml.js")
        wanted.add("_vendor/mathjax/tex-mml-chtml.js")
        for font in (mathjax / "output/chtml/fonts/woff-v2").glob("*.woff"):
            rel = f"_vendor/mathjax/output/chtml/fonts/woff-v2/{font.name}"
            _sync_file(font, src / rel)
            wanted.add(rel)
    for f in [p for p in src.rglob("*") if p.is_file()]:
        rel = f.relative_to(src).as_posix()
        if rel not in wanted and rel not in skip and not rel.startswith("_build/"):
            f.unlink()  # a page removed from the sources leaves the book too


def write_generated_sources(root: Path, src: Path, results_dir: str | os.PathLike | None = None) -> list[str]:
    """Write :data:`GENERATED_SOURCES` into the staged sources ``src`` from the records under ``results_dir``
    (default ``root/results``), each only when its text changed (so Sphinx re-renders only then); return them."""
    from .measured.findings import intro_paragraph

    texts = {"book/measured_verdict.md": intro_paragraph(Path(results_dir) if results_dir else root / "results")}
    for rel, text in texts.items():
        target = src / rel
        if not target.exists() or target.read_text() != text + "\n":
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text + "\n")
    return list(texts)


def _write_config(root: Path, src: Path) -> None:
    config = yaml.safe_load((root / "_config.yml").read_text())
    config["repository"]["url"] = repository_url(root)  # the one place, or the fork the workflow builds
    if config["repository"]["url"] == PLACEHOLDER_REPOSITORY:
        print(f"kr book: repository.url is the placeholder {PLACEHOLDER_REPOSITORY}: the Binder and repository "
              "buttons point there; set it to your fork in _config.yml (README, 'Your fork')", flush=True)
    if not (src / "_vendor/mathjax/tex-mml-chtml.js").exists():
        # No local MathJax (bootstrap not run): fall back to Sphinx's default CDN copy.
        config.get("sphinx", {}).get("config", {}).pop("mathjax_path", None)
        config.get("sphinx", {}).get("config", {}).pop("html_static_path", None)
    text = yaml.safe_dump(config, sort_keys=False)
    if not (src / "_config.yml").exists() or (src / "_config.yml").read_text() != text:
        (src / "_config.yml").write_text(text)


#: Per-page wall times at the book's parameters, measured by ``benchmarks/bench_binder.py``: the order of a
#: first build, when no page has been executed here yet.
MEASURED_PAGE_TIMES = "benchmarks/results/binder_cpu.json"


def measured_page_seconds(root: Path) -> dict[str, float]:
    """Page (as in ``_toc.yml``, ``.ipynb`` included) -> its wall seconds in :data:`MEASURED_PAGE_TIMES`; empty
    when the record is missing or unreadable (the order then is that of ``book/executed_pages.yml``)."""
    try:
        rows = json.loads((root / MEASURED_PAGE_TIMES).read_text())["rows"]
        return {r["page"]: float(r["wall_seconds"]) for r in rows}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def staged_seconds(path: Path, measured: float = 0.0) -> float:
    """How long the staged page at ``path`` took when it was last executed (the ``seconds`` of its stamp),
    else ``measured`` (its time in :data:`MEASURED_PAGE_TIMES`, 0 when unknown): the longest go first."""
    try:
        return float(json.loads(path.read_text())["metadata"]["kr_book"]["seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return measured


def execute_page(page: str, source: Path, target: Path, how: dict[str, Any], stamp: str, library_hash: str) -> float:
    """Execute one page (``how``: its entry of :func:`executed_pages`) with papermill into ``target`` and
    stamp it (the notebook's metadata ``kr_book``); return its seconds."""
    import nbformat

    print(f"kr book: executing {how['source']} -> {page} with {how['parameters'] or 'its defaults'}", flush=True)
    started = time.perf_counter()
    execute_notebook(source, target, how["parameters"], cwd=source.parent, progress=False)
    seconds = round(time.perf_counter() - started, 1)
    nb = nbformat.read(target, as_version=4)
    nb.metadata["kr_book"] = {"stamp": stamp, "parameters": how["parameters"], "source": how["source"],
                              "kr_lib_source": library_hash, "seconds": seconds}
    nbformat.write(nb, target)
    return seconds


class PageFailed(RuntimeError):
    """A page's notebook raised: the message names the page, the error and the kept executed notebook."""


def _failure_message(page: str, target: Path, err: BaseException) -> str:
    from .runs.notebook_run import error_message

    kept = target.with_name(target.stem + ".failed.ipynb")
    where = f"; the executed notebook with the failing cell: {kept}" if kept.exists() else ""
    return f"kr book: page {page} failed: {error_message(err)}{where}"


def _execute_page_in_worker(*args) -> str | None:
    """:func:`execute_page` in a worker process: None, or the failure's message (papermill's errors do not
    survive pickling back to the parent)."""
    try:
        execute_page(*args)
    except Exception as err:
        return _failure_message(args[0], args[2], err)
    return None


def execute_pages(root: Path, src: Path, pages: dict[str, dict[str, Any]], force: bool = False,
                  workers: int | None = None) -> list[str]:
    """Execute the pages whose stamp changed, ``workers`` at a time (None: :func:`default_workers`); return
    the pages that were executed. A page that raises stops the build with :class:`PageFailed` naming it
    (pages running beside it finish and keep their stamps; none is started after it)."""
    library_hash = source_hash()
    todo = []
    for page, how in pages.items():
        source = root / how["source"]
        if not source.exists():
            raise FileNotFoundError(f"{PAGES_FILE}: the notebook {how['source']} of page {page} does not exist")
        check_parameters(source, how["parameters"])
        stamp = _page_stamp(source, how["parameters"], library_hash, [root / p for p in how["inputs"]])
        target = src / page
        if force or _staged_stamp(target) != stamp:
            todo.append((page, source, target, how, stamp, library_hash))
    if not todo:
        return []
    workers = default_workers(len(todo), PAGE_MEMORY) if workers is None else positive_int(workers, "workers")
    workers = min(workers, len(todo))
    # longest first, so that the last page to start is a short one (a first build: by the measured times)
    measured = measured_page_seconds(root)
    todo.sort(key=lambda t: -staged_seconds(t[2], measured.get(t[0], 0.0)))
    if workers == 1:
        for args in todo:
            try:
                execute_page(*args)
            except Exception as err:
                raise PageFailed(_failure_message(args[0], args[2], err)) from err
        return [t[0] for t in todo]
    from concurrent.futures import as_completed

    threads = max(1, len(available_cpus()) // workers)
    print(f"kr book: executing {len(todo)} pages, {workers} at a time ({threads} thread(s) each)", flush=True)
    failures = []
    with worker_pool(workers, threads) as pool:
        futures = {pool.submit(_execute_page_in_worker, *args): args for args in todo}
        for future in as_completed(futures):
            if future.cancelled():
                continue
            try:
                message = future.result()
            except Exception as err:  # the worker itself died (out of memory, killed)
                message = _failure_message(futures[future][0], futures[future][2], err)
            if message:
                failures.append(message)
                for later in futures:
                    later.cancel()  # start no further page; the running ones finish
    if failures:
        raise PageFailed("\n".join(failures))
    return [t[0] for t in todo]


def _clear_cache_if_library_changed(out: Path) -> None:
    cache, marker = out / "_build/.jupyter_cache", out / "_build/.kr_lib_source"
    current = source_hash()
    if marker.exists() and marker.read_text() != current and cache.exists():
        shutil.rmtree(cache)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(current)


def build_book(output: str | os.PathLike | None = None, preset: str = "default", force: bool = False,
               root: str | os.PathLike | None = None, workers: int | None = None) -> Path:
    """Execute the book's notebooks and build the HTML book of the project ``root`` (default:
    :func:`kr_lib.project.find_project`); return the path of ``index.html``.

    ``output`` holds ``_build/html`` (default: the project itself, so ``_build/html``).
    ``preset="tiny"`` runs every executed page with its tiny parameters (the test build). ``workers``:
    pages executed side by side (None: as many as fit the cores and memory; 1: one after another).
    """
    root = Path(root).resolve() if root is not None else find_project()
    out = Path(output).resolve() if output else root
    src = out / "_build" / "src"
    pages = executed_pages(root, preset)
    stage_sources(root, src, skip=set(pages) | set(GENERATED_SOURCES))
    write_generated_sources(root, src)
    _write_config(root, src)
    execute_pages(root, src, pages, force=force, workers=workers)
    _clear_cache_if_library_changed(out)
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jupyter_book if jupyter_book.exists() else "jupyter-book"), "build", str(src),
           "--path-output", str(out), "--builder", "html", "-W", "--keep-going"]
    result = subprocess.run(cmd)
    index = out / "_build" / "html" / "index.html"
    if result.returncode != 0 or not index.exists():
        raise RuntimeError(f"jupyter-book build failed (exit {result.returncode}); see the log above")
    point_launch_links_at_sources(out / "_build" / "html", pages)
    return index


#: What the PDF needs besides the Python packages (Debian's TeX Live; README, "A PDF of the book").
PDF_DEBIAN_PACKAGES = ("texlive-xetex", "texlive-latex-extra", "texlive-fonts-recommended", "latexmk",
                       "fonts-freefont-otf")


def missing_pdf_tools() -> list[str]:
    """The programs and fonts :func:`build_pdf` needs that this machine lacks (empty: it can build)."""
    missing = [tool for tool in ("xelatex", "latexmk", "makeindex") if shutil.which(tool) is None]
    fc_list = shutil.which("fc-list")
    if fc_list:  # Sphinx's XeLaTeX preamble sets FreeSerif, FreeSans and FreeMono (fontspec, by name)
        found = subprocess.run([fc_list, ":family=FreeSerif", "family"], capture_output=True, text=True).stdout
        if "FreeSerif" not in found:
            missing.append("the FreeSerif font")
    return missing


def build_pdf(output: str | os.PathLike | None = None, preset: str = "default", force: bool = False,
              root: str | os.PathLike | None = None, workers: int | None = None) -> Path:
    """Build the HTML book (:func:`build_book`, which executes the pages), then the PDF from the same staged
    pages with Jupyter Book's ``pdflatex`` builder (XeLaTeX, as ``_config.yml``'s ``latex:`` sets); return the
    path of ``_build/latex/kr-book.pdf``. Stops before any work when TeX Live is missing, naming the packages."""
    missing = missing_pdf_tools()
    if missing:
        raise RuntimeError(f"kr book: the PDF needs {', '.join(missing)}; install them with: sudo apt-get install "
                           f"--no-install-recommends {' '.join(PDF_DEBIAN_PACKAGES)}")
    index = build_book(output, preset=preset, force=force, root=root, workers=workers)
    out = index.parent.parent.parent  # <out>/_build/html/index.html
    src = out / "_build" / "src"
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jupyter_book if jupyter_book.exists() else "jupyter-book"), "build", str(src),
           "--path-output", str(out), "--builder", "pdflatex"]
    result = subprocess.run(cmd)
    target = yaml.safe_load((src / "_config.yml").read_text())["latex"]["latex_documents"]["targetname"]
    pdf = out / "_build" / "latex" / Path(target).with_suffix(".pdf").name
    if result.returncode != 0 or not pdf.exists():
        log = pdf.with_suffix(".log")
        raise RuntimeError(f"jupyter-book's PDF build failed (exit {result.returncode}); the LaTeX log: {log}")
    return pdf


def point_launch_links_at_sources(html: Path, pages: dict[str, dict[str, Any]]) -> None:
    """A page made from another notebook (one summary notebook, a page per dataset) exists only in the
    build; its launch buttons are pointed at the notebook it was executed from."""
    for page, how in pages.items():
        if page == how["source"]:
            continue
        path = html / (page.removesuffix(".ipynb") + ".html")
        if path.exists():
            text = path.read_text()
            fixed = text.replace(f"tree/{page}", f"tree/{how['source']}").replace(
                f"filepath={page}", f"filepath={how['source']}")
            if fixed != text:
                path.write_text(fixed)
