"""Every route, fuzzed with hostile bodies, query strings and headers: never a 5xx of ours.

Bodies mix the route's own fields (with absurd names and versions, random JSON, JSON nested far
deeper than the limit) with raw bytes and non-object JSON. A dedicated server (its own data:
DeletePackage may hit what it installed), several seeds, a bounded number of examples each.
Only `DownloadFailed` (502: a fetch that failed upstream, by design) may be a 5xx; uris stay on
this machine (file:// or 127.0.0.1).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from hiagent_host.api.routes import OPERATIONS, Operation
from hiagent_host.errors import DOWNLOAD_FAILED
from tests.api.conftest import own_server
from tests.api.support import REQUEST_TIMEOUT_S, LiveServer

SEEDS: Final = (1, 2, 3)
EXAMPLES_PER_SEED: Final = 20
DESIGNED_5XX: Final = frozenset({DOWNLOAD_FAILED})
DEPTHS: Final = (63, 64, 65, 200, 999, 1000, 5000, 100_000)
DEEP: Final = "__DEEP__"  # stands for deeply nested JSON text in a body
LOCAL_URIS: Final = (
    "file:///nonexistent/pkg-1.0-py3-none-any.whl",
    "file:///dev/zero",
    "file:///proc/self/environ",
    "http://user:pw@127.0.0.1:9/pkg-1.0-py3-none-any.whl",
    "ftp://127.0.0.1/x.whl",
    "relative/pkg.whl",
    "file://user:pw@remote/x.whl",
)
KNOWN: Final = {
    "pkg": ["hiagent-plugin-echo", "HiAgent.Plugin_Echo"],
    "version": ["0.1.0", "0.1", "1" * 5000, "0." * 3000 + "1"],
    "plugin": ["echo"],
    "tool": ["echo", "echo_async", "repeat"],
    "filename": ["pkg-1.0-py3-none-any.whl", f"pkg-{'9' * 5000}-py3-none-any.whl"],
    "job_id": ["0" * 32],
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
hostile_text = st.one_of(
    st.text(max_size=40),
    st.integers(min_value=100, max_value=6000).map(lambda n: "9" * n),
    st.integers(min_value=1, max_value=3000).map(lambda n: "é/" * n),
    st.sampled_from(["", "..", "../etc", "a\x00b", " ", "\u2028", "-", "__init__"]),
)


def deep_json(depth: int, kind: str) -> str:
    if kind == "list":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


@st.composite
def field_value(draw: st.DrawFn, name: str) -> Any:
    if name == "uri":
        return draw(
            st.sampled_from(LOCAL_URIS) | st.text(max_size=30).filter(lambda t: ":" not in t)
        )
    choices = [hostile_text, json_values, st.just(DEEP)]
    if name in KNOWN:
        choices.append(st.sampled_from(KNOWN[name]))
    return draw(st.one_of(*choices))


@st.composite
def body(draw: st.DrawFn, op: Operation) -> bytes:
    kind = draw(st.sampled_from(["fields", "fields", "fields", "raw", "json", "deep"]))
    deep = deep_json(draw(st.sampled_from(DEPTHS)), draw(st.sampled_from(["list", "dict"])))
    if kind == "raw":
        return draw(st.binary(max_size=200))
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    if kind == "deep":
        return deep.encode()
    names = [f.name for f in msgspec.structs.fields(op.body)] if _is_struct(op.body) else []
    names += ["input", "cfg", "stream", "timeout_s", "extra"]
    chosen = draw(st.lists(st.sampled_from(names), unique=True, max_size=len(names)))
    fields = {name: draw(field_value(name)) for name in chosen}
    text = json.dumps(fields, ensure_ascii=draw(st.booleans()))
    return text.replace(json.dumps(DEEP), deep).encode("utf-8", "surrogatepass")


def _is_struct(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, msgspec.Struct)


@st.composite
def adapter_request(draw: st.DrawFn) -> tuple[dict[str, str], dict[str, str], bytes]:
    query = {
        name: draw(st.sampled_from(KNOWN[name]) | hostile_text.filter(lambda t: "\x00" not in t))
        for name in draw(
            st.lists(st.sampled_from(["pkg", "version", "plugin", "tool"]), unique=True)
        )
    }
    if draw(st.booleans()):
        query["timeout_s"] = draw(st.sampled_from(["soon", "-1", "nan", "1e400", "0.5"]))
    headers = {}
    if draw(st.booleans()):
        depth = draw(st.sampled_from(DEPTHS[:5]))
        cfg = draw(st.sampled_from([deep_json(depth, "dict"), "{", "[1]", '{"a": 1}', "null"]))
        headers["cfg"] = cfg
    payload = draw(
        st.sampled_from([b"{}", b'{"text": "x"}', b"[", deep_json(2000, "list").encode()])
    )
    return query, headers, payload


@pytest.fixture(scope="module")
def fuzz_server(
    tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path, wheels: dict[str, Path]
) -> Iterator[LiveServer]:
    with own_server(tmp_path_factory.mktemp("fuzz"), wheelhouse, [wheels["echo"]]) as live:
        yield live


def check(response: httpx.Response, what: str) -> None:
    if response.status_code < 500:
        return
    code = None
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        pass
    assert code in DESIGNED_5XX, f"{what}: {response.status_code} {response.text[:300]}"


BODY_ROUTES: Final = [op for op in OPERATIONS if op.method == "POST" and op.body is not None]


@pytest.mark.parametrize("op", BODY_ROUTES, ids=lambda op: op.path)
def test_hostile_bodies_never_get_a_5xx(fuzz_server: LiveServer, op: Operation) -> None:
    with httpx.Client(base_url=fuzz_server.url, timeout=REQUEST_TIMEOUT_S) as http:

        @settings(
            max_examples=EXAMPLES_PER_SEED,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(payload=body(op))
        def fuzz(payload: bytes) -> None:
            headers = {"content-type": "application/json"}
            check(
                http.post(op.path, content=payload, headers=headers), f"{op.path} {payload[:200]!r}"
            )

        for value in SEEDS:
            seed(value)(fuzz)()


def test_hostile_adapter_queries_and_cfg_headers_never_get_a_5xx(fuzz_server: LiveServer) -> None:
    with httpx.Client(base_url=fuzz_server.url, timeout=REQUEST_TIMEOUT_S) as http:

        @settings(
            max_examples=EXAMPLES_PER_SEED * 2,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(request=adapter_request())
        def fuzz(request: tuple[dict[str, str], dict[str, str], bytes]) -> None:
            query, headers, payload = request
            answer = http.post(
                "/v1/RunPluginToolAdapterRuntime", params=query, headers=headers, content=payload
            )
            check(answer, f"adapter {query} {headers}")

        for value in SEEDS:
            seed(value)(fuzz)()


def test_every_get_route_answers_below_500(fuzz_server: LiveServer) -> None:
    with httpx.Client(base_url=fuzz_server.url, timeout=REQUEST_TIMEOUT_S) as http:
        for op in OPERATIONS:
            if op.method == "GET":
                check(http.get(op.path, params={"x": "9" * 5000}), op.path)


@pytest.mark.parametrize("depth", [64, 65, 1000, 100_000])
def test_json_nested_past_the_limit_is_a_422_naming_the_field(
    fuzz_server: LiveServer, depth: int
) -> None:
    call = '{"pkg": "hiagent-plugin-echo", "version": "0.1.0", "plugin": "echo", "tool": "echo",'
    # the body is level 1, `input` level 2: its lists take the levels from 3 to `depth`
    body = f'{call} "input": {{"x": {deep_json(depth - 2, "list")}}}}}'
    with httpx.Client(base_url=fuzz_server.url, timeout=REQUEST_TIMEOUT_S) as http:
        answer = http.post("/v1/RunPluginTool", content=body.encode())
    if depth <= 64:
        assert answer.status_code == 200, answer.text
        return
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "InvalidRequest"
    assert answer.json()["error"]["data"]["field"] in ("input", None)


ROUTES_WITH: Final = {
    "pkg": ("/v1/RunPluginTool", "/v1/GetPackageMetadata", "/v1/DeletePackage"),
    "version": ("/v1/RunPluginTool", "/v1/GetPackageMetadata", "/v1/DeletePackage"),
    "plugin": ("/v1/RunPluginTool", "/v1/RunPluginValidate", "/v1/GetPluginIcon"),
    "tool": ("/v1/RunPluginTool",),
}


@pytest.mark.parametrize(
    ("field", "value"),
    [("version", "1" * 5000), ("pkg", "p" * 5000), ("plugin", "x" * 201), ("tool", "t" * 10_000)],
)
def test_names_and_versions_of_absurd_length_are_a_422_naming_the_field(
    fuzz_server: LiveServer, field: str, value: str
) -> None:
    call = {"pkg": "hiagent-plugin-echo", "version": "0.1.0", "plugin": "echo", "tool": "echo"}
    with httpx.Client(base_url=fuzz_server.url, timeout=REQUEST_TIMEOUT_S) as http:
        for route in ROUTES_WITH[field]:
            answer = http.post(route, json=call | {field: value})
            assert answer.status_code == 422, (route, answer.text)
            error = answer.json()["error"]
            assert (error["code"], error["data"]["field"]) == ("InvalidRequest", field)
        query = call | {field: value}
        adapter = http.post("/v1/RunPluginToolAdapterRuntime", params=query, json={})
        assert adapter.status_code == 422
        assert adapter.json()["error"]["data"]["field"] == field
