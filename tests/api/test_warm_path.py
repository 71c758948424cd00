"""The warm call's path, traced: the files it runs through, and its error made once.

A warm `RunPluginTool` (the package installed, its process running) is traced in-process with
`sys.setprofile`: every host function it enters is recorded by file. The files must be those
docs/architecture.md walks through ("A warm call, file by file"); a new hop on the hot path
fails here until the walk says where it goes. A failing call must build its error once on the
way back (the wire's error made the pool's, never rebuilt by the layers above).
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, Final

import httpx
import pytest

from hiagent_host.app import create_app
from hiagent_host.config import load_config
from tests.api.conftest import running_app
from tests.api.support import INSTALL_TIMEOUT_S

pytestmark = pytest.mark.anyio

ROOT: Final = Path(__file__).resolve().parent.parent.parent
HOST: Final = ROOT / "hiagent_host"
# The files a warm call runs through (docs/architecture.md, "A warm call, file by file").
CARRIERS: Final = frozenset(
    {
        "api/middleware.py",
        "api/endpoints.py",
        "api/tools.py",
        "pool/pool.py",
        "pool/child.py",
        "rpc/peer.py",
    }
)
HELPERS: Final = frozenset(
    {
        "api/requests.py",
        "api/responses.py",
        "api/metrics.py",
        "logs.py",
        "redact.py",
        "pool/secrets.py",
        "pool/pipes.py",
        "rpc/pending.py",
        "rpc/framing.py",
        "rpc/busypoll.py",
    }
)


@contextmanager
def host_calls() -> Iterator[Counter[tuple[str, str]]]:
    """(host file, function) → how many times the block entered it."""
    entered: Counter[tuple[str, str]] = Counter()
    prefix = f"{HOST}/"

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code.co_filename.startswith(prefix):
            entered[frame.f_code.co_filename.removeprefix(prefix), frame.f_code.co_name] += 1

    sys.setprofile(profile)
    try:
        yield entered
    finally:
        sys.setprofile(None)


async def _installed(http: httpx.AsyncClient, wheel: Path) -> dict[str, Any]:
    body = {"uri": wheel.as_uri(), "filename": wheel.name}
    answer = await http.post("/v1/InstallPackage", json=body, timeout=INSTALL_TIMEOUT_S)
    meta: dict[str, Any] = answer.json()["data"]
    return {"pkg": meta["name"], "version": meta["version"], "plugin": "echo"}


async def test_a_warm_call_runs_through_the_files_the_walk_names(
    app_config: Path, wheels: dict[str, Path]
) -> None:
    async with running_app(create_app(load_config(app_config))) as http:
        call = await _installed(http, wheels["echo"]) | {
            "tool": "echo_async",
            "input": {"text": "hi"},
        }
        for _ in range(2):  # started, then warm
            assert (await http.post("/v1/RunPluginTool", json=call)).json()["error"] is None
        with host_calls() as entered:
            answer = await http.post("/v1/RunPluginTool", json=call)
    assert answer.json() == {"data": {"text": "hi"}, "error": None}
    files = {name for name, _ in entered}
    assert files == CARRIERS | HELPERS, sorted(files)
    walk = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    for name in sorted(CARRIERS | HELPERS):
        assert f"`{name}`" in walk, f"docs/architecture.md does not walk through {name}"


async def test_a_failed_call_makes_its_error_once(
    app_config: Path, wheels: dict[str, Path]
) -> None:
    async with running_app(create_app(load_config(app_config))) as http:
        call = await _installed(http, wheels["echo"]) | {"tool": "repeat"}
        ok = call | {"input": {"text": "a", "count": 2}}
        assert (await http.post("/v1/RunPluginTool", json=ok)).json()["data"] == "aa"
        bad = call | {"input": {"text": "a", "count": "many"}}
        with host_calls() as entered:
            answer = await http.post("/v1/RunPluginTool", json=bad)
        error = answer.json()["error"]
    assert answer.status_code == 422, error
    assert error["code"] == "InvalidToolInput"
    made = {(name, function): n for (name, function), n in entered.items() if name == "errors.py"}
    assert made == {("errors.py", "__init__"): 1, ("errors.py", "to_dict"): 1}, made  # made, sent
