"""The msgspec codec arq stores jobs and results with (JSON, so `redis-cli` can read it).

Never pickle. Job functions return an `Outcome` and never raise, but arq itself may store an
exception as a result (a job that expired, or exceeded its tries); such an exception is
stored as `{"exception": <class name>, "message": <str>}`.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, BaseException):
        return {"exception": type(obj).__name__, "message": str(obj)}
    raise NotImplementedError(f"cannot store {type(obj).__name__} in the queue")


_encoder: Final = msgspec.json.Encoder(enc_hook=_enc_hook)
_decoder: Final = msgspec.json.Decoder(dict[str, Any])


def dumps(data: dict[str, Any]) -> bytes:
    return _encoder.encode(data)


def loads(raw: bytes) -> dict[str, Any]:
    return _decoder.decode(raw)
