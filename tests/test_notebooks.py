"""Notebooks are committed clean and parameterized, and the book's pages call them with names they know."""
import json
from pathlib import Path

import pytest

from kr_lib.book import executed_pages
from kr_lib.execute import check_parameters, notebook_parameters

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    dirty = [i for i, c in enumerate(nb["cells"])
             if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_a_parameters_cell_and_prints_the_library_stamp(path):
    assert notebook_parameters(path)
    source = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"])
    assert "kr_lib.stamp()" in source or "kr_lib.__version__" in source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_papermill_reads_every_name_of_the_parameters_cell(path):
    """papermill's parser skips a line it cannot read (an apostrophe or semicolon in a comment, say),
    and a parameter it did not read would then be refused by name; every assignment must be read."""
    import ast

    cell = next(c for c in json.loads(path.read_text())["cells"]
                if "parameters" in c.get("metadata", {}).get("tags", []))
    assigned = {t.id for node in ast.parse("".join(cell["source"])).body if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name)}
    assert assigned == set(notebook_parameters(path)), f"papermill did not read {assigned - set(notebook_parameters(path))}"


@pytest.mark.parametrize("preset", ["default", "tiny"])
def test_book_pages_use_parameters_their_notebooks_declare(preset):
    pages = executed_pages(ROOT, preset)
    assert pages
    for page, how in pages.items():
        check_parameters(ROOT / how["source"], how["parameters"])


def test_unknown_parameter_is_named_with_the_accepted_ones():
    with pytest.raises(ValueError, match=r"does not know the parameter\(s\) no_such_thing.*accepts: .*n_show"):
        check_parameters(ROOT / "notebooks/fashion_mnist_data.ipynb", {"no_such_thing": 1})


def test_every_executed_page_is_in_the_toc():
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = {ch["file"] for part in toc["parts"] for ch in part["chapters"]}
    for page in executed_pages(ROOT):
        assert page.removesuffix(".ipynb") in files, f"{page} is executed but not in _toc.yml"


def test_progress_bars_are_off_in_executed_notebooks(monkeypatch, capsys):
    """kr_lib's bars honour TQDM_DISABLE (set for executed notebooks) even though they pass `disable`."""
    from kr_lib.progress import progress_bar

    monkeypatch.setenv("TQDM_DISABLE", "1")
    list(progress_bar(range(3), desc="hidden", enabled=True))
    monkeypatch.setenv("TQDM_DISABLE", "0")
    list(progress_bar(range(3), desc="shown", enabled=True))
    list(progress_bar(range(3), desc="off by caller", enabled=False))
    err = capsys.readouterr().err
    assert "shown" in err and "hidden" not in err and "off by caller" not in err


def test_a_kernel_that_dies_before_it_starts_is_started_again_and_other_errors_are_not(tmp_path, monkeypatch, capsys):
    # two kernels started at once can pick the same TCP ports; the one that loses dies before kernel_info
    import papermill

    from kr_lib import execute

    source = ROOT / "notebooks" / "fashion_mnist_data.ipynb"
    calls = []

    def flaky(src, out, **kwargs):
        calls.append(out)
        if len(calls) == 1:
            raise RuntimeError("Kernel died before replying to kernel_info")
        Path(out).write_text("{}")

    monkeypatch.setattr(papermill, "execute_notebook", flaky)
    out = execute.execute_notebook(source, tmp_path / "out.ipynb", progress=False)
    assert out.read_text() == "{}" and len(calls) == 2
    assert "the kernel died before it started (attempt 1 of 3)" in capsys.readouterr().out

    def always(src, out, **kwargs):
        calls.append(out)
        Path(out).write_text("{}")
        raise RuntimeError("Kernel died before replying to kernel_info")

    calls.clear()
    monkeypatch.setattr(papermill, "execute_notebook", always)
    with pytest.raises(RuntimeError, match="Kernel died"):
        execute.execute_notebook(source, tmp_path / "again.ipynb", progress=False)
    assert len(calls) == execute.KERNEL_START_ATTEMPTS and (tmp_path / "again.failed.ipynb").is_file()

    def other(src, out, **kwargs):
        calls.append(out)
        raise RuntimeError("Kernel didn't respond in 60 seconds")

    calls.clear()
    monkeypatch.setattr(papermill, "execute_notebook", other)
    with pytest.raises(RuntimeError, match="didn't respond"):
        execute.execute_notebook(source, tmp_path / "other.ipynb", progress=False)
    assert len(calls) == 1  # not a start that died: not retried
