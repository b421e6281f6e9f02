"""The HTTP feature server and ``fk.Client``, against a real ``featurekit serve`` on loopback."""

from __future__ import annotations

import json
import logging
import math
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pyarrow as pa
import pytest

import featurekit as fk
from featurekit.server import problems
from featurekit.timestamps import to_micros
from featurekit.wire import PACKED, unpack_floats
from tests.conftest import RepoFactory, trips_table, ts
from tests.server_helpers import (
    AT,
    CONFIG,
    INT64_MAX,
    READ_ONLY,
    READ_WRITE,
    SERVER_FEATURES,
    TRIPS,
    Server,
    items_table,
    start_server,
    write_tokens,
)

TYPED = [
    "typed:exact",
    "typed:single",
    "typed:odd",
    "typed:big",
    "typed:seen",
    "typed:day",
    "typed:price",
    "typed:tags",
    "typed:scores",
    "typed:info",
    "typed:flag",
    "typed:name",
]
AUTH = {"Authorization": f"Bearer {READ_WRITE}"}
AT_TEXT = "2026-01-05T00:00:00Z"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Server]]:
    repo = RepoFactory(tmp_path_factory.mktemp("served"))(
        SERVER_FEATURES,
        data={"data/trips.parquet": trips_table(TRIPS), "data/items.parquet": items_table()},
        config=CONFIG,
    )
    write_tokens(repo)
    with fk.FeatureStore(repo, progress=False) as store:
        store.apply()
        store.materialize(ts(0), ts(5))
    server = start_server(repo)
    yield repo, server
    server.stop()


@pytest.fixture(scope="module")
def store(served: tuple[Path, Server]) -> Iterator[fk.FeatureStore]:
    with fk.FeatureStore(served[0], progress=False) as opened:
        yield opened


@pytest.fixture(scope="module")
def url(served: tuple[Path, Server]) -> str:
    return served[1].url


@pytest.fixture
def client(url: str) -> Iterator[fk.Client]:
    with fk.Client(url, token=READ_WRITE) as opened:
        yield opened


@pytest.fixture(params=["packed", "json"])
def any_client(url: str, request: pytest.FixtureRequest) -> Iterator[fk.Client]:
    """fk.Client as it is (the packed form) and reading today's JSON, as from a server before the packed form."""
    with fk.Client(url, token=READ_WRITE) as opened:
        if request.param == "json":
            opened._headers["Accept"] = "application/json"
        yield opened


def post(
    url: str, path: str, body: object, token: str | None = READ_WRITE, accept: str | None = None, **kwargs: object
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if accept is not None:
        headers["Accept"] = accept
    return httpx.post(f"{url}{path}", json=body, headers=headers, timeout=10, **kwargs)  # type: ignore[arg-type]


def assert_problem(response: httpx.Response, status: int, error: str, *fragments: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert body["error"] == error
    for fragment in fragments:
        assert fragment in body["detail"], body["detail"]
    return body


def same_values(a: list[object], b: list[object]) -> bool:
    """Equal lists where NaN equals NaN (at any depth)."""
    return json.dumps(a, default=str, allow_nan=True) == json.dumps(b, default=str, allow_nan=True)


# -- open routes ------------------------------------------------------------------------------


def test_health_and_readiness_need_no_token(url: str) -> None:
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{url}/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}


def test_openapi_describes_every_route(url: str) -> None:
    spec = httpx.get(f"{url}/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    assert set(spec["paths"]) == {
        "/v1/features",
        "/v1/push",
        "/get-online-features",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    }
    lookup = spec["paths"]["/v1/features"]["post"]
    assert lookup["requestBody"]["content"]["application/json"]["schema"]["required"] == ["entities"]
    assert "application/problem+json" in lookup["responses"]["400"]["content"]
    assert set(lookup["responses"]["200"]["content"]) == {"application/json", PACKED}


def test_an_unknown_route_is_a_problem(url: str) -> None:
    assert_problem(httpx.get(f"{url}/v2/nothing"), 404, "RequestError", "no such route")
    assert_problem(httpx.get(f"{url}/v1/features", headers=AUTH), 405, "RequestError", "method not allowed")


# -- the client equals the in-process API ----------------------------------------------------


@pytest.mark.parametrize(
    ("entities", "features", "request_values"),
    [
        ({"driver_id": [1, 2, 3, 99]}, ["driver_stats", "trip_risk"], {"trip_km": [3.2, 11.0, 0.0, 1.0]}),
        ({"item_id": [1, 2, INT64_MAX, 5]}, TYPED, None),
        ({"item_id": [1, 2, INT64_MAX, 5] * 3}, TYPED, None),  # float columns long enough to be packed
        ({"driver_id": [1, 2, 3, 99] * 3}, ["driver_stats", "trip_risk"], {"trip_km": [3.2, 11.0, 0.0, 1.0] * 3}),
        ([{"driver_id": 2}], ["driver_stats:avg_trip_km"], None),
    ],
)
def test_client_answers_equal_the_store_column_by_column_and_dtype_by_dtype(
    any_client: fk.Client, store: fk.FeatureStore, entities: object, features: list[str], request_values: object
) -> None:
    remote = any_client.online_features(entities, features, request=request_values, at=AT)  # type: ignore[arg-type]
    local = store.online_features(entities, features, request=request_values, at=AT)  # type: ignore[arg-type]
    assert remote.schema == local.schema
    assert list(remote.columns) == list(local.columns)
    for name in local.columns:
        assert same_values(remote.columns[name], local.columns[name]), name
        assert [type(v) for v in remote.columns[name]] == [type(v) for v in local.columns[name]], name
    assert remote.to_arrow().schema == local.to_arrow().schema
    for view in local.rows:
        assert remote.status(view) == local.status(view)
        assert remote.expired_at(view) == local.expired_at(view)
        assert remote.rows[view].events == local.rows[view].events
    assert remote.to_pandas().dtypes.to_dict() == local.to_pandas().dtypes.to_dict()
    assert remote.at_us == local.at_us == to_micros(AT)  # the lookup instant, in both forms on the wire


def test_one_client_serves_many_threads_with_the_answers_of_the_store(
    client: fk.Client, store: fk.FeatureStore
) -> None:
    # One Client shared by 8 threads (each on its own connection), two feature lists in turn: the
    # client's per-schema cache and the event-time cache are filled while others read them.
    lists = [["driver_stats"], ["driver_window", "driver_stats:conv_rate"]]
    keys = {"driver_id": [1, 2, 3, 99]}
    at = ts(5)
    expected = [store.online_features(keys, features, at=at) for features in lists]

    def work(index: int) -> list[bool]:
        seen = []
        for call in range(20):
            features = lists[(index + call) % 2]
            remote = client.online_features(keys, features, at=at)
            local = expected[(index + call) % 2]
            seen.append(
                remote.schema == local.schema
                and remote.to_dict() == local.to_dict()
                and all(remote.rows[view].events == local.rows[view].events for view in local.rows)
                and all(remote.expired_at(view) == local.expired_at(view) for view in local.rows)
            )
        return seen

    with ThreadPoolExecutor(8) as pool:
        results = [ok for seen in pool.map(work, range(8)) for ok in seen]
    assert results == [True] * 160


def test_the_client_reconnects_after_the_server_closed_an_idle_connection(client: fk.Client) -> None:
    first = client.online_features({"driver_id": [1]}, ["driver_stats"], at=AT).to_dict()
    time.sleep(6)  # past uvicorn's keep-alive timeout (5 s): the server has closed the connection
    assert client.online_features({"driver_id": [1]}, ["driver_stats"], at=AT).to_dict() == first


def test_an_unreachable_server_is_a_storage_error() -> None:
    with (
        fk.Client("http://127.0.0.1:9", token=READ_WRITE) as nowhere,
        pytest.raises(fk.StorageError, match="cannot reach"),
    ):
        nowhere.online_features({"driver_id": [1]}, ["driver_stats"])


def test_window_features_come_back_as_in_process(client: fk.Client, store: fk.FeatureStore) -> None:
    keys, at = {"driver_id": [1, 2, 3, 99]}, ts(5)  # window lookups start at the last materialized end
    remote = client.online_features(keys, ["driver_window", "driver_stats:conv_rate"], at=at)
    local = store.online_features(keys, ["driver_window", "driver_stats:conv_rate"], at=at)
    assert remote.schema == local.schema
    assert remote.to_dict() == local.to_dict()
    assert remote.columns["distance_km_last_n_7d"][0] == [2.0, 1.0]  # newest first
    assert remote.status("driver_window") == local.status("driver_window")


def test_full_names_and_pins_go_through(client: fk.Client, store: fk.FeatureStore) -> None:
    features = ["driver_stats@v1:conv_rate", "driver_stats:conv_rate"]
    remote = client.online_features({"driver_id": [1]}, features, at=AT, full_names=True)
    assert remote.to_dict() == store.online_features({"driver_id": [1]}, features, at=AT, full_names=True).to_dict()


def test_typed_json_on_the_wire(url: str) -> None:
    answer = post(
        url,
        "/v1/features",
        {"features": TYPED, "entities": {"item_id": [1, 2, INT64_MAX]}, "at": "2026-01-05T00:00:00Z"},
    )
    assert answer.status_code == 200, answer.text
    assert '"item_id":[1,2,9223372036854775807]' in answer.text  # never through a float
    body = answer.json()
    values = body["features"]
    assert values["item_id"] == [1, 2, INT64_MAX]
    assert values["exact"] == [0.1 + 0.2, 1e-300, 2.0**53 + 2]
    assert values["big"] == [INT64_MAX, 0, 5]
    assert values["seen"] == ["2026-01-02T00:30:00.000000Z", "2026-01-03T00:00:00.000007Z", None]
    assert values["day"] == ["2026-01-01", None, "1999-12-31"]
    assert values["price"] == ["12.50", "-0.01", None]
    assert values["info"][0] == {"a": 1.0, "when": "2026-01-02T00:00:00.000000Z"}
    assert values["odd"] == [None, None, None]
    assert values["scores"] == [[1.5, None], None, [None]]
    assert values["name"] == ["naïve ☃", "", None]
    reasons = {(e["column"], e["row"], tuple(e["path"])): e["value"] for e in body["not_finite"]}
    assert reasons == {
        ("odd", 0, ()): "NaN",
        ("odd", 1, ()): "Infinity",
        ("odd", 2, ()): "-Infinity",
        ("scores", 0, (1,)): "NaN",
        ("scores", 2, (0,)): "Infinity",
        ("info", 1, ("a",)): "NaN",
    }
    columns = {c["name"]: c for c in body["metadata"]["columns"]}
    assert columns["item_id"] == {"name": "item_id", "dtype": "int64", "role": "entity_key"}
    assert columns["single"] == {
        "name": "single",
        "dtype": "float",
        "role": "feature",
        "view": "typed",
        "version": 1,
        "feature": "single",
    }
    assert body["views"]["typed@v1"]["statuses"] == ["found", "found", "found"]
    assert body["at"] == "2026-01-05T00:00:00.000000Z"


def test_the_packed_form_on_the_wire(url: str, store: fk.FeatureStore) -> None:
    # Asked for by the Accept header: float columns as packed doubles, times as integer microseconds.
    answer = post(
        url,
        "/v1/features",
        {"features": TYPED, "entities": {"item_id": [1, 2, INT64_MAX] * 3}, "at": "2026-01-05T00:00:00Z"},
        accept=PACKED,
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith(PACKED)
    body = answer.json()
    values = body["features"]
    assert values["item_id"] == [1, 2, INT64_MAX] * 3
    assert unpack_floats(values["exact"], "exact") == [0.1 + 0.2, 1e-300, 2.0**53 + 2] * 3
    assert values["single"]["nulls"] == [1, 4, 7]
    odd = unpack_floats(values["odd"], "odd")
    assert [math.isnan(v) for v in odd] == [True, False, False] * 3
    assert odd[1:3] == [math.inf, -math.inf]
    assert values["seen"] == ["2026-01-02T00:30:00.000000Z", "2026-01-03T00:00:00.000007Z", None] * 3
    assert values["scores"] == [[1.5, None], None, [None]] * 3  # nested floats stay typed JSON
    reasons = {(e["column"], e["row"], tuple(e["path"])): e["value"] for e in body["not_finite"]}
    assert reasons == {
        **{("scores", row, (1,)): "NaN" for row in (0, 3, 6)},
        **{("scores", row, (0,)): "Infinity" for row in (2, 5, 8)},
        **{("info", row, ("a",)): "NaN" for row in (1, 4, 7)},
    }
    local = store.online_features({"item_id": [1, 2, INT64_MAX] * 3}, TYPED, at=datetime(2026, 1, 5, tzinfo=UTC))
    assert body["views"]["typed@v1"]["event_us"] == local.rows["typed@v1"].events
    assert set(body["views"]["typed@v1"]) == {"event_us", "ttl_us"}  # statuses follow from them
    assert body["at_us"] == 1_767_571_200_000_000
    assert "at" not in body
    validator = pytest.importorskip("jsonschema_rs")  # (schemathesis's validator)
    documented = httpx.get(f"{url}/openapi.json").json()["paths"]["/v1/features"]["post"]["responses"]["200"]
    validator.validate(documented["content"][PACKED]["schema"], body)  # the body is as /openapi.json says
    # a column shorter than PACK_ROWS stays JSON text in the packed form too
    one = {"features": ["typed:exact"], "entities": {"item_id": [1]}, "at": AT_TEXT}
    short = post(url, "/v1/features", one, accept=PACKED)
    assert short.json()["features"]["exact"] == [0.1 + 0.2]
    # without the Accept header, the same lookup is today's typed JSON (test_typed_json_on_the_wire)
    plain = post(url, "/v1/features", one)
    assert plain.headers["content-type"].startswith("application/json")
    assert plain.json()["features"]["exact"] == [0.1 + 0.2]
    # packed only where the header prefers it to JSON (most specific range, case-insensitive)
    for accept, packed in [
        (f"{PACKED};q=0, application/json", False),
        (f"application/json;q=0.5, {PACKED.upper()};q=0.9", True),
        (f"{PACKED};q=0.5, application/json", False),
        (f"{PACKED}, */*", False),  # equal qualities: JSON, the default form
        (f"application/*;q=0.1, {PACKED};q=0.2", True),
        (f"{PACKED};q=abc", False),
        ("*/*", False),
    ]:
        answer = post(url, "/v1/features", one, accept=accept)
        assert answer.headers["content-type"].startswith(PACKED if packed else "application/json"), accept


def test_an_error_is_problem_json_in_the_packed_form_too(url: str) -> None:
    answer = post(
        url,
        "/v1/features",
        {"features": ["driver_stats:nope"], "entities": {"driver_id": [1]}},
        accept=PACKED,
    )
    assert_problem(answer, 400, "UnknownNameError", "nope")


def test_the_client_restores_nan_and_infinities(any_client: fk.Client) -> None:
    response = any_client.online_features(
        {"item_id": [1, 2, INT64_MAX]}, ["typed:odd", "typed:scores", "typed:info"], at=AT
    )
    odd = response.columns["odd"]
    assert math.isnan(odd[0])
    assert odd[1:] == [math.inf, -math.inf]
    assert math.isnan(response.columns["scores"][0][1])
    assert response.columns["scores"][2] == [math.inf]
    assert math.isnan(response.columns["info"][1]["a"])


def test_a_timestamp_key_can_be_sent_as_text(client: fk.Client, store: fk.FeatureStore) -> None:
    at_text = "2026-01-05T00:00:00Z"
    assert client.online_features({"driver_id": [1]}, ["driver_stats"], at=at_text).to_dict() == (
        store.online_features({"driver_id": [1]}, ["driver_stats"], at=AT).to_dict()
    )


# -- bad input: 4xx problem+json, never a 500 -----------------------------------------------


@pytest.mark.parametrize(
    ("keys", "fragments"),
    [
        ({"item_id": ["1"]}, ["'item_id'", "str '1'", "int64"]),
        ({"item_id": [1.0]}, ["'item_id'", "float 1.0", "int64"]),
        ({"item_id": [True]}, ["'item_id'", "int64"]),
        ({"item_id": [2**63]}, ["'item_id'", "int64"]),
        ({"item_id": [None]}, ["null 'item_id'"]),
        ({"driver": [1]}, ["no key 'item_id'"]),
    ],
)
def test_a_key_of_the_wrong_type_is_a_400_naming_the_key_and_type(url: str, keys: object, fragments: list[str]) -> None:
    answer = post(url, "/v1/features", {"features": ["typed:exact"], "entities": keys})
    body = assert_problem(answer, 400, answer.json()["error"], *fragments)
    assert body["error"] in ("SchemaError", "DataError")


def test_an_unknown_feature_gets_a_did_you_mean(url: str, client: fk.Client) -> None:
    answer = post(url, "/v1/features", {"features": ["driver_stats:conv_rat"], "entities": {"driver_id": [1]}})
    assert_problem(answer, 400, "UnknownNameError", "did you mean 'conv_rate'")
    with pytest.raises(fk.UnknownNameError, match="did you mean 'driver_stats'"):
        client.online_features({"driver_id": [1]}, ["driver_stat"])


def test_a_body_over_the_limit_is_a_413_before_it_is_parsed(url: str) -> None:
    body = {"features": ["driver_stats"], "entities": {"driver_id": list(range(40))}, "request": {"x": "y" * 30_000}}
    assert_problem(post(url, "/v1/features", body), 413, "RequestError", "max_body_bytes")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while reading
        yield b'{"features": ["driver_stats"], "entities": {"driver_id": [1]}, "pad": "'
        for _ in range(30):
            yield b"x" * 1000

    answer = httpx.post(f"{url}/v1/features", content=chunks(), headers=AUTH, timeout=10)
    assert_problem(answer, 413, "RequestError", "20,000")


def test_too_many_entities_is_a_413(url: str) -> None:
    answer = post(url, "/v1/features", {"features": ["driver_stats"], "entities": {"driver_id": list(range(51))}})
    assert_problem(answer, 413, "RequestError", "51 entities", "max_entities")


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"not json", "not valid JSON"),
        (b'{"features": ["driver_stats"], "entities": {"driver_id": [NaN]}}', "NaN, which is not JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b"", "no body"),
        pytest.param(b"[" * 10_000 + b"]" * 10_000, "not valid JSON", id="deep"),
        (
            b'{"features": ["trip_risk"], "entities": {"driver_id": [1]}, "request": {"trip_km": [1e400]}}',
            "out of the range",
        ),
        (b'{"features": [], "entities": {"driver_id": [1]}}', "non-empty list"),
        (b'{"features": ["driver_stats"], "entities": {"driver_id": 1}}', "array of key values"),
        (b'{"features": ["driver_stats"], "entities": {"driver_id": [1]}, "sql": "drop"}', "not among them"),
        (b'{"features": ["driver_stats"], "entities": {"driver_id": [1]}, "at": "yesterday"}', "ISO-8601"),
        (b'{"features": ["../../etc/passwd"], "entities": {"driver_id": [1]}}', "feature"),
    ],
)
def test_bad_bodies_are_400s(url: str, content: bytes, fragment: str) -> None:
    answer = httpx.post(f"{url}/v1/features", content=content, headers=AUTH, timeout=10)
    assert answer.status_code in (400, 413), answer.text
    assert fragment in answer.json()["detail"]


def test_an_unexpected_error_is_a_500_with_an_id_and_no_internals(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="featurekit.server"):
        status, body = problems.from_bug(RuntimeError("secret path /srv/x.db"), "/v1/features")
    parsed = json.loads(body)
    assert status == 500
    assert "secret" not in body.decode()
    assert parsed["error_id"] in caplog.text
    assert "secret path" in caplog.text  # the traceback goes to the log, under the id
    error = problems.to_error(500, body)
    assert isinstance(error, fk.ServerError)
    assert parsed["error_id"] in str(error)


# -- auth ---------------------------------------------------------------------------------


def test_no_token_or_a_wrong_one_is_a_401(url: str) -> None:
    body = {"features": ["driver_stats"], "entities": {"driver_id": [1]}}
    missing = post(url, "/v1/features", body, token=None)
    assert_problem(missing, 401, "AuthError", "needs a token")
    assert missing.headers["www-authenticate"] == "Bearer"
    assert_problem(post(url, "/v1/features", body, token="x" * 25), 401, "AuthError", "not valid")
    weird = httpx.post(f"{url}/v1/features", json=body, headers={"Authorization": READ_WRITE})
    assert_problem(weird, 401, "AuthError", "Bearer")
    assert READ_WRITE not in weird.text
    assert_problem(httpx.get(f"{url}/metrics"), 401, "AuthError")


def test_a_read_only_token_reads_but_cannot_push(url: str, store: fk.FeatureStore) -> None:
    assert post(
        url, "/v1/features", {"features": ["driver_stats"], "entities": {"driver_id": [1]}}, READ_ONLY
    ).is_success
    before = store.online_features({"driver_id": [8]}, ["driver_stats"], at=AT).to_dict()
    rows = {
        "driver_id": [8],
        "event_timestamp": ["2026-01-03T00:00:00Z"],
        "created": ["2026-01-03T00:00:00Z"],
        "accepted": [1],
        "offered": [1],
        "distance_km": [5.0],
    }
    assert_problem(post(url, "/v1/push", {"view": "driver_stats", "rows": rows}, READ_ONLY), 403, "AuthError", "write")
    assert store.online_features({"driver_id": [8]}, ["driver_stats"], at=AT).to_dict() == before
    with fk.Client(url, token=READ_ONLY) as reader, pytest.raises(fk.AuthError, match="scope write"):
        reader.push("driver_stats", rows)


# -- push ---------------------------------------------------------------------------------


def test_push_is_served_at_once_and_a_retry_does_not_duplicate(client: fk.Client, store: fk.FeatureStore) -> None:
    rows = trips_table([(7, ts(3), ts(3), 3, 4, 7.5)])
    first = client.push("driver_stats", rows, to="online_and_offline")
    assert (first.view, first.rows, first.online_rows) == ("driver_stats", 1, 1)
    again = client.push("driver_stats", rows, to="online_and_offline")
    assert again.data_version == first.data_version  # the same rows were committed once
    looked = client.online_features({"driver_id": [7]}, ["driver_stats"], at=AT).to_dict()
    assert looked == {"driver_id": [7], "conv_rate": [0.75], "avg_trip_km": [7.5]}
    spine = pa.table({"driver_id": [7], "event_timestamp": pa.array([AT], pa.timestamp("us", tz="UTC"))})
    assert store.training_set(spine, ["driver_stats:avg_trip_km"]).to_arrow().column("avg_trip_km").to_pylist() == [7.5]


def test_push_errors_name_the_problem(client: fk.Client, url: str) -> None:
    with pytest.raises(fk.UnknownNameError, match="did you mean 'driver_stats'"):
        client.push("driver_stat", {"driver_id": [1]})
    answer = post(url, "/v1/push", {"view": "driver_stats", "rows": {"driver_id": [1]}})
    assert_problem(answer, 400, "SchemaError", "lack source columns")
    bad_time = {"driver_id": [1], "event_timestamp": ["soon"]}
    assert_problem(
        post(url, "/v1/push", {"view": "driver_stats", "rows": bad_time}), 400, "SchemaError", "'event_timestamp'"
    )
    assert_problem(
        post(url, "/v1/push", {"view": "driver_stats", "rows": {"a": [1]}, "to": "disk"}), 400, "RequestError", "'to'"
    )


# -- Feast compatibility ------------------------------------------------------------------


def test_the_feast_route_answers_in_feasts_shape(url: str) -> None:
    body = {"entities": {"driver_id": [1, 3, 99]}, "features": ["driver_stats:conv_rate", "driver_stats:avg_trip_km"]}
    answer = post(url, "/get-online-features", body)
    assert answer.status_code == 200, answer.text
    parsed = answer.json()
    assert parsed["metadata"]["feature_names"] == ["driver_id", "conv_rate", "avg_trip_km"]
    keys, conv, _ = parsed["results"]
    assert keys == {
        "values": [1, 3, 99],
        "statuses": ["PRESENT"] * 3,
        "event_timestamps": ["1970-01-01T00:00:00Z"] * 3,
    }
    # at now, every row of the test data is past the 7-day TTL: featurekit applies it online
    assert conv["statuses"] == ["OUTSIDE_MAX_AGE", "OUTSIDE_MAX_AGE", "NOT_FOUND"]
    assert conv["values"] == [None, None, None]
    assert conv["event_timestamps"][0] == "2026-01-03T00:00:00.000000Z"


def test_the_feast_route_takes_full_names(url: str, store: fk.FeatureStore) -> None:
    fresh = items_table().slice(0, 1).to_pylist()[0] | {
        "item_id": 10,
        "event_timestamp": datetime.now(UTC) - timedelta(hours=1),
    }
    store.push("typed", pa.Table.from_pylist([fresh], schema=items_table().schema))  # Feast's route looks up at now
    body = {"entities": {"item_id": [10]}, "features": ["typed:odd", "typed:exact"], "full_feature_names": True}
    parsed = post(url, "/get-online-features", body).json()
    assert parsed["metadata"]["feature_names"] == ["item_id", "typed__odd", "typed__exact"]
    assert parsed["results"][1] | {"event_timestamps": None} == {
        "values": ["NaN"],  # Feast's form of a non-finite float
        "statuses": ["PRESENT"],
        "event_timestamps": None,
    }
    assert parsed["results"][2]["values"] == [0.1 + 0.2]


def test_feature_sets_by_name_on_both_routes(url: str, client: fk.Client, store: fk.FeatureStore) -> None:
    keys, request = {"driver_id": [1, 2]}, {"trip_km": [3.2, 11.0]}
    local = store.online_features(keys, "fraud_v1", request=request, at=AT)
    assert client.online_features(keys, "fraud_v1", request=request, at=AT).to_dict() == local.to_dict()
    body = {"feature_set": "fraud_v1", "entities": keys, "request": request, "at": "2026-01-05T00:00:00Z"}
    assert post(url, "/v1/features", body).json()["features"] == local.to_dict()
    feast = post(url, "/get-online-features", {"entities": keys, "features": [], "feature_service": "fraud_v1"})
    assert feast.status_code == 400  # trip_risk needs its request input, which Feast's body cannot carry
    assert "trip_km" in feast.json()["detail"]
    unknown = post(url, "/v1/features", {"feature_set": "fraud_v2x", "entities": keys})
    assert_problem(unknown, 400, "UnknownNameError", "fraud_v1")
    both = post(url, "/v1/features", {"feature_set": "fraud_v1", "features": ["driver_stats"], "entities": keys})
    assert_problem(both, 400, "RequestError", "either 'features'")


# -- metrics ------------------------------------------------------------------------------

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (\S+)$')


def parse_metrics(text: str) -> dict[str, float]:
    """Every sample of a Prometheus text exposition, checking each line's syntax."""
    samples = {}
    for line in text.splitlines():
        if line.startswith(("# HELP ", "# TYPE ")):
            continue
        match = _SAMPLE.match(line)
        assert match is not None, line
        samples[line.rsplit(" ", 1)[0]] = float(match.group(4))
    return samples


def test_metrics_parse_and_count_requests(url: str) -> None:
    def scrape() -> dict[str, float]:
        answer = httpx.get(f"{url}/metrics", headers=AUTH)
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
        return parse_metrics(answer.text)

    key = 'featurekit_http_requests_total{route="/v1/features",status="200"}'
    before = scrape().get(key, 0)
    for _ in range(3):
        assert post(
            url,
            "/v1/features",
            {"features": ["trip_risk"], "entities": {"driver_id": [1]}, "request": {"trip_km": [1.0]}},
        ).is_success
    after = scrape()
    assert after[key] == before + 3
    assert after['featurekit_http_request_duration_seconds_count{route="/v1/features",status="200"}'] >= 3
    assert after['featurekit_entities_per_request_bucket{route="/v1/features",le="1"}'] >= 3
    assert after["featurekit_online_read_seconds_count"] >= 3
    assert after["featurekit_on_demand_seconds_count"] >= 3
    assert 'featurekit_feature_freshness_seconds{view="driver_stats@v1",source="served"}' in after
    assert 'featurekit_feature_freshness_seconds{view="typed@v1",source="committed"}' in after
    assert after["featurekit_workers_reporting"] == 1


# -- fuzzing ------------------------------------------------------------------------------


def test_schemathesis_finds_no_500_and_no_schema_violation(url: str, tmp_path: Path) -> None:
    """Generated requests from the server's own spec (last in this module: it may push)."""
    pytest.importorskip("schemathesis")
    command = [
        sys.executable,  # the CLI of the schemathesis installed beside this Python (PATH may not have it)
        "-m",
        "schemathesis.cli",
        "run",
        f"{url}/openapi.json",
        "--header",
        f"Authorization: Bearer {READ_WRITE}",
        "--checks",
        "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance",
        "--max-examples",
        "40",
        "--seed",
        "1",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "passed" in result.stdout
