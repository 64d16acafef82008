"""CBOR (RFC 8949), the subset smithy-rpc-v2-cbor uses: what botocore may speak to CloudWatch.

Why this file exists: moto has no rpc-v2-cbor CloudWatch; the sandbox's own endpoint
(:mod:`.cloudwatch`) decodes requests and encodes answers with :func:`cbor_encode`/:func:`cbor_decode`.
"""

from __future__ import annotations

import io
import struct
from typing import Any


class _Timestamp(float):
    """Epoch seconds, encoded as CBOR tag 1 (the only tag botocore understands)."""


def _cbor_head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes([(major << 5) | n])
    if n < 1 << 8:
        return bytes([(major << 5) | 24, n])
    if n < 1 << 16:
        return bytes([(major << 5) | 25]) + n.to_bytes(2, "big")
    if n < 1 << 32:
        return bytes([(major << 5) | 26]) + n.to_bytes(4, "big")
    return bytes([(major << 5) | 27]) + n.to_bytes(8, "big")


def cbor_encode(value: object) -> bytes:
    """Encode None/bool/int/float/str/bytes/list/dict/:class:`_Timestamp` as CBOR."""
    out = io.BytesIO()
    _cbor_write(out, value)
    return out.getvalue()


def _cbor_write(out: io.BytesIO, value: object) -> None:
    if value is None:
        out.write(b"\xf6")
    elif value is True:
        out.write(b"\xf5")
    elif value is False:
        out.write(b"\xf4")
    elif isinstance(value, _Timestamp):
        out.write(b"\xc1")
        out.write(b"\xfb" + struct.pack(">d", float(value)))
    elif isinstance(value, int):
        out.write(_cbor_head(0, value) if value >= 0 else _cbor_head(1, -1 - value))
    elif isinstance(value, float):
        out.write(b"\xfb" + struct.pack(">d", value))
    elif isinstance(value, str):
        data = value.encode()
        out.write(_cbor_head(3, len(data)) + data)
    elif isinstance(value, bytes):
        out.write(_cbor_head(2, len(value)) + value)
    elif isinstance(value, (list, tuple)):
        out.write(_cbor_head(4, len(value)))
        for item in value:
            _cbor_write(out, item)
    elif isinstance(value, dict):
        out.write(_cbor_head(5, len(value)))
        for key, item in value.items():
            _cbor_write(out, str(key))
            _cbor_write(out, item)
    else:
        raise TypeError(f"cannot CBOR-encode {type(value).__name__}")


class _CborError(ValueError):
    pass


def cbor_decode(data: bytes) -> Any:
    """Decode one CBOR data item (definite and indefinite lengths; tag 1 → epoch seconds)."""
    value, pos = _cbor_read(data, 0)
    if pos != len(data):
        raise _CborError("trailing bytes after the CBOR item")
    return value


def _cbor_need(data: bytes, pos: int, n: int) -> None:
    if pos + n > len(data):
        raise _CborError("truncated CBOR")


def _cbor_read(data: bytes, pos: int) -> tuple[Any, int]:
    _cbor_need(data, pos, 1)
    initial = data[pos]
    pos += 1
    major, info = initial >> 5, initial & 0x1F
    if major == 7:
        if info == 20:
            return False, pos
        if info == 21:
            return True, pos
        if info in (22, 23):
            return None, pos
        sizes = {25: (2, ">e"), 26: (4, ">f"), 27: (8, ">d")}
        if info in sizes:
            n, fmt = sizes[info]
            _cbor_need(data, pos, n)
            return struct.unpack(fmt, data[pos : pos + n])[0], pos + n
        raise _CborError(f"unsupported CBOR simple value {info}")
    if info == 31:  # indefinite length
        if major in (2, 3):
            chunks: list[Any] = []
            while True:
                _cbor_need(data, pos, 1)
                if data[pos] == 0xFF:
                    pos += 1
                    break
                chunk, pos = _cbor_read(data, pos)
                chunks.append(chunk)
            return ("" if major == 3 else b"").join(chunks), pos
        if major == 4:
            items: list[Any] = []
            while True:
                _cbor_need(data, pos, 1)
                if data[pos] == 0xFF:
                    return items, pos + 1
                item, pos = _cbor_read(data, pos)
                items.append(item)
        if major == 5:
            mapping: dict[Any, Any] = {}
            while True:
                _cbor_need(data, pos, 1)
                if data[pos] == 0xFF:
                    return mapping, pos + 1
                key, pos = _cbor_read(data, pos)
                mapping[key], pos = _cbor_read(data, pos)
        raise _CborError("indefinite length on a type that has none")
    if info < 24:
        n = info
    elif info <= 27:
        size = 1 << (info - 24)
        _cbor_need(data, pos, size)
        n = int.from_bytes(data[pos : pos + size], "big")
        pos += size
    else:
        raise _CborError(f"reserved CBOR additional information {info}")
    if major == 0:
        return n, pos
    if major == 1:
        return -1 - n, pos
    if major in (2, 3):
        _cbor_need(data, pos, n)
        raw = data[pos : pos + n]
        return (raw.decode() if major == 3 else raw), pos + n
    if major == 4:
        arr = []
        for _ in range(n):
            item, pos = _cbor_read(data, pos)
            arr.append(item)
        return arr, pos
    if major == 5:
        obj: dict[Any, Any] = {}
        for _ in range(n):
            key, pos = _cbor_read(data, pos)
            obj[key], pos = _cbor_read(data, pos)
        return obj, pos
    # major 6: a tag; tag 1 is epoch time, others pass their value through
    value, pos = _cbor_read(data, pos)
    return value, pos
