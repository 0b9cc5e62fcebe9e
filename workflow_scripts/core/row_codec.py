"""Result rows as strict JSON text, for Parquet: bytes and non-finite floats travel tagged.

``{"$b": base64}`` stands for a bytes value and ``{"$f": "inf"}`` (``-inf``, ``nan``) for a float that JSON
cannot hold; :func:`decode_rows` gives back the rows :func:`encode_rows` was given, as tuples.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Sequence
from typing import Any


def _encode_value(v: Any) -> Any:
    if isinstance(v, bytes | bytearray | memoryview):
        return {"$b": base64.b64encode(bytes(v)).decode("ascii")}
    if isinstance(v, float) and not math.isfinite(v):
        return {"$f": repr(v)}  # 'inf', '-inf' or 'nan'
    return v


def _needs_encoding(v: Any) -> bool:
    return isinstance(v, bytes | bytearray | memoryview) or (isinstance(v, float) and not math.isfinite(v))


def _decode_object(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        if "$b" in obj:
            return base64.b64decode(obj["$b"])
        if "$f" in obj:
            return float(obj["$f"])
    raise ValueError(f"unexpected object in encoded rows: {obj!r}")


def encode_rows(rows: Sequence[Sequence[Any]]) -> str:
    """Encode SQLite result rows as strict JSON (bytes and non-finite floats tagged)."""
    out = [
        [_encode_value(v) for v in row] if any(_needs_encoding(v) for v in row) else list(row) for row in rows
    ]
    return json.dumps(out, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def decode_rows(text: str) -> list[tuple]:
    """Inverse of :func:`encode_rows`."""
    return [tuple(row) for row in json.loads(text, object_hook=_decode_object)]
