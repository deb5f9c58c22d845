"""File loaders: NDJSON, JSON arrays/documents and Parquet (gzip transparently) into staging.

Every file is staged in bounded memory: NDJSON by DuckDB's streaming reader or in chunks of
``CHUNK_BYTES``; JSON arrays and documents by DuckDB's streaming object reader; Parquet by
DuckDB row groups. Only when a JSON array or document is malformed or not UTF-8 is its text
read whole (to quarantine each bad element on its own and keep all the others).
"""

from __future__ import annotations

import contextlib
import dataclasses
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
from identity_analytics.loaders.json_elements import json_elements, printable
from identity_analytics.loaders.quarantine import QuarantineLog, report_bad
from identity_analytics.loaders.staging import DEMOGRAPHIC_FIELDS, Layout, StagedSource, Staging
from identity_analytics.schema import sql_literal

logger = logging.getLogger(__name__)

#: Bytes of NDJSON handled per chunk on the exact path.
CHUNK_BYTES = 16 << 20

_BOM = b"\xef\xbb\xbf"
#: JSON's insignificant whitespace.
_WHITESPACE = " \t\r\n"


def _file(staged: StagedSource) -> FileSource:
    if not isinstance(staged.source, FileSource):
        raise TypeError(f"not a file source: {_file(staged).label}")
    return staged.source


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
        read, bad = staging.exact_arrow(staged.src, numbers, texts, _file(staged).layout)
        staged.read += read + len(invalid)
        staged.quarantined += len(invalid)
        # both kinds of fault in line order: with strict=True the first one in the file raises
        parsed = {record.line: record for record in bad}
        undecodable = dict(invalid)
        for line in sorted({*parsed, *undecodable}):
            if line in undecodable:
                text = undecodable[line].decode("utf-8", "replace")
                log.add(_file(staged).label, line, "not valid UTF-8 text", text=text)
            else:
                report_bad(log, staged, [parsed[line]])


def _stage_json(staging: Staging, staged: StagedSource, log: QuarantineLog) -> None:
    source = _file(staged)
    con = staging.con
    try:
        # Elements are numbered by their insertion order, which this statement must keep.
        con.execute("SET preserve_insertion_order = true")
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _objects AS
            SELECT json::VARCHAR AS record FROM read_json_objects({sql_literal(str(source.path))},
                format='{"array" if _is_array(source) else "auto"}', compression='{"gzip" if source.gzip else "none"}',
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


def _is_array(source: FileSource) -> bool:
    """Whether the JSON file is an array (DuckDB's automatic detection misses one after a BOM)."""
    with open_binary(source.path, source.gzip) as stream:
        head = stream.read(1 << 16).removeprefix(_BOM).lstrip(_WHITESPACE.encode())
    return head.startswith(b"[")


def _stage_malformed_json(staging: Staging, staged: StagedSource, log: QuarantineLog) -> None:
    """Stage a JSON file DuckDB cannot read element by element, quarantining each bad element."""
    source = _file(staged)
    with open_binary(source.path, source.gzip) as stream:
        text = stream.read().decode("utf-8", "surrogateescape").removeprefix("\ufeff")
    numbers, records, faults = json_elements(text)
    read, bad = (
        staging.exact_arrow(staged.src, pa.array(numbers, pa.int64()), pa.array(records, pa.string()), source.layout)
        if records
        else (0, [])
    )
    staged.read += read + len(faults)
    staged.quarantined += len(faults)
    rejected = {record.line: record for record in bad}
    for number in sorted({*rejected, *faults}):
        if number in rejected:
            report_bad(log, staged, [rejected[number]])
        else:
            reason, excerpt = faults[number]
            log.add(source.label, number, reason, text=printable(excerpt))


#: The fields read from an identity record.
_IDENTITY_FIELDS: tuple[str, ...] = ("id", "state", "updated_at", "traits", "metadata_public")
#: The Parquet columns read for each layout.
_PARQUET_COLUMNS: dict[Layout, tuple[str, ...]] = {
    "identity": _IDENTITY_FIELDS,
    "combined": ("identity", "demographics"),
    "demographics": ("identity_id", *DEMOGRAPHIC_FIELDS),
}
#: Columns (of a record, and of the identity in a combined record) whose values are JSON.
_JSON_COLUMNS: dict[Layout, frozenset[str]] = {
    "identity": frozenset({"traits", "metadata_public"}),
    "combined": frozenset({"identity", "demographics"}),
    "demographics": frozenset(),
}
_JSON_IDENTITY_FIELDS = frozenset({"traits", "metadata_public"})


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _is_text(column_type: pa.DataType) -> bool:
    if pa.types.is_dictionary(column_type):
        return _is_text(column_type.value_type)
    return bool(
        pa.types.is_string(column_type) or pa.types.is_large_string(column_type) or pa.types.is_string_view(column_type)
    )


@dataclasses.dataclass
class _ParquetRecord:
    """How a Parquet row becomes a JSON record: packed fields, and the text columns that must hold JSON."""

    fields: list[str] = dataclasses.field(default_factory=list)
    raw_fields: list[str] = dataclasses.field(default_factory=list)
    json_text: dict[str, str] = dataclasses.field(default_factory=dict)

    def add(self, name: str, column: str, column_type: pa.DataType, holds_json: bool) -> None:
        """Pack one column; a text column that holds JSON is parsed (and checked) as JSON."""
        self.raw_fields.append(f"{_quoted(name)} := {column}")
        if holds_json and _is_text(column_type):
            self.json_text[name] = column
            column = f"TRY_CAST({column} AS JSON)"
        self.fields.append(f"{_quoted(name)} := {column}")

    @property
    def invalid(self) -> str:
        """Condition on a row meaning one of its JSON text columns is not JSON."""
        return " OR ".join(self.invalid_text(column) for column in self.json_text.values()) or "false"

    @staticmethod
    def invalid_text(column: str) -> str:
        """Condition on a row meaning the text column holds something that is not JSON."""
        return f"({column} IS NOT NULL AND TRY_CAST({column} AS JSON) IS NULL)"


def _parquet_record(schema: pa.Schema, layout: Layout) -> _ParquetRecord:
    """The record of a Parquet row: the wanted columns, JSON text parsed.

    An ``identity`` struct is rebuilt from the identity fields alone, so that its traits
    and public metadata may be JSON text too and no other field is ever extracted.
    """
    record = _ParquetRecord()
    for name in _PARQUET_COLUMNS[layout]:
        if name not in schema.names:
            continue
        column_type = schema.field(name).type
        if name == "identity" and pa.types.is_struct(column_type):
            inner = _ParquetRecord()
            for field in _IDENTITY_FIELDS:
                if column_type.get_field_index(field) >= 0:
                    inner.add(
                        field,
                        f"{_quoted(name)}.{_quoted(field)}",
                        column_type.field(field).type,
                        field in _JSON_IDENTITY_FIELDS,
                    )
            record.json_text.update({f"{name}.{field}": column for field, column in inner.json_text.items()})
            packed, raw = (
                f"CASE WHEN {_quoted(name)} IS NOT NULL THEN {pack} END"
                for pack in (_struct_pack(inner.fields), _struct_pack(inner.raw_fields))
            )
            record.fields.append(f"{_quoted(name)} := {packed}")
            record.raw_fields.append(f"{_quoted(name)} := {raw}")
        else:
            record.add(name, _quoted(name), column_type, name in _JSON_COLUMNS[layout])
    return record


def _struct_pack(fields: list[str]) -> str:
    return f"struct_pack({', '.join(fields)})" if fields else "'{}'::JSON"


def _quarantine_invalid_json_text(
    staging: Staging, staged: StagedSource, log: QuarantineLog, record: _ParquetRecord, rows: str
) -> None:
    """Quarantine the Parquet rows whose JSON text columns do not all hold JSON."""
    flags = ", ".join(_ParquetRecord.invalid_text(column) for column in record.json_text.values())
    invalid = staging.con.execute(
        f"""SELECT file_row_number + 1, [{flags}], to_json({_struct_pack(record.raw_fields)})::VARCHAR
        FROM {rows} WHERE {record.invalid} ORDER BY file_row_number"""
    ).fetchall()
    for line, bad_columns, text in invalid:
        names = ", ".join(f"`{name}`" for name, bad in zip(record.json_text, bad_columns, strict=True) if bad)
        log.add(_file(staged).label, int(line), f"{names}: text that is not valid JSON", text=text)
        staged.read += 1
        staged.quarantined += 1


def _stage_parquet(staging: Staging, staged: StagedSource, log: QuarantineLog) -> None:
    """Stage a Parquet file; a row whose JSON text column (traits, ...) is not JSON is quarantined."""
    source = _file(staged)
    try:
        schema = pq.read_schema(source.path)
    except (OSError, pa.ArrowException) as error:
        raise LoadError(
            f"cannot read {source.label}: not a readable Parquet file ({error})", source=source.label
        ) from None
    record = _parquet_record(schema, source.layout)
    rows = f"read_parquet({sql_literal(str(source.path))}, file_row_number=true)"
    relation = (
        f"(SELECT file_row_number + 1 AS line, to_json({_struct_pack(record.fields)})::VARCHAR AS record "
        f"FROM {rows} WHERE NOT ({record.invalid}))"
    )
    try:
        if record.json_text:
            _quarantine_invalid_json_text(staging, staged, log, record, rows)
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
