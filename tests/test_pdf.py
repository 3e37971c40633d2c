"""The PDF of the book (``make pdf``, ``kr_lib.book.build_pdf``): XeLaTeX from the executed pages, built where
Debian's TeX Live is installed (README, "A PDF of the book"), refused with the packages to install elsewhere."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from kr_lib import book

ROOT = Path(__file__).resolve().parent.parent


def test_the_pdf_is_configured_for_xelatex_and_tools_debian_has():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["latex"]["latex_engine"] == "xelatex"
    # Jupyter Book's own LaTeX class needs bbm.sty (texlive-fonts-extra); xindy is not in the packages listed
    assert config["latex"]["use_jupyterbook_latex"] is False
    assert config["sphinx"]["config"]["latex_use_xindy"] is False
    assert config["latex"]["latex_documents"]["targetname"] == "kr-book.tex"
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^pdf: bootstrap\n\t.*build_pdf\(", makefile, re.M)
    readme = (ROOT / "README.md").read_text()
    assert "make pdf" in readme and " ".join(book.PDF_DEBIAN_PACKAGES) in readme


def test_without_tex_the_pdf_build_stops_before_any_work_naming_the_packages(monkeypatch):
    monkeypatch.setattr(book.shutil, "which", lambda name: None)

    def no_build(*args, **kwargs):
        raise AssertionError("the book was built although TeX is missing")

    monkeypatch.setattr(book, "build_book", no_build)
    with pytest.raises(RuntimeError, match=r"needs xelatex, latexmk, makeindex; install them with: sudo apt-get "
                                           r"install --no-install-recommends texlive-xetex .*fonts-freefont-otf"):
        book.build_pdf(preset="tiny")


@pytest.mark.slow
@pytest.mark.book
def test_the_tiny_book_builds_as_a_pdf(tmp_path):
    missing = book.missing_pdf_tools()
    if missing:
        pytest.skip(f"no TeX Live here ({', '.join(missing)}): README, 'A PDF of the book'")
    pdf = book.build_pdf(tmp_path, preset="tiny")
    assert pdf == tmp_path / "_build" / "latex" / "kr-book.pdf"
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 200_000
    tex = pdf.with_suffix(".tex").read_text()
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    chapters = [c for part in toc["parts"] for c in part["chapters"]]
    assert tex.count("\\chapter{") >= len(chapters), "a page of the toc is missing from the PDF"
    log = pdf.with_suffix(".log").read_text(errors="replace")
    assert "Missing character" not in log, "a character the fonts lack (a blank in the PDF)"
    assert str(tmp_path) not in tex, "a path of the build machine in the PDF"
    assert "Styler at 0x" not in tex, "a table printed as its Python repr (book_table's Markdown form is missing)"
