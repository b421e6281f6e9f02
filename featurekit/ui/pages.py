"""Each page's HTML, rendered from the dict that is also its JSON twin (see :mod:`featurekit.ui.data`)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from featurekit.ui import quality
from featurekit.ui.html import Html, Links, esc, join, link, page, section, table, tags_text
from featurekit.ui.lineage import lineage_svg
from featurekit.ui.svg import timeline_svg


def _features(features: list[dict[str, Any]]) -> Html:
    items = (
        f"<li><code>{esc(f['name'])}</code>" + (f" <span class='dtype'>{esc(f['dtype'])}</span>" if f["dtype"] else "")
        for f in features
    )
    return Html('<ul class="features">' + "".join(items) + "</ul>")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    if seconds < 120:
        return f"{seconds:g} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} days"


def _freshness(fresh: dict[str, Any] | None, computed: bool) -> Html:
    if computed:
        return Html("computed on request")
    if fresh is None:
        return Html("never materialized")
    last = fresh["last_materialization"]
    newest = fresh["newest_event"]
    age = f" ({_duration(fresh['newest_event_age_s'])} ago)" if newest else ""
    return Html(
        f"newest event {esc(newest or 'unknown')}{esc(age)}<br>watermark {esc(fresh['watermark'] or 'none (pushes)')}"
        f"<br>last {esc(last['mode'])} at {esc(last['committed_at'])}, took {esc(_duration(last['duration_s']))}"
    )


def views_html(data: dict[str, Any], links: Links) -> Html:
    query = data["query"] or ""
    hidden = f'<input type="hidden" name="as_of" value="{esc(links.as_of)}">' if links.as_of else ""
    search = Html(
        f'<form class="search" role="search" method="get" action="{esc(links.to("views", keep_as_of=False))}">'
        f'<label for="q">Search by feature name</label> <input id="q" name="q" value="{esc(query)}">{hidden} '
        '<button type="submit">Search</button></form>'
    )
    views = data["views"]
    if not views:
        found = "No view has a feature matching that name." if query else "No feature views applied yet."
        return page("Views", search + Html(f"<p>{esc(found)}</p>"), links, "views", q=query or None)
    with_checks = any("checks" in v for v in views)
    rows = []
    for v in views:
        computed = v["kind"] in ("on_demand", "feature_set")
        row = [
            link(links.to(f"views/{v['view']}"), v["view"]),
            v["kind"].replace("_", " "),
            f"v{v['version']}",
            ", ".join(v["entity"] or []) or "-",
            _features(v["features"]),
            v["owner"] or "-",
            tags_text(v["tags"]) or "-",
            _freshness(v["freshness"], computed),
        ]
        if with_checks:
            row.append((v.get("checks") or {}).get("status", "-"))
        rows.append(row)
    headers = ["View", "Kind", "Version", "Entity", "Features", "Owner", "Tags", "Freshness"]
    count = Html(f"<p>{len(views)} views at registry version {esc(data['registry_version'])}.</p>")
    body = Html(search + count + table([*headers, *(["Checks"] if with_checks else [])], rows))
    return page("Views", body, links, "views", q=query or None)


def _diff_form(view: str, versions: list[int], old: int, new: int, links: Links) -> Html:
    def select(name: str, chosen: int) -> str:
        options = "".join(f'<option value="{v}"{" selected" if v == chosen else ""}>v{v}</option>' for v in versions)
        return f'<label for="{name}">{name}</label> <select id="{name}" name="{name}">{options}</select>'

    hidden = f'<input type="hidden" name="as_of" value="{esc(links.as_of)}">' if links.as_of else ""
    return Html(
        f'<form class="diff-form" method="get" action="{esc(links.to(f"views/{view}/diff", keep_as_of=False))}">'
        f'{select("old", old)} {select("new", new)}{hidden} <button type="submit">Compare</button></form>'
    )


def _window_form(view: str, reference: list[str], current: list[str], links: Links) -> Html:
    """A form for the drift between two windows of a view's data (ISO-8601 times, [start, end))."""

    def field(name: str, value: str) -> str:
        label = name.replace("_", " ")
        return f'<label for="{name}">{label}</label> <input id="{name}" name="{name}" value="{esc(value)}" size="25">'

    hidden = f'<input type="hidden" name="as_of" value="{esc(links.as_of)}">' if links.as_of else ""
    fields = [("reference_start", reference[0]), ("reference_end", reference[1])]
    fields += [("current_start", current[0]), ("current_end", current[1])]
    return Html(
        f'<form class="drift-form" method="get" action="{esc(links.to(f"views/{view}/drift", keep_as_of=False))}">'
        + " ".join(field(n, v) for n, v in fields)
        + f'{hidden} <button type="submit">Compare windows</button></form>'
    )


def _halves(timeline: list[dict[str, Any]]) -> tuple[list[str], list[str]] | None:
    """The materialized span split in two halves: the window form's default (None: nothing materialized)."""
    if not timeline:
        return None
    start = min(datetime.fromisoformat(m["window_start"]) for m in timeline)
    end = max(datetime.fromisoformat(m["window_end"]) for m in timeline)
    middle = start + (end - start) / 2
    return [start.isoformat(), middle.isoformat()], [middle.isoformat(), end.isoformat()]


def view_html(data: dict[str, Any], links: Links) -> Html:
    name = data["view"]
    computed = data["kind"] in ("on_demand", "feature_set")
    source = data["definition"].get("source") or {}
    facts = [
        ("Kind", data["kind"].replace("_", " ")),
        ("Current version", f"v{data['version']} (code {data['code_hash']})"),
        ("Entity", ", ".join(data["entity"] or []) or "-"),
        ("Owner", data["owner"] or "-"),
        ("Tags", tags_text(data["tags"]) or "-"),
        ("Description", data["description"] or "-"),
        ("Source", source.get("path") or source.get("query") or "-"),
        ("Freshness", _freshness(data["freshness"], computed)),
    ]
    summary = Html('<dl class="facts">' + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts) + "</dl>")
    parts = [section("Summary", summary + _features(data["features"]), "summary")]
    parts.append(quality.checks_html(data.get("checks")))
    parts.append(quality.profile_html(data.get("profile")))
    halves = None if computed else _halves(data.get("materializations") or [])
    if halves is not None:
        parts.append(section("Drift between two windows", _window_form(name, *halves, links), "window-drift"))
    versions = data["versions"]
    numbers = [v["version"] for v in versions]
    rows = []
    for v in versions:
        earlier = [n for n in numbers if n < v["version"]]
        change = link(links.to(f"views/{name}/diff", old=earlier[-1], new=v["version"]), "diff") if earlier else "-"
        rows.append(
            [
                link(f"#code-v{v['version']}", f"v{v['version']}"),
                link(links.to("views", keep_as_of=False, as_of=v["registry_version"]), f"r{v['registry_version']}"),
                v["applied_at"],
                v["code_hash"],
                v["location"],
                v["git_commit"] or "-",
                change,
            ]
        )
    codes = join(
        Html(
            f'<details id="code-v{v["version"]}"><summary>Code of v{v["version"]}</summary>'
            f"<pre><code>{esc(v['source_text'])}</code></pre></details>"
        )
        for v in versions
    )
    form = _diff_form(name, numbers, numbers[-2] if len(numbers) > 1 else numbers[0], numbers[-1], links)
    parts.append(
        section(
            "Versions",
            Html(
                table(["Version", "Registry version", "Applied", "Code", "Defined at", "Git", "Change"], rows)
                + codes
                + form
            ),
            "versions",
        )
    )
    if not computed:
        timeline = data["materializations"]
        shown = "" if len(timeline) == data["materializations_total"] else f" (the newest {len(timeline)})"
        m_rows = [
            [
                f"v{m['version']}",
                m["mode"],
                f"[{m['window_start']}, {m['window_end']})",
                m["rows"],
                m["data_version"],
                m["registry_version"],
                m["committed_at"],
                _duration(m["duration_s"]),
            ]
            for m in reversed(timeline)
        ]
        body = (
            Html(f"<p>{esc(data['materializations_total'])} materializations and pushes{esc(shown)}.</p>")
            + timeline_svg(timeline)
            + table(
                ["Version", "Mode", "Window", "Rows", "Data version", "Registry version", "Committed", "Took"], m_rows
            )
        )
        parts.append(section("Materializations", body, "materializations"))
        online = data["online"]
        if online["error"]:
            online_body = Html(f'<p class="error">{esc(online["error"])}</p>')
        elif online["tables"]:
            online_body = table(
                ["Table", "Version", "Columns"],
                [[t["table"], f"v{t['version']}", ", ".join(t["columns"])] for t in online["tables"]],
            )
        else:
            online_body = Html("<p>No online table (not materialized online yet).</p>")
        parts.append(section("Online tables", online_body, "online"))
    return page(name, join(parts), links, f"views/{name}")


def diff_html(data: dict[str, Any], links: Links) -> Html:
    name, old, new = data["view"], data["old"], data["new"]
    lines = []
    for line in data["diff"].splitlines():
        style = {"+": "add", "-": "remove", "@": "hunk", "#": "change"}.get(line[:1], "same")
        lines.append(f'<span class="{style}">{esc(line)}</span>')
    body = (
        Html(f"<p>{link(links.to(f'views/{name}'), f'Back to {name}')}</p>")
        + _diff_form(name, data["versions"], old, new, links)
        + Html(f'<pre class="diff"><code>{chr(10).join(lines)}</code></pre>')
        + quality.drift_html(data.get("drift"))
    )
    return page(f"{name}: v{old} → v{new}", body, links, f"views/{name}/diff", old=old, new=new)


def window_drift_html(data: dict[str, Any], links: Links) -> Html:
    name, reference, current = data["view"], data["reference"], data["current"]
    body = (
        Html(f"<p>{link(links.to(f'views/{name}'), f'Back to {name}')}</p>")
        + Html(
            f"<p>v{data['version']}: rows with event times in [{esc(reference[0])}, {esc(reference[1])}) "
            f"against [{esc(current[0])}, {esc(current[1])}).</p>"
        )
        + _window_form(name, reference, current, links)
        + quality.drift_html(data.get("drift"))
    )
    query = {
        "reference_start": reference[0],
        "reference_end": reference[1],
        "current_start": current[0],
        "current_end": current[1],
    }
    return page(f"{name}: drift between two windows", body, links, f"views/{name}/drift", **query)


def lineage_html(data: dict[str, Any], links: Links) -> Html:
    if not data["nodes"]:
        return page("Lineage", Html("<p>No feature views applied yet.</p>"), links, "lineage")
    labels = {n["id"]: f"{n['kind'].replace('_', ' ')} {n['label']}" for n in data["nodes"]}
    training = [n for n in data["nodes"] if n["kind"] == "training_set"]
    body = (
        Html(
            "<p>Sources feed views; views feed on-demand views, feature sets and the training sets built from them.</p>"
        )
        + lineage_svg(data, links)
        + section(
            "Training sets",
            table(
                ["Training set", "Path"],
                [[link(links.to(f"training-sets/{n['training_set']}"), n["label"]), n["path"]] for n in training],
            )
            if training
            else Html("<p>No training set written to a file yet (TrainingSet.to_parquet records them).</p>"),
            "training-sets",
        )
        + section("Edges", table(["From", "To"], [[labels[e["from"]], labels[e["to"]]] for e in data["edges"]]))
    )
    return page("Lineage", body, links, "lineage")


def history_html(data: dict[str, Any], links: Links) -> Html:
    page_number, pages = data["page"], data["pages"]
    rows = [
        [
            link(links.to("views", keep_as_of=False, as_of=c["registry_version"]), f"r{c['registry_version']}"),
            c["committed_at"],
            c["kind"],
            c["summary"],
            c["git_commit"] or "-",
        ]
        for c in data["commits"]
    ]
    steps = []
    if page_number > 1:
        steps.append(link(links.to("history", page=page_number - 1), "Newer commits"))
    if page_number < pages:
        steps.append(link(links.to("history", page=page_number + 1), "Older commits"))
    body = (
        Html(
            f"<p>{esc(data['total'])} commits, newest first; page {page_number} of {pages}. "
            "Each registry version links to the registry as it was then.</p>"
        )
        + table(["Registry version", "Committed", "Kind", "Summary", "Git"], rows)
        + Html(f'<nav class="pages" aria-label="History pages">{join(steps, " ")}</nav>' if steps else "")
        + section(
            "Garbage collections",
            table(["Ran", "Policy", "Data versions removed"], [[g["ran_at"], g["policy"], g["removed"]] for g in gcs])
            if (gcs := data["gc_runs"])
            else Html("<p>No gc run yet.</p>"),
            "gc",
        )
    )
    return page("History", body, links, "history", page=page_number if page_number > 1 else None)


def training_set_html(data: dict[str, Any], links: Links) -> Html:
    manifest = data["manifest"]
    at = data["registry_version"]
    facts = [
        ("File", data["path"]),
        ("Written", data["written_at"]),
        ("Built at registry version", link(links.to("views", keep_as_of=False, as_of=at), f"r{at}")),
        ("Features", ", ".join(manifest.get("features") or [])),
        ("Spine", f"{manifest.get('spine_rows')} rows, columns {', '.join(manifest.get('spine_columns') or [])}"),
    ]
    summary = Html('<dl class="facts">' + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts) + "</dl>")
    reads = [
        [
            link(links.to(f"views/{r['view']}", keep_as_of=False, as_of=at), r["view"]),
            f"v{r['version']}",
            r["kind"],
            r["code_hash"],
            "-" if r.get("data_version") is None else r["data_version"],
        ]
        for r in manifest.get("views") or []
    ]
    body = Html(
        summary
        + section("Views read", table(["View", "Version", "Kind", "Code", "Data version"], reads), "views-read")
        + section("Manifest", Html(f"<pre><code>{esc(json.dumps(manifest, indent=2))}</code></pre>"), "manifest")
    )
    return page(f"Training set {data['id']}", body, links, f"training-sets/{data['id']}")
