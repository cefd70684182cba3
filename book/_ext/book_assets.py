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

**Author-year bibliography.** The text cites author-year ("Mirsadeghi *et
al.*, 2021"); the bibliography page labels its entries the same way with the
pybtex style ``authoryear`` registered here (the ``plain`` formatting, with
:class:`AuthorYearLabels` instead of numbers).

sphinx-thebe 0.3.1 registers its inline configuration script through
``app.add_js_file(None, body=...)`` after the HTML builder has copied the
registry's scripts; Sphinx 7.4 then holds the same script twice (once with
file name ``None``, once with ``''``) and every page declares
``const THEBE_JS_URL`` twice, a JavaScript error.  This extension drops such
duplicates from each page's script list.
"""

from __future__ import annotations

import re
from typing import Any

from pybtex.plugin import register_plugin
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle


def _plain_name(part: str) -> str:
    """A last name without BibTeX braces and with the few accents our entries use decoded."""
    accents = {"\\'e": "é", "\\'E": "É", '\\"o': "ö", '\\"u': "ü", "\\`e": "è"}
    for tex, char in accents.items():
        part = part.replace("{" + tex + "}", char).replace(tex, char)
    return re.sub(r"[{}]", "", part)


class AuthorYearLabels(BaseLabelStyle):
    """Labels "Last, year", "Last and Other, year" or "Last et al., year"; "a", "b" for clashes."""

    def format_labels(self, sorted_entries):
        labels = []
        for entry in sorted_entries:
            persons = entry.persons.get("author") or entry.persons.get("editor") or []
            last = [_plain_name(" ".join(p.prelast_names + p.last_names)) for p in persons]
            if not last:
                names = entry.key
            elif len(last) == 1:
                names = last[0]
            elif len(last) == 2:
                names = f"{last[0]} and {last[1]}"
            else:
                names = f"{last[0]} et al."
            labels.append(f"{names}, {entry.fields.get('year', 'n.d.')}")
        counts = {label: labels.count(label) for label in labels}
        seen: dict[str, int] = {}
        for label in labels:
            if counts[label] > 1:
                seen[label] = seen.get(label, 0) + 1
                yield label + "abcdefghij"[seen[label] - 1]
            else:
                yield label


class AuthorYearStyle(PlainStyle):
    default_label_style = "authoryear"


register_plugin("pybtex.style.labels", "authoryear", AuthorYearLabels)
register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle)


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
