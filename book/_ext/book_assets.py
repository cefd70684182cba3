"""Sphinx extension: page-asset fixes for the offline book, and the hosting substitutions.

**Where the book is hosted is one setting**: ``repository.url`` and
``repository.branch`` in ``_config.yml``.  Jupyter Book derives the launch
buttons (Binder, the repository link) from it; :func:`hosting_substitutions`
derives the MyST substitutions the pages use for the same address, so no page
spells it out:

* ``{{ repository_url }}`` -- the repository, as a link;
* ``{{ pip_install_command }}`` -- the ``pip install`` command that installs
  the package (with the chapters' requirements) from that repository and branch;
* ``{{ binder_url }}`` -- the Binder link that opens chapter 1 in JupyterLab.

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


def hosting(config) -> dict[str, str]:
    """Repository URL, branch and Binder hub of the build, from Jupyter Book's theme options."""
    options = getattr(config, "html_theme_options", None) or {}
    url = str(options.get("repository_url", "")).rstrip("/")
    branch = str(options.get("repository_branch", "") or "main")
    hub = str((options.get("launch_buttons") or {}).get("binderhub_url", "https://mybinder.org")).rstrip("/")
    if not url.startswith("https://github.com/"):
        raise ValueError(f"repository.url in _config.yml must be a https://github.com/OWNER/NAME address, not {url!r}")
    return {"url": url, "branch": branch, "hub": hub}


def hosting_substitutions(app, config) -> None:
    h = hosting(config)
    slug = h["url"].removeprefix("https://github.com/")
    binder = f"{h['hub']}/v2/gh/{slug}/{h['branch']}?urlpath=lab/tree/book/01_temporal_coding.md"
    subs = dict(getattr(config, "myst_substitutions", None) or {})
    subs.update({
        "repository_url": f"[{h['url']}]({h['url']})",
        "pip_install_command": f'`pip install "stidi[book] @ git+{h["url"]}@{h["branch"]}"`',
        "binder_url": f"[{binder}]({binder})",
    })
    config.myst_substitutions = subs


def setup(app):
    app.connect("config-inited", hosting_substitutions)
    # Run after the extensions that add page scripts (default priority 500).
    app.connect("html-page-context", drop_duplicate_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
