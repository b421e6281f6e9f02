"""The web UI: a read-only site over the registry, lineage, freshness and quality, part of the package.

``featurekit --repo REPO ui`` serves it on its own (:mod:`.run`); ``featurekit serve`` mounts it at
``/ui`` beside the feature API, under the same tokens. Pages are rendered on the server from the
store's API objects, with a stylesheet and SVG charts inside the package: no script, no build
step, no network. Every page has a ``.json`` twin and takes ``?as_of=`` (a registry version or an
ISO time) to show the registry as it was then. Modules::

    data.py     what each page shows, as JSON-ready dicts (the .json twins)
    lineage.py  the lineage graph: its nodes and edges, and its SVG
    quality.py  check status, profiles and drift, where this featurekit has them
    html.py     escaping, links, tables, the page layout
    svg.py      the materialization timeline and histograms
    pages.py    each page's HTML from its dict
    routes.py   the Starlette application (auth, errors, security headers)
    run.py      ``featurekit ui``
    static/     the stylesheet

It needs the server's dependencies (``pip install 'featurekit[server]'``), imported only when used.
"""
