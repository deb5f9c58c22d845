"""File loaders: NDJSON, JSON arrays/documents and Parquet (gzip transparently) into staging.

Every file is staged in bounded memory: NDJSON by DuckDB's streaming reader or in chunks of
``CHUNK_BYTES``; JSON arrays and documents by DuckDB's streaming object reader; Parquet by
DuckDB row groups. Only when a JSON array or document is malformed is its text read whole
(to locate the fault and keep the records before it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from identity_analytics.errors import LoadError
from identity_analytics.loaders.formats import FileSource, open_binary
from identity_analytics.loaders.quarantine import QuarantineLog, report_bad
from identity_analytics.loaders.staging import DEMOGRAPHIC_FIELDS, StagedSource, Staging

logger = logging.getLogger(__name__)

#: Bytes of NDJSON handled per chunk on the exact path.
CHUNK_BYTES = 16 << 20


def _file(staged: StagedSource) -> FileSource:
    if not isinstance(staged.source, FileSource):
        raise TypeError(f"not a file source: {_file(staged).label}")
    return staged.source


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ndjson_chunks(source: FileSource) -> Iterator[tuple[pa.Array, pa.Array, list[tuple[int, bytes]]]]:
    """(line numbers, record texts, lines that are not UTF-8) of an NDJSON file, chunk by chunk."""
    first_line = 1
    carry = b""
    try:
        with open_binary(source.path, source.gzip) as stream:
            while True:
                block = stream.read(CHUNK_BYTES)
                data = carry + block if carry else block
                if not data:
                    return
                buffer = np.frombuffer(data, dtype=np.uint8)
                ends = np.flatnonzero(buffer == 10) + 1
                if block:
                    if len(ends) == 0:
                        carry = data
                        continue
                    carry = data[ends[-1] :]
                elif len(ends) == 0 or ends[-1] != len(data):
                    ends = np.append(ends, len(data))
                offsets = np.concatenate(([0], ends)).astype(np.int32)
                count = len(ends)
                numbers = pa.array(np.arange(first_line, first_line + count, dtype=np.int64))
                raw = pa.Array.from_buffers(pa.binary(), count, [None, pa.py_buffer(offsets), pa.py_buffer(data)])
                if first_line == 1 and data.startswith(b"\xef\xbb\xbf"):
                    raw = pa.concat_arrays([pa.array([raw[0].as_py()[3:]], pa.binary()), raw.slice(1)])
                texts, invalid = _as_text(raw, first_line)
                if invalid:
                    keep = pa.array([not bad for bad in _mask(count, first_line, invalid)])
                    numbers, texts = numbers.filter(keep), texts.filter(keep)
                yield numbers, texts, invalid
                first_line += count
                if not block:
                    return
    except (OSError, EOFError) as error:
        raise LoadError(
            f"cannot read {source.label} after line {first_line - 1}: {error}; "
            "the file is truncated or not gzip as its header says",
            source=source.label,
        ) from None


def _mask(count: int, first_line: int, invalid: list[tuple[int, bytes]]) -> list[bool]:
    mask = [False] * count
    for line, _ in invalid:
        mask[line - first_line] = True
    return mask


def _as_text(raw: pa.Array, first_line: int) -> tuple[pa.Array, list[tuple[int, bytes]]]:
    """The chunk as UTF-8 strings, and the lines that are not valid UTF-8."""
    try:
        return raw.cast(pa.string()), []
    except pa.ArrowInvalid:
        invalid = []
        texts: list[str] = []
        for i, value in enumerate(raw.to_pylist()):
            try:
                texts.append(value.decode("utf-8"))
            except UnicodeDecodeError:
                invalid.append((first_line + i, value))
                texts.append("")
        return pa.array(texts, pa.string()), invalid


def _stage_ndjson_exact(staging: Staging, staged: StagedSource, log: QuarantineLog) -> None:
    for numbers, texts, invalid in _ndjson_chunks(_file(staged)):
        for line, value in invalid:
            log.add(_file(staged).label, line, "not valid UTF-8 text", text=value.decode("utf-8", "replace"))
        staged.read += len(invalid)
        staged.quarantined += len(invalid)
        read, bad = staging.exact_arrow(staged.src, numbers, texts, _file(staged).layout)
        staged.read += read
        report_bad(log, staged, bad)


def _stage_json(staging: Staging, staged: StagedSource, log: QuarantineLog) -> None:
    source = _file(staged)
    con = staging.con
    try:
        # Elements are numbered by their insertion order, which this statement must keep.
        con.execute("SET preserve_insertion_order = true")
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _objects AS
            SELECT json::VARCHAR AS record FROM read_json_objects({_sql_literal(str(source.path))},
                format='auto', compression='{"gzip" if source.gzip else "none"}',
                maximum_object_size=67108864)"""
        )
        relation = "(SELECT rowid + 1 AS line, record FROM _objects)"
    except (duckdb.Error, UnicodeDecodeError):
        logger.info("%s is not well-formed JSON; reading it whole to find the fault", source.label)
        _stage_malformed_json(staging, staged, log)
        return
    finally:
        con.execute("SET preserve_insertion_order = false")  # as the Dataset connection runs
    try:
        read, bad = staging.exact(staged.src, relation, source.layout)
    finally:
        con.execute("DROP TABLE IF EXISTS _objects")
    staged.read += read
    report_bad(log, staged, bad)


def _stage_malformed_json(staging: Staging, staged: StagedSource, log: QuarantineLog) -> None:
    """Keep the records before the fault of a malformed JSON file, quarantine the rest."""
    source = _file(staged)
    with open_binary(source.path, source.gzip) as stream:
        text = stream.read().decode("utf-8", "replace").lstrip("\ufeff")
    decoder = json.JSONDecoder()
    records: list[str] = []
    position = len(text) - len(text.lstrip())
    in_array = text.startswith("[", position)
    position += 1 if in_array else 0
    fault: json.JSONDecodeError | None = None
    while True:
        while position < len(text) and text[position] in " \t\r\n,":
            position += 1
        if position >= len(text) or (in_array and text[position] == "]"):
            break
        try:
            value, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError as error:
            fault = error
            break
        records.append(json.dumps(value))
    if records:
        numbers = pa.array(np.arange(1, len(records) + 1, dtype=np.int64))
        read, bad = staging.exact_arrow(staged.src, numbers, pa.array(records, pa.string()), source.layout)
        staged.read += read
        report_bad(log, staged, bad)
    if fault is not None or (in_array and position >= len(text)):
        reason = (
            f"malformed JSON: {fault.msg.removesuffix(' at')} (line {fault.lineno} column {fault.colno}); "
            "the rest of the file could not be read"
            if fault is not None
            else "malformed JSON (the array is not closed)"
        )
        log.add(source.label, len(records) + 1, reason, text=text[position : position + 200])
        staged.read += 1
        staged.quarantined += 1


def _stage_parquet(staging: Staging, staged: StagedSource, log: QuarantineLog) -> None:
    source = _file(staged)
    try:
        names = pq.read_schema(source.path).names
    except (OSError, pa.ArrowException) as error:
        raise LoadError(
            f"cannot read {source.label}: not a readable Parquet file ({error})", source=source.label
        ) from None
    wanted = {
        "identity": ("id", "state", "updated_at", "traits", "metadata_public"),
        "combined": ("identity", "demographics"),
        "demographics": ("identity_id", *DEMOGRAPHIC_FIELDS),
    }[source.layout]
    present = [n for n in wanted if n in names]
    packed = ", ".join(f'"{n}" := "{n}"' for n in present) or "missing := NULL"
    relation = (
        f"(SELECT file_row_number + 1 AS line, to_json(struct_pack({packed}))::VARCHAR AS record "
        f"FROM read_parquet({_sql_literal(str(source.path))}, file_row_number=true))"
    )
    try:
        read, bad = staging.exact(staged.src, relation, source.layout)
    except (duckdb.Error, UnicodeDecodeError) as error:
        raise LoadError(
            f"cannot read {source.label}: {type(error).__name__} while reading Parquet", source=source.label
        ) from None
    staged.read += read
    report_bad(log, staged, bad)


@contextlib.contextmanager
def _decompressed(source: FileSource) -> Iterator[FileSource]:
    """The source itself, or for gzip a verified plain copy in a temporary file.

    Python's gzip checks the stream's CRC and length, so a truncated or corrupt file raises
    here instead of yielding the records before the damage as if they were all.
    """
    if not source.gzip:
        yield source
        return
    with tempfile.NamedTemporaryFile(prefix="identity-analytics-", suffix=".tmp") as plain:
        try:
            with open_binary(source.path, compressed=True) as stream:
                shutil.copyfileobj(stream, plain, 1 << 20)
        except (OSError, EOFError, zlib.error) as error:
            raise LoadError(
                f"cannot read {source.label}: the gzip stream is truncated or corrupt ({type(error).__name__}); "
                "re-export or re-download the file",
                source=source.label,
            ) from None
        plain.flush()
        yield dataclasses.replace(source, path=Path(plain.name), gzip=False, name=source.label)


def stage_file(staging: Staging, staged: StagedSource, log: QuarantineLog, *, exact: bool = False) -> None:
    """Stage one file, on the fast path when it can be and on the exact path otherwise."""
    if not isinstance(staged.source, FileSource):
        raise TypeError(f"not a file source: {_file(staged).label}")
    with _decompressed(staged.source) as source:
        _stage(staging, dataclasses.replace(staged, source=source), log, exact=exact, result=staged)


def _stage(staging: Staging, staged: StagedSource, log: QuarantineLog, *, exact: bool, result: StagedSource) -> None:
    try:
        _stage_plain(staging, staged, log, exact=exact)
    finally:
        result.read, result.quarantined, result.exact = staged.read, staged.quarantined, staged.exact


def _stage_plain(staging: Staging, staged: StagedSource, log: QuarantineLog, *, exact: bool) -> None:
    source = _file(staged)
    staged.read = staged.quarantined = 0
    if source.format == "ndjson" and not exact:
        read = staging.fast_ndjson(staged.src, str(source.path), source.gzip, source.layout)
        if read is not None:
            staged.read, staged.exact = read, False
            return
        logger.info("%s holds records to quarantine; re-reading it line by line", source.label)
    staged.exact = True
    if source.format == "ndjson":
        _stage_ndjson_exact(staging, staged, log)
    elif source.format == "json":
        _stage_json(staging, staged, log)
    else:
        _stage_parquet(staging, staged, log)
