"""The head of a file: its first bytes, downloaded to the spool, cut so that it reads as whole lines.

A cut gzip stream cannot be read to its end, so it is inflated here (bounded) and the text is
cut at its last complete line; a cut text file is cut at its last line end (UTF-16 by code units).
The head is then read as any file is (:func:`truagents_import.reading.open_rows`).
"""

from __future__ import annotations

import codecs
import zlib
from pathlib import Path
from typing import Any

import attrs

from truagents_import.errors import FileRejected
from truagents_import.remote.sftp import SFTP_BLOCK_SIZE

__all__ = ["HEAD_BYTES", "Head", "cut_at_line", "download_head"]

#: How much of a file is downloaded.
HEAD_BYTES = 2 << 20
#: How much a cut gzip head is inflated to, at most.
_HEAD_INFLATED = 4 * HEAD_BYTES
_GZIP_MAGIC = b"\x1f\x8b"


@attrs.frozen
class Head:
    """The first bytes of a file in a local file."""

    path: Path
    #: The file is longer than what was downloaded.
    truncated: bool
    #: A cut gzip stream was inflated here (the local file is plain text).
    inflated: bool


def download_head(fs: Any, path: str, local: Path, *, remote: bool) -> Head:
    """Copy the first :data:`HEAD_BYTES` of ``path`` on ``fs`` to ``local``, cut at a line end.

    :raises FileRejected: a cut gzip stream that cannot be inflated (``undecodable``).
    """
    kwargs = {"block_size": SFTP_BLOCK_SIZE} if remote else {}
    with fs.open(path, "rb", **kwargs) as src:
        data = src.read(HEAD_BYTES + 1)
    truncated = len(data) > HEAD_BYTES
    inflated = False
    if truncated:
        data = data[:HEAD_BYTES]
        if data.startswith(_GZIP_MAGIC):
            try:
                data = zlib.decompressobj(wbits=31).decompress(data, _HEAD_INFLATED)
            except zlib.error as exc:
                raise FileRejected("undecodable", f"cannot be decompressed: {exc}") from None
            inflated = True
        data = cut_at_line(data)
    local.write_bytes(data)
    return Head(local, truncated, inflated)


def cut_at_line(data: bytes) -> bytes:
    """Cut a truncated download at its last line end (gzip data is left as it is)."""
    if data.startswith(_GZIP_MAGIC):
        return data
    if data.startswith(codecs.BOM_UTF16_LE):
        return _cut_utf16(data, b"\n\x00")
    if data.startswith(codecs.BOM_UTF16_BE):
        return _cut_utf16(data, b"\x00\n")
    end = data.rfind(b"\n")
    return data[: end + 1] if end > 0 else data


def _cut_utf16(data: bytes, newline: bytes) -> bytes:
    """Cut UTF-16 data after its last newline that starts on a code unit boundary."""
    end = data.rfind(newline)
    while end > 0 and end % 2:
        end = data.rfind(newline, 0, end)
    return data[: end + 2] if end > 0 else data
