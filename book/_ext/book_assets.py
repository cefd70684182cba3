"""Sphinx extension: page-asset fixes for the offline book.

sphinx-thebe 0.3.1 registers its inline configuration script through
``app.add_js_file(None, body=...)`` after the HTML builder has copied the
registry's scripts; Sphinx 7.4 then holds the same script twice (once with
file name ``None``, once with ``''``) and every page declares
``const THEBE_JS_URL`` twice, a JavaScript error.  This extension drops such
duplicates from each page's script list.
"""

from __future__ import annotations

from typing import Any


def _script_key(script: Any) -> tuple:
    attributes = getattr(script, "attributes", {})
    return (
        getattr(script, "filename", script) or "",
        getattr(script, "priority", None),
        tuple(sorted((k, str(v)) for k, v in attributes.items())),
    )


def drop_duplicate_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not isinstance(scripts, list):
        return
    seen: set[tuple] = set()
    unique = []
    for script in scripts:
        key = _script_key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique


def setup(app):
    # Run after the extensions that add page scripts (default priority 500).
    app.connect("html-page-context", drop_duplicate_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
