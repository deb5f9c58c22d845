"""Input files: which paths a request names, what format each is in, how to open it."""

from __future__ import annotations

import glob
import gzip
import json
import shutil
import tempfile
import zlib
from collections.abc import Iterator, Sequence
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
#: Bytes read first from an ``.ndjson``/``.jsonl`` file: its first complete line usually gives
#: the layout, and only when none of these lines is an object is the whole sniff read.
_QUICK_SNIFF = 1 << 16
_BOM = b"\xef\xbb\xbf"
#: JSON's insignificant whitespace.
_WHITESPACE = " \t\r\n"
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
    """The files named by a path, a glob pattern or a sequence of them, in a stable order.

    Patterns may be recursive (``dir/**/*.ndjson`` matches at every depth); directories a
    pattern matches are skipped.
    """
    items: Sequence[str | Path] = [spec] if isinstance(spec, str | Path) else list(spec)
    if not items:
        raise LoadError(f"no {what} file given; pass a path, a glob pattern or a list of paths")
    paths: list[Path] = []
    for item in items:
        text = str(item)
        if any(ch in text for ch in "*?[") and not Path(text).exists():
            matches = sorted(m for m in glob.glob(text, recursive=True) if not Path(m).is_dir())
            if not matches:
                raise LoadError(f"no {what} file matches {text!r}", source=text)
            paths.extend(Path(m) for m in matches)
        else:
            paths.append(Path(text))
    return paths


def open_binary(path: Path, compressed: bool) -> BinaryIO:
    """The file's (decompressed) bytes."""
    if compressed:
        return gzip.open(path, "rb")  # type: ignore[return-value]  # closes the file with it
    return path.open("rb")


def _unreadable(path: Path, error: BaseException) -> LoadError:
    reason = error.strerror if isinstance(error, OSError) and error.strerror else type(error).__name__
    return LoadError(
        f"cannot read {path}: {reason}; check the path and that the file is a readable "
        "NDJSON, JSON or Parquet file (optionally gzip-compressed)",
        source=str(path),
    )


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

    Parquet and gzip are recognised by their magic bytes (a gzip stream may hold Parquet).
    ``.ndjson``/``.jsonl`` files are NDJSON. Otherwise a file starting with ``[`` is a JSON
    array (a Kratos list page); a ``.json`` file whose first line is not a complete JSON
    value is one or more (pretty printed) JSON documents, unless the first document is
    malformed and a later line is a complete object (NDJSON with a bad first line); and
    anything else is NDJSON. The layout comes from the first record that is an object.
    """
    if path.is_dir():
        raise LoadError(
            f"cannot read {path}: it is a directory; pass a glob pattern for the files in it, "
            f"such as '{path / '*.parquet'}' or '{path / '**' / '*.ndjson'}'",
            source=str(path),
        )
    try:
        if not path.is_file():
            raise FileNotFoundError(2, "no such file", str(path))
        with path.open("rb") as raw:
            magic = raw.read(4)
        compressed = magic[:2] == _GZIP_MAGIC
        if magic == _PARQUET_MAGIC:
            return FileSource(path, "parquet", False, _parquet_layout(path, kind))
        suffix = path.name.removesuffix(".gz").rsplit(".", 1)[-1].lower()
        with open_binary(path, compressed) as stream:
            limit = _QUICK_SNIFF if suffix in _NDJSON_SUFFIXES else _SNIFF_LIMIT
            head = stream.read(limit)
            cut = len(head) == limit  # the file may go on past the head
            head = head.removeprefix(_BOM)
            if compressed and head.startswith(_PARQUET_MAGIC):
                return FileSource(path, "parquet", True, _gzipped_parquet_layout(head, stream, kind))
            if suffix in _NDJSON_SUFFIXES:
                complete = head[: head.rfind(b"\n") + 1] if cut else head
                first = _first_object_line(complete.decode("utf-8", "replace"))
                if first is not None:
                    return FileSource(path, "ndjson", compressed, _layout(first, kind))
                head += stream.read(_SNIFF_LIMIT - len(head))
    except (OSError, EOFError, zlib.error, pa.ArrowException) as error:
        raise _unreadable(path, error) from None
    text = head.decode("utf-8", "replace")
    if suffix in _NDJSON_SUFFIXES:
        return FileSource(path, "ndjson", compressed, _layout(_first_object_line(text), kind))
    body = text.lstrip(_WHITESPACE)
    if body.startswith("["):
        return FileSource(path, "json", compressed, _layout(_first_array_object(body), kind))
    if body.startswith("{") and suffix == "json" and not _parses(next(_lines(text), "")):
        document = _first_document(body)
        if document is not None or _first_object_line(text) is None:  # the first line is not one
            return FileSource(path, "json", compressed, _layout(document, kind))
    return FileSource(path, "ndjson", compressed, _layout(_first_object_line(text), kind))


def _lines(text: str) -> Iterator[str]:
    """The non-blank lines of the text, lazily (without copying the rest of the text)."""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end + 1
        line = text[start:end]
        start = end
        if line.strip(_WHITESPACE):
            yield line


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):  # nested too deeply for Python's parser: not a record here
        return False
    return True


def _first_object_line(text: str) -> dict[str, object] | None:
    """The first line of NDJSON text that is a JSON object (None if none is, within the text)."""
    for line in _lines(text):
        try:
            value = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(value, dict):
            return value
    return None


def _first_array_object(body: str) -> object:
    """The first element of a JSON array (text from its ``[``) that is an object, parsing up to a fault."""
    decoder = json.JSONDecoder()
    position = 1
    while True:
        while position < len(body) and body[position] in _WHITESPACE + ",":
            position += 1
        if position >= len(body) or body[position] == "]":
            return None
        try:
            value, position = decoder.raw_decode(body, position)
        except (ValueError, RecursionError):
            return None
        if isinstance(value, dict):
            return value


def _first_document(body: str) -> object:
    """The first JSON document of the text, or None if it is malformed (or longer than the text)."""
    try:
        value, _ = json.JSONDecoder().raw_decode(body)
    except (ValueError, RecursionError):
        return None
    return value


def _gzipped_parquet_layout(
    head: bytes, stream: BinaryIO, kind: Literal["identities", "demographics"]
) -> Literal["identity", "combined", "demographics"]:
    """The layout of gzip-compressed Parquet, from a decompressed copy (Parquet's footer is at its end)."""
    with tempfile.TemporaryFile(prefix="identity-analytics-") as plain:
        plain.write(head)
        shutil.copyfileobj(stream, plain, 1 << 20)
        plain.seek(0)
        return _layout_of_parquet_columns(pq.read_schema(plain).names, kind)


def _parquet_layout(
    path: Path, kind: Literal["identities", "demographics"]
) -> Literal["identity", "combined", "demographics"]:
    return _layout_of_parquet_columns(pq.read_schema(path).names, kind)


def _layout_of_parquet_columns(
    names: Sequence[str], kind: Literal["identities", "demographics"]
) -> Literal["identity", "combined", "demographics"]:
    if kind == "demographics":
        return "demographics"
    return "combined" if "identity" in names and "id" not in names else "identity"
