"""A plugin's stream as an async iterator the shim can pace and close."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Iterator
from typing import Any, Final

from hiagent_shim.report import note

# Closing a cancelled stream's generator runs plugin code (its `finally`); it gets this long.
STREAM_CLOSE_S: Final = 1.0

_DONE: Final = object()


async def awaited(value: Any) -> Any:
    """`value`, awaited if it is awaitable (plugins' classmethods may be either)."""
    return await value if inspect.isawaitable(value) else value


def async_items(produced: Any) -> AsyncIterator[Any]:
    """A stream function's result as an async iterator; sync iterators run on the executor."""
    if hasattr(produced, "__aiter__"):
        return produced.__aiter__()  # type: ignore[no-any-return]
    if hasattr(produced, "__iter__") and not isinstance(produced, str | bytes | dict):
        return ThreadedIterator(iter(produced))
    raise TypeError(f"a stream must be an async iterator, not {type(produced).__name__}")


class ThreadedIterator:
    """A sync iterator driven on the default executor, one item per hop."""

    def __init__(self, items: Iterator[Any]) -> None:
        self._items = items

    def __aiter__(self) -> ThreadedIterator:
        return self

    async def __anext__(self) -> Any:
        item = await asyncio.to_thread(next, self._items, _DONE)
        if item is _DONE:
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        close = getattr(self._items, "close", None)
        if close is not None:
            try:
                close()
            except ValueError:
                pass  # still running in a worker thread: it is abandoned there


async def close_items(items: AsyncIterator[Any]) -> None:
    """Close a stream's iterator (runs the plugin's `finally`), bounded by STREAM_CLOSE_S."""
    aclose = getattr(items, "aclose", None)
    if aclose is None:
        return
    try:
        await asyncio.wait_for(aclose(), STREAM_CLOSE_S)
    except (Exception, asyncio.CancelledError) as exc:  # noqa: BLE001 - plugin code, reported
        note(f"closing a stream raised {type(exc).__name__}: {exc}")
