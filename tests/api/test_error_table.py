"""docs/http-api.md's error table against the codes and statuses the code actually uses."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path
from typing import Final

import hiagent_plugin_sdk.errors as sdk_errors
import pytest

import hiagent_host
import hiagent_shim.protocol as shim_protocol
from hiagent_host import errors
from hiagent_host.errors import HostError

DOC: Final = Path(__file__).resolve().parents[2] / "docs" / "http-api.md"


def _table() -> dict[str, set[int]]:
    """Code → the statuses its row names."""
    section = DOC.read_text(encoding="utf-8").split("## Errors", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| ([\d /]+) \|", section, flags=re.MULTILINE)
    table: dict[str, set[int]] = {}
    for code, statuses in rows:
        assert code not in table, f"{code} has two rows"
        table[code] = {int(s) for s in statuses.split("/")}
    return table


def _constants() -> dict[str, str]:
    return {
        name: value
        for name, value in vars(errors).items()
        if name.isupper() and isinstance(value, str)
    }


def _host_error_classes() -> list[type[HostError]]:
    for module in pkgutil.walk_packages(hiagent_host.__path__, "hiagent_host."):
        if not module.name.endswith("__main__"):  # running it would start the command line
            importlib.import_module(module.name)
    found: list[type[HostError]] = []
    pending = [HostError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending += cls.__subclasses__()
    return found


def test_every_error_constant_has_a_row_and_every_row_a_constant() -> None:
    assert set(_table()) == set(_constants().values())


@pytest.mark.parametrize("cls", _host_error_classes(), ids=lambda c: c.__qualname__)
def test_each_error_class_sends_a_status_its_row_names(cls: type[HostError]) -> None:
    if cls is HostError or ("code" not in vars(cls) and "http_status" in vars(cls)):
        return  # the root and status-only bases (NotFound): subclasses name the code
    assert cls.http_status in _table()[cls.code], cls


def test_invalid_request_has_one_status() -> None:
    assert _table()[errors.INVALID_REQUEST] == {422}


def test_codes_the_shim_sends_are_rows_with_the_shims_statuses() -> None:
    table = _table()
    assert shim_protocol.CANCELLED_HTTP in table[shim_protocol.CANCELLED]
    assert shim_protocol.PROTOCOL_ERROR_HTTP in table[shim_protocol.PROTOCOL_ERROR]
    assert shim_protocol.RESULT_NOT_SERIALIZABLE in table
    assert shim_protocol.RESULT_TOO_LARGE in table


def test_codes_the_sdk_raises_are_rows() -> None:
    table = _table()
    sdk_codes = {v for k, v in vars(sdk_errors).items() if k.isupper() and isinstance(v, str)}
    assert sdk_codes <= set(table)


def test_plugin_unavailable_and_pool_exhausted_promise_retry_after() -> None:
    section = DOC.read_text(encoding="utf-8").split("## Errors", 1)[1]
    for code in (errors.PLUGIN_UNAVAILABLE, errors.POOL_EXHAUSTED):
        row = next(line for line in section.splitlines() if line.startswith(f"| `{code}`"))
        assert "Retry-After" in row
