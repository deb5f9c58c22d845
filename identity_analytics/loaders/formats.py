"""Input files: which paths a request names, what format each is in, how to open it."""

from __future__ import annotations

import glob
import gzip
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from identity_analytics.errors import LoadError

Format = Literal["ndjson", "json", "parquet"]
PathSpec = str | Path | Sequence[str | Path]

_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
_SNIFF_LIMIT = 1 << 24
#: Extensions that always mean one JSON record per line, whatever the first line looks like.
_NDJSON_SUFFIXES = frozenset({"ndjson", "jsonl", "ldjson"})


@dataclass(frozen=True)
class FileSource:
    """One input file and how to read it."""

    path: Path
    format: Format
    gzip: bool
    layout: Literal["identity", "combined", "demographics"] = "identity"
    name: str | None = None

    @property
    def label(self) -> str:
        """The name used in quarantine rows and error messages (the file the caller named)."""
        return self.name if self.name is not None else str(self.path)


def resolve_paths(spec: PathSpec, what: str) -> list[Path]:
    """The files named by a path, a glob pattern or a sequence of them, in a stable order."""
    items: Sequence[str | Path] = [spec] if isinstance(spec, str | Path) else list(spec)
    if not items:
        raise LoadError(f"no {what} file given; pass a path, a glob pattern or a list of paths")
    paths: list[Path] = []
    for item in items:
        text = str(item)
        if any(ch in text for ch in "*?[") and not Path(text).exists():
            matches = sorted(glob.glob(text))
            if not matches:
                raise LoadError(f"no {what} file matches {text!r}", source=text)
            paths.extend(Path(m) for m in matches)
        else:
            paths.append(Path(text))
    return paths


def open_binary(path: Path, compressed: bool) -> BinaryIO:
    """The file's (decompressed) bytes."""
    raw = path.open("rb")
    if compressed:
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    return raw


def _unreadable(path: Path, error: BaseException) -> LoadError:
    reason = error.strerror if isinstance(error, OSError) and error.strerror else type(error).__name__
    return LoadError(
        f"cannot read {path}: {reason}; check the path and that the file is a readable "
        "NDJSON, JSON or Parquet file (optionally gzip-compressed)",
        source=str(path),
    )


def _first_line(stream: BinaryIO) -> bytes:
    head = stream.readline(_SNIFF_LIMIT)
    while head and not head.strip():
        head = stream.readline(_SNIFF_LIMIT)
    return head.lstrip(b"\xef\xbb\xbf").strip()


def _layout(
    first: object, kind: Literal["identities", "demographics"]
) -> Literal["identity", "combined", "demographics"]:
    if kind == "demographics":
        return "demographics"
    if isinstance(first, dict) and "identity" in first and "id" not in first:
        return "combined"
    return "identity"


def inspect_file(path: Path, kind: Literal["identities", "demographics"]) -> FileSource:
    """Format, compression and record layout of one file; :class:`LoadError` if unreadable.

    Parquet and gzip are recognised by their magic bytes. ``.ndjson``/``.jsonl`` files are
    NDJSON. Otherwise a file starting with ``[`` is a JSON array (a Kratos list page), a
    ``.json`` file whose first line is not a complete JSON value is one or more (pretty
    printed) JSON documents, and anything else is NDJSON.
    """
    try:
        if not path.is_file():
            raise FileNotFoundError(2, "no such file", str(path))
        with path.open("rb") as raw:
            magic = raw.read(4)
        compressed = magic[:2] == _GZIP_MAGIC
        if magic == _PARQUET_MAGIC:
            return FileSource(path, "parquet", False, _parquet_layout(path, kind))
        with open_binary(path, compressed) as stream:
            head = _first_line(stream)
    except (OSError, EOFError, gzip.BadGzipFile, pa.ArrowException) as error:
        raise _unreadable(path, error) from None
    suffix = path.name.removesuffix(".gz").rsplit(".", 1)[-1].lower()
    if suffix in _NDJSON_SUFFIXES:
        try:
            first = json.loads(head) if head else None
        except ValueError:
            first = None
        return FileSource(path, "ndjson", compressed, _layout(first, kind))
    if head.startswith(b"["):
        return FileSource(path, "json", compressed, _layout(_first_array_element(head), kind))
    try:
        first = json.loads(head) if head else None
    except ValueError:
        if head.startswith(b"{") and path.name.removesuffix(".gz").endswith(".json"):
            return FileSource(path, "json", compressed, _layout_of_document(path, compressed, kind))
        first = None
    return FileSource(path, "ndjson", compressed, _layout(first, kind))


def _first_array_element(head: bytes) -> object:
    text = head.decode("utf-8", "replace")[1:].lstrip()
    try:
        value, _ = json.JSONDecoder().raw_decode(text)
    except ValueError:
        return None
    return value


def _layout_of_document(
    path: Path, compressed: bool, kind: Literal["identities", "demographics"]
) -> Literal["identity", "combined", "demographics"]:
    with open_binary(path, compressed) as stream:
        text = io.TextIOWrapper(stream, encoding="utf-8", errors="replace").read(_SNIFF_LIMIT)
    try:
        value, _ = json.JSONDecoder().raw_decode(text.lstrip("\ufeff \t\r\n"))
    except ValueError:
        value = None
    return _layout(value, kind)


def _parquet_layout(
    path: Path, kind: Literal["identities", "demographics"]
) -> Literal["identity", "combined", "demographics"]:

    names = set(pq.read_schema(path).names)
    if kind == "demographics":
        return "demographics"
    return "combined" if "identity" in names and "id" not in names else "identity"
