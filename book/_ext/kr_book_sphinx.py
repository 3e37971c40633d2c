"""Sphinx fix-ups for the book.

Jupyter Book 1 with sphinx-thebe 0.3 and sphinx-togglebutton 0.4 on Sphinx 7.4 emits their inline
scripts twice on every page (``const THEBE_JS_URL`` declared twice is a JavaScript error in the
reader's console; reproducible with ``jupyter-book create``). Each page's script list is
de-duplicated here, keeping the first occurrence.

A code cell whose input is hidden (tag ``hide-input``) and that printed nothing is dropped from the
page: its toggle would open on code that showed the reader nothing. Pages drawn from records guard
each figure with ``if have:`` so that a dataset without records shows one sentence, not a column of
empty toggles; and the cell papermill injects with a page's parameters (tag ``injected-parameters``)
is removed where the notebook removes its own ``parameters`` cell (tag ``remove-input``): the page
then states its parameters in its text (:func:`drop_empty_hidden_cells`).

``static/kr_book.css`` wraps what a cell prints at the content column (a training run's log line is
longer than the column), rather than letting the reader scroll it sideways.
"""
from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"


def _script_key(js):
    attributes = getattr(js, "attributes", {}) or {}
    return getattr(js, "filename", str(js)) or "", tuple(sorted((k, str(v)) for k, v in attributes.items()))


def dedupe_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for js in scripts:
        key = _script_key(js)
        if key not in seen:
            seen.add(key)
            unique.append(js)
    scripts[:] = unique


def _is_empty_hidden_cell(node) -> bool:
    return (node.get("nb_element") == "cell_code" and node.get("hide_mode") == "input"
            and not any(child.get("nb_element") == "cell_code_output" for child in node.children))


def _tags(node) -> list[str]:
    return list((node.get("cell_metadata") or {}).get("tags", []))


def drop_empty_hidden_cells(app, doctree):
    """Remove from a page the ``hide-input`` code cells without output (myst-nb's cell containers), and
    the injected parameters cell where the ``parameters`` cell's input is removed."""
    from docutils import nodes

    cells = [n for n in doctree.findall(nodes.container) if n.get("nb_element") == "cell_code"]
    removed_parameters = any("parameters" in _tags(n) and {"remove-input", "remove_input"} & set(_tags(n))
                             for n in cells)
    for node in cells:
        if _is_empty_hidden_cell(node) or (removed_parameters and "injected-parameters" in _tags(node)):
            node.parent.remove(node)


def add_static(app, config):
    config.html_static_path = [*config.html_static_path, str(STATIC)]


def setup(app):
    app.connect("config-inited", add_static)
    app.add_css_file("kr_book.css")
    app.connect("doctree-read", drop_empty_hidden_cells)
    # First in line: html-page-context is emitted with emit_firstresult, so a theme handler that
    # returns a template name stops the handlers after it.
    app.connect("html-page-context", dedupe_scripts, priority=1)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
