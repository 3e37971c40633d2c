"""Sphinx fix-ups for the book.

Jupyter Book 1 with sphinx-thebe 0.3 and sphinx-togglebutton 0.4 on Sphinx 7.4 emits their inline
scripts twice on every page (``const THEBE_JS_URL`` declared twice is a JavaScript error in the
reader's console; reproducible with ``jupyter-book create``). Each page's script list is
de-duplicated here, keeping the first occurrence.
"""


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


def setup(app):
    # First in line: html-page-context is emitted with emit_firstresult, so a theme handler that
    # returns a template name stops the handlers after it.
    app.connect("html-page-context", dedupe_scripts, priority=1)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
