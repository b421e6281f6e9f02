"""The web UI in a real headless Chromium (Debian's, driven by Playwright) against a real ``featurekit ui``.

Every page of the demo repo opens; links lead from a view to its version diff, to lineage and to
a training set; what the pages show equals the Python API's answers (and their ``.json`` twins);
the pages pass basic accessibility checks and fit a phone's width. Screenshots go to
``tests/artefacts/ui``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import featurekit as fk
from featurekit.manifest import load_manifest
from tests.ui_helpers import (
    ARTEFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    IMAGE,
    SCRIPT,
    TOKEN,
    DemoUi,
    hostile_store,
    require_chromium,
    start_ui,
)

pytestmark = pytest.mark.slow

PAGES = [
    "views",
    "views?q=conv",
    "views/driver_stats",
    "views/driver_activity",
    "views/trip_risk",
    "views/driver_stats/diff?old=1&new=2",
    "lineage",
    "history",
    "training-sets/1",
    "views?as_of=1",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    try:
        yield opened
    finally:
        context.close()


@pytest.fixture(scope="module")
def store(ui_demo: DemoUi) -> Iterator[fk.FeatureStore]:
    with fk.FeatureStore(ui_demo.repo, progress=False) as opened:
        yield opened


def twin(ui_demo: DemoUi, path: str) -> Any:
    base, _, query = path.partition("?")
    response = httpx.get(f"{ui_demo.url}/{base}.json" + (f"?{query}" if query else ""), timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def shot(page: Any, name: str) -> None:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTEFACTS / f"{name}.png"), full_page=True)


def test_every_page_opens_and_is_screenshotted(ui_demo: DemoUi, page: Any) -> None:
    for path in PAGES:
        response = page.goto(f"{ui_demo.url}/{path}")
        assert response.status == 200, path
        assert page.locator("h1").count() == 1, path
        shot(page, re.sub(r"[^a-z0-9]+", "-", path))


def test_the_views_page_equals_the_api(ui_demo: DemoUi, page: Any, store: fk.FeatureStore) -> None:
    page.goto(f"{ui_demo.url}/views")
    rows = page.locator("main table tbody tr")
    shown = {rows.nth(i).locator("td").first.inner_text(): rows.nth(i) for i in range(rows.count())}
    infos = {i.name: i for i in store.list_views()}
    assert set(shown) == set(infos)
    for name, row in shown.items():
        cells = row.locator("td")
        assert cells.nth(2).inner_text() == f"v{infos[name].version.version}"
        for feature in infos[name].version.features:
            assert feature in cells.nth(4).inner_text()
    data = twin(ui_demo, "views")
    assert [v["view"] for v in data["views"]] == list(infos)
    assert data["registry_version"] == store.registry.head_commit()
    stats = next(v for v in data["views"] if v["view"] == "driver_stats")
    assert stats["owner"] == "rides-ml"
    assert stats["tags"] == {"team": "rides"}
    assert stats["features"] == [{"name": "conv_rate", "dtype": "double"}, {"name": "avg_trip_km", "dtype": "double"}]
    last = store.show("driver_stats").materialization
    assert last is not None
    fresh = stats["freshness"]
    assert fresh["last_materialization"]["registry_version"] == last.commit_id
    assert fresh["watermark"] == last.watermark.isoformat()  # type: ignore[union-attr]
    assert fresh["last_materialization"]["duration_s"] > 0
    assert fresh["newest_event"] < "2026-02-20"  # the newest event committed lies before the window end
    assert "newest event " + fresh["newest_event"] in shown["driver_stats"].locator("td").nth(7).inner_text()


def test_search_by_feature_name(ui_demo: DemoUi, page: Any) -> None:
    page.goto(f"{ui_demo.url}/views")
    page.fill("#q", "km_per")
    page.press("#q", "Enter")
    page.wait_for_url(re.compile(r"q=km_per"))
    names = page.locator("main table tbody tr td:first-child").all_inner_texts()
    assert names == ["driver_daily"]
    assert [v["view"] for v in twin(ui_demo, "views?q=km_per")["views"]] == ["driver_daily"]


def test_from_a_view_to_its_diff_lineage_and_a_training_set(ui_demo: DemoUi, page: Any, store: fk.FeatureStore) -> None:
    page.goto(f"{ui_demo.url}/views")
    page.click("text=driver_stats")
    assert page.locator("h1").inner_text() == "driver_stats"
    versions = page.locator("#versions table tbody tr")
    assert versions.count() == len(store.registry.versions("driver_stats")) == 2
    page.click("#code-v1 summary")
    code = page.locator("#code-v1 pre").inner_text()
    assert code.strip() == store.registry.version("driver_stats", 1).source_text.strip()
    page.click("#versions >> text=diff")
    page.wait_for_url(re.compile(r"/views/driver_stats/diff\?old=1&new=2"))
    assert page.locator("pre.diff").inner_text().strip() == store.diff("driver_stats", 1, 2).strip()
    assert page.locator("pre.diff .add").count() >= 1
    shot(page, "diff-after-click")
    page.click("nav >> text=Lineage")
    page.wait_for_url(re.compile(r"/lineage$"))
    graph = twin(ui_demo, "lineage")
    labels = {n["label"] for n in graph["nodes"]}
    assert {"driver_stats", "trip_risk", "rides.parquet", "data/trips.parquet"} <= labels
    assert {"from": "view:driver_stats", "to": "view:trip_risk"} in graph["edges"]
    assert {"from": "view:driver_stats", "to": "training_set:1"} in graph["edges"]
    page.click("svg.lineage a[href*='training-sets/1']")
    page.wait_for_url(re.compile(r"/training-sets/1$"))
    record = store.registry.training_sets()[0]
    assert page.locator("dl.facts dd").first.inner_text() == record.path
    written = load_manifest(record.path).to_dict()
    assert twin(ui_demo, "training-sets/1")["manifest"] == written
    reads = page.locator("#views-read tbody tr td:first-child").all_inner_texts()
    assert reads == [v["view"] for v in written["views"]]


def test_a_view_page_shows_its_materializations_and_online_tables(
    ui_demo: DemoUi, page: Any, store: fk.FeatureStore
) -> None:
    page.goto(f"{ui_demo.url}/views/driver_stats")
    data = twin(ui_demo, "views/driver_stats")
    every = [m for v in store.registry.versions("driver_stats") for m in store.registry.materializations(v.id)]
    assert data["materializations_total"] == len(every) == page.locator("#materializations tbody tr").count()
    assert [m["registry_version"] for m in data["materializations"]] == sorted(m.commit_id for m in every)
    assert page.locator("svg.timeline rect").count() == len(every)
    tables = {t["table"] for t in data["online"]["tables"]}
    assert tables == {"driver_stats__v1", "driver_stats__v2"} & set(store.online.tables())
    assert page.locator("#online tbody tr").count() == len(tables)


def test_a_view_page_shows_the_profile_and_its_diff_the_drift_the_api_has(
    ui_demo: DemoUi, page: Any, store: fk.FeatureStore
) -> None:
    """The panels read the demo's real materializations' stored profiles (and the second visit the kept ones)."""
    profile = store.profile("driver_stats")
    for _ in range(2):
        page.goto(f"{ui_demo.url}/views/driver_stats")
        columns = page.locator("#profile .profile-column")
        assert columns.locator("h3").all_inner_texts() == list(profile.columns)
        for name, column in profile.columns.items():
            shown = columns.filter(has=page.locator("h3", has_text=name)).first
            assert shown.locator("p").inner_text().startswith(f"{column.rows} rows, {column.nulls} nulls")
            bins = shown.locator("svg.histogram rect.bin")
            assert bins.count() == (len(column.histogram) if column.histogram else 0)
            if column.histogram:
                assert shown.locator("svg.histogram").get_attribute("aria-label") == (
                    f"Histogram of {name}: {len(column.histogram)} bins"
                )
    report = store.drift(reference="driver_stats@v1", current="driver_stats@v2")
    page.goto(f"{ui_demo.url}/views/driver_stats/diff?old=1&new=2")
    rows = page.locator("#drift table tbody tr")
    assert rows.count() == len(report.features)
    cells = [r.locator("td").all_inner_texts()[:3] for r in rows.all()]
    assert cells == [[f.feature, f.kind, f.status] for f in report.features]


def test_history_lists_every_commit_and_as_of_travels_back(ui_demo: DemoUi, page: Any, store: fk.FeatureStore) -> None:
    page.goto(f"{ui_demo.url}/history")
    commits = store.registry.commits()
    rows = page.locator("main table tbody tr")
    assert rows.count() == len(commits)
    assert rows.first.locator("td").nth(3).inner_text() == commits[-1].summary
    rows.last.locator("a").click()  # registry version 1: the first apply
    page.wait_for_url(re.compile(r"as_of=1"))
    assert "as of 1" in page.locator(".as-of").inner_text()
    old = {v["view"]: v["version"] for v in twin(ui_demo, "views?as_of=1")["views"]}
    assert old == {n: a.version.version for n, a in store.registry.active(1).items()}
    assert old["driver_stats"] == 1
    assert page.locator("main table tbody tr", has_text="driver_stats").locator("td").nth(2).inner_text() == "v1"
    page.click("text=driver_stats")  # links keep the moment
    assert "as_of=1" in page.url
    assert twin(ui_demo, "views/driver_stats?as_of=1")["version"] == 1


def _headings_in_order(page: Any) -> list[int]:
    levels: list[int] = page.eval_on_selector_all("h1, h2, h3, h4, h5, h6", "els => els.map(e => +e.tagName[1])")
    return levels


def test_accessibility_basics_on_every_page(ui_demo: DemoUi, page: Any) -> None:
    for path in PAGES:
        page.goto(f"{ui_demo.url}/{path}")
        assert page.locator("img:not([alt])").count() == 0, path
        unlabelled = page.eval_on_selector_all(
            "svg", "els => els.filter(e => !e.getAttribute('aria-label') && !e.querySelector('title')).length"
        )
        assert unlabelled == 0, path
        levels = _headings_in_order(page)
        assert levels[0] == 1, path
        assert all(b <= a + 1 for a, b in itertools.pairwise(levels)), (path, levels)
        assert page.eval_on_selector("html", "e => e.lang") == "en"
        for field in page.locator("input:not([type=hidden]), select").all():
            ident = field.get_attribute("id")
            assert ident, path
            assert page.locator(f"label[for='{ident}']").count() == 1, path


def test_the_main_links_are_reachable_by_keyboard(ui_demo: DemoUi, page: Any) -> None:
    page.goto(f"{ui_demo.url}/views")
    focused = []
    for _ in range(5):
        page.keyboard.press("Tab")
        focused.append(page.evaluate("document.activeElement.textContent.trim()"))
    assert focused == ["Skip to the content", "Views", "Lineage", "History", "JSON"]
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")  # back on "Lineage"
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/lineage$"))
    assert page.locator("h1").inner_text() == "Lineage"


def test_pages_fit_a_phone_width(ui_demo: DemoUi, browser: Any) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True)
    phone = context.new_page()
    try:
        for path in PAGES:
            phone.goto(f"{ui_demo.url}/{path}")
            width = phone.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
            assert width[0] <= width[1], (path, width)
            if path in ("views", "views/driver_stats"):
                shot(phone, "phone-" + path.replace("/", "-"))
    finally:
        context.close()


def test_hostile_strings_render_as_text_and_no_script_runs(
    tmp_path_factory: pytest.TempPathFactory, browser: Any
) -> None:
    repo = hostile_store(tmp_path_factory.mktemp("ui-hostile"))
    server = start_ui(repo, "--no-auth")
    context = browser.new_context()
    try:
        page = context.new_page()
        for path in ("views", "views/hostile", "views/hostile_set", "lineage", "history"):
            assert page.goto(f"{server.url}/{path}").status == 200, path
            assert page.evaluate("typeof window.__pwned") == "undefined", path
            assert page.locator("main script, main img").count() == 0, path
            # The same HTML without the server's Content-Security-Policy: escaping alone keeps it inert.
            page.set_content(httpx.get(f"{server.url}/{path}", timeout=30).text)
            assert page.evaluate("typeof window.__pwned") == "undefined", path
            assert page.locator("script, img").count() == 0, path
        page.goto(f"{server.url}/views/hostile")
        text = page.locator("main").inner_text()
        assert SCRIPT in text  # docstring, tags and code, shown as the text they are
        assert IMAGE in text  # the owner
        page.click("#code-v1 summary")
        code = page.locator("#code-v1 pre").inner_text()
        assert f'marker = "{SCRIPT}"' in code
        shot(page, "hostile-view")
    finally:
        context.close()
        server.stop()


def test_with_a_token_every_page_is_401_without_it(ui_demo: DemoUi, browser: Any) -> None:
    server = start_ui(ui_demo.repo, token=TOKEN)
    context = browser.new_context()
    try:
        for path in [*PAGES, "views.json", "lineage.json", "history.json", "views/driver_stats.json"]:
            bare = httpx.get(f"{server.url}/{path}", timeout=30)
            assert bare.status_code == 401, path
            wrong = httpx.get(f"{server.url}/{path}", headers={"Authorization": "Bearer wrong-token-0123456789"})
            assert wrong.status_code == 401, path
            good = httpx.get(f"{server.url}/{path}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
            assert good.status_code == 200, path
        page = context.new_page()
        assert page.goto(f"{server.url}/views").status == 401
        page.fill("#token", TOKEN)  # the sign-in form sets an HttpOnly cookie
        with page.expect_navigation():
            page.click("form.login button")
        assert page.url.endswith("/views")
        assert page.locator("h1").inner_text() == "Views"
        assert page.goto(f"{server.url}/views/driver_stats").status == 200
    finally:
        context.close()
        server.stop()
