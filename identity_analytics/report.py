"""Batch reports: a config in; cohort tables (CSV, Parquet, JSON), report.html and audit.json out.

The output directory is written atomically: everything goes into a temporary sibling
directory that is renamed into place at the end, so a run killed mid-write leaves the
previous report (or nothing), never half a report. ``audit.json`` lets a second person verify
the release: inputs with their sha256, parameters, every table's cells and suppressions with
reasons, the attacker-interval audit, and the load report counts.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import html
import io
import json
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from identity_analytics.atomic import atomic_directory
from identity_analytics.cohort_table import CohortTable
from identity_analytics.dataset import Dataset
from identity_analytics.errors import FieldError, PrivacyError, describe, field_location
from identity_analytics.segments import Segment
from identity_analytics.specs import PROTECT_MODES, Cohort
from identity_analytics.store import LEDGER_DIR, MANIFEST
from identity_analytics.version import __version__
from identity_analytics.vocabulary import DIMENSIONS, Vocabulary


class ConfigError(ValueError):
    """The report configuration is invalid; the message names the file and the field."""


def _known_dimensions(dimensions: list[str]) -> list[str]:
    for index, dimension in enumerate(dimensions):
        if dimension not in DIMENSIONS:
            raise FieldError((index,), f"unknown dimension {dimension!r}; the dimensions are {list(DIMENSIONS)}")
        if dimensions.index(dimension) != index:
            raise FieldError((index,), f"{dimension!r} is given twice")
    return dimensions


def _known_categories(where: dict[str, list[str]], info: ValidationInfo) -> dict[str, list[str]]:
    """Known dimensions, at least one category each; known categories when the vocabulary is given."""
    vocabulary = info.context.get("vocabulary") if isinstance(info.context, dict) else None
    for dimension, values in where.items():
        if dimension not in DIMENSIONS:
            raise FieldError((dimension,), f"unknown dimension; the dimensions are {list(DIMENSIONS)}")
        if not values:
            raise FieldError((dimension,), "lists no category; give at least one")
        if isinstance(vocabulary, Vocabulary):
            categories = vocabulary.categories(dimension)
            unknown = [v for v in values if v not in categories]
            if unknown:
                raise FieldError((dimension,), f"unknown categories {unknown}; the categories are {list(categories)}")
    return where


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Filtered(_Strict):
    """A report item over a filtered population: ``where`` maps dimensions to categories."""

    where: dict[str, list[str]] = Field(default_factory=dict)

    @field_validator("where")
    @classmethod
    def _where(cls, where: dict[str, list[str]], info: ValidationInfo) -> dict[str, list[str]]:
        return _known_categories(where, info)


class CohortSpec(_Filtered):
    """One cohort table of the report."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="file-name-safe table name")
    by: list[str] = Field(min_length=1, max_length=4)
    k: int | None = Field(default=None, ge=2)
    margins: bool = True
    protect: str = "suppress"
    base: int | None = Field(default=None, ge=1)

    @field_validator("by")
    @classmethod
    def _dimensions(cls, by: list[str]) -> list[str]:
        return _known_dimensions(by)

    @field_validator("protect")
    @classmethod
    def _protect(cls, protect: str) -> str:
        if protect not in PROTECT_MODES:
            raise ValueError(f"protect must be one of {list(PROTECT_MODES)}")
        return protect

    def cohort(self) -> Cohort:
        """The table to compute (named by the report's name for it in the release ledger)."""
        return Cohort(by=self.by, k=self.k, margins=self.margins, where=self.where, protect=self.protect,
                      base=self.base, name=f"table {self.name}")  # fmt: skip


class SegmentSpec(_Filtered):
    """A segment of the report: its size and optional breakdowns."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str | None = None
    breakdown: list[str] = Field(default_factory=list)

    @field_validator("breakdown")
    @classmethod
    def _breakdown(cls, breakdown: list[str]) -> list[str]:
        return _known_dimensions(breakdown)

    def segment(self) -> Segment:
        return Segment(name=self.name, where=self.where, description=self.description)


class InputSpec(_Strict):
    """Where the data comes from: files (identities, optional demographics) or a store.

    A store publishes through its own release ledger; files through ``ledger`` (a directory
    kept across runs) or, without one, a ledger that lives only as long as the run.
    """

    identities: list[str] = Field(default_factory=list)
    demographics: list[str] = Field(default_factory=list)
    store: str | None = None
    ledger: str | None = None

    @field_validator("identities", "demographics", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_source(self) -> InputSpec:
        if bool(self.identities) == bool(self.store):
            raise ValueError("give either identities (with optional demographics) or a store")
        if self.store and self.demographics:
            raise ValueError("demographics go with identities files, not with a store")
        if self.store and self.ledger:
            raise ValueError("a store keeps its own release ledger: give a ledger only with identities files")
        return self


class ReportConfig(_Strict):
    """A report: input, parameters, cohort tables and segments (a TOML file, see the README)."""

    input: InputSpec
    reference_date: datetime.date | None = None
    k: int = Field(default=10, ge=2)
    include_inactive: bool = False
    cohorts: list[CohortSpec] = Field(default_factory=list)
    segments: list[SegmentSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _something_to_report(self) -> ReportConfig:
        if not self.cohorts and not self.segments:
            raise ValueError("the report has no [[cohorts]] and no [[segments]]")
        return self

    @model_validator(mode="after")
    def _distinct_output_names(self) -> ReportConfig:
        """Cohort, segment and breakdown names are distinct (case aside): each names an output."""
        taken: dict[str, str] = {}

        def claim(name: str, path: tuple[str | int, ...]) -> None:
            if name.casefold() in taken:
                raise FieldError(
                    path,
                    f"the name {name!r} is already taken by {taken[name.casefold()]}; "
                    "cohort, segment and breakdown (<segment>-by-<dimension>) names must be distinct",
                )
            taken[name.casefold()] = field_location(path)

        for index, cohort in enumerate(self.cohorts):
            claim(cohort.name, ("cohorts", index, "name"))
        for index, segment in enumerate(self.segments):
            claim(segment.name, ("segments", index, "name"))
            for position, dimension in enumerate(segment.breakdown):
                claim(f"{segment.name}-by-{dimension}", ("segments", index, "breakdown", position))
        return self

    @classmethod
    def from_toml(cls, path: str | Path, vocabulary: Vocabulary | None = None) -> ReportConfig:
        """Read and validate a TOML config; relative paths are relative to the file.

        ``where`` categories are checked against ``vocabulary`` (default: the input store's
        vocabulary, or the packaged one for input files).
        """
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text("utf-8"))
        except OSError as error:
            raise ConfigError(f"{path}: cannot read the config ({error.strerror or type(error).__name__})") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{path}: not valid TOML ({error})") from None
        vocabulary = vocabulary or _input_vocabulary(data, path.parent)
        try:
            config = cls.model_validate(data, context={"vocabulary": vocabulary})
        except ValidationError as error:
            where, message = describe(error)
            raise ConfigError(f"{path}: {where or '(top level)'}: {message}") from None
        return config.relative_to(path.parent)

    def relative_to(self, base: Path) -> ReportConfig:
        """The config with its input paths resolved against ``base``."""

        def resolve(p: str) -> str:
            return p if Path(p).is_absolute() else str(base / p)

        spec = self.input
        resolved = InputSpec(
            identities=[resolve(p) for p in spec.identities],
            demographics=[resolve(p) for p in spec.demographics],
            store=resolve(spec.store) if spec.store else None,
            ledger=resolve(spec.ledger) if spec.ledger else None,
        )
        return self.model_copy(update={"input": resolved})


def _input_vocabulary(data: dict[str, Any], base: Path) -> Vocabulary:
    """The vocabulary of the config's input: a store's own, else the packaged one."""
    spec = data.get("input")
    store = spec.get("store") if isinstance(spec, dict) else None
    if isinstance(store, str):
        try:
            manifest = json.loads((base / store / MANIFEST).read_text("utf-8"))
            return Vocabulary(manifest["vocabulary"])
        except (OSError, ValueError, KeyError, TypeError):
            pass  # opening the store reports what is wrong with it
    return Vocabulary.default()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def input_files(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Each input file (a store: each of its data files, not its release ledger) with size and sha256."""
    files: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            data = (p for p in path.rglob("*") if p.is_file() and p.relative_to(path).parts[0] != LEDGER_DIR)
            files.extend(sorted(data))
        else:
            files.append(path)
    return [{"path": str(p), "bytes": p.stat().st_size, "sha256": sha256_of(p)} for p in files]


def _chart(table: CohortTable) -> str:
    """The table's plot as an embedded PNG data URL."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(10, 4))
    table.plot(ax=ax)
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _table_audit(name: str, table: CohortTable) -> dict[str, Any]:
    cells = table.to_arrow()
    suppressed = [
        {**{d: row[d] for d in table.by}, "reason": reason}
        for row, reason in zip(cells.to_pylist(), table.reasons(), strict=True)
        if row["suppressed"]
    ]
    audit = table.audit()
    widths = audit.column("width").to_pylist()
    return {
        "name": name,
        "by": list(table.by),
        "where": {d: list(v) for d, v in table.filters.items()},
        "k": table.k,
        "margins": table.margins,
        "protect": table.protect,
        "base": table.base,
        "sql": table.sql,
        "cells": table.grid.n_cells,
        "primary_suppressions": int(table.primary.sum()),
        "secondary_suppressions": int(table.suppressed.sum() - table.primary.sum()),
        "suppressed_cells": suppressed,
        "attacker_interval_min_width": min(widths) if widths else None,
        "all_suppressed_cells_protected": all(audit.column("protected").to_pylist()),
    }


def _write_table(directory: Path, name: str, table: CohortTable) -> None:
    cells = table.to_arrow()
    pq.write_table(cells, directory / f"{name}.parquet")
    table.to_pandas().to_csv(directory / f"{name}.csv", index=False)
    (directory / f"{name}.json").write_text(json.dumps(cells.to_pylist(), indent=1) + "\n", "utf-8")


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
h1{font-size:1.5em} h2{font-size:1.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0;font-size:.85em}
td,th{border:1px solid #ddd;padding:2px 8px;text-align:right}
td.s{background:#eee;color:#888;text-align:center}
dl.params dt{font-weight:bold;float:left;clear:left;width:14em} dl.params dd{margin-left:15em}
img.chart{max-width:100%;border:1px solid #eee}
"""


def _html(config: ReportConfig, dataset: Dataset, tables: dict[str, CohortTable], segments: list[dict[str, Any]],
          breakdowns: dict[str, CohortTable], audit: dict[str, Any]) -> str:  # fmt: skip
    esc = html.escape
    params = {
        "library version": audit["library_version"],
        "generated at": audit["generated_at"],
        "k": str(config.k),
        "reference date": dataset.reference_date.isoformat(),
        "inactive identities": "included" if config.include_inactive else "excluded",
        "inputs": ", ".join(f"{Path(i['path']).name} (sha256 {i['sha256'][:12]}…)" for i in audit["inputs"]),
    }
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>identity-analytics report</title><style>{_STYLE}</style></head><body>",
        "<h1>identity-analytics report</h1>",
        "<dl class='params'>" + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in params.items()) + "</dl>",
        # the load's record counts are exact (a few quarantined records, or loaded minus the
        # counted total: the inactive ones): they stay in audit.json, the operator's record
        "<p>Records read, loaded, quarantined and duplicated are in <code>audit.json</code> "
        "(exact counts, for the operator, not for publication).</p>",
    ]
    for name, table in tables.items():
        parts += [
            f"<h2 id='cohort-{esc(name)}'>Cohort table {esc(name)}: {esc(' × '.join(table.by))}</h2>",
            f"<p>k = {table.k}; protection: {esc(table.protect)}; '·' marks a suppressed cell.</p>",
            table._repr_html_(),
            f"<img class='chart' alt='chart of {esc(name)}' src='{_chart(table)}'>",
        ]
    if segments:
        parts.append("<h2>Segments</h2><table><tr><th>segment</th><th>definition</th><th>size</th></tr>")
        for s in segments:
            size = "·" if s["suppressed"] else f"{s['size']:,}"
            parts.append(
                f"<tr><th>{esc(s['name'])}</th><td>{esc(json.dumps(s['where']))}</td>"
                f"<td class='{'s' if s['suppressed'] else ''}'>{size}</td></tr>"
            )
        parts.append("</table>")
        for key, table in breakdowns.items():
            parts += [f"<h2>Segment breakdown {esc(key)}</h2>", table._repr_html_()]
    # Lets a browser test (and a curious reader) see that every chart decoded: count them on load.
    parts.append(
        "<script>window.addEventListener('load',function(){var ok=0;for(var i of document.images)"
        "{if(i.complete&&i.naturalWidth>0)ok++}document.body.dataset.chartsRendered=ok;"
        "document.body.dataset.tables=document.querySelectorAll('table').length})</script>"
    )
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(
    dataset: Dataset, config: ReportConfig, out: str | Path, inputs: Sequence[str | Path], *, overwrite: bool = True
) -> Path:
    """Compute every table and segment of ``config`` and write the report into ``out``, atomically."""

    out = Path(out)
    # everything of the report is one release: audited together with each other and with
    # everything released before, recorded together once the whole report is computed
    with dataset.releasing():
        tables = dict(
            zip(
                [spec.name for spec in config.cohorts],
                dataset.cohort_tables([spec.cohort() for spec in config.cohorts]),
                strict=True,
            )
        )
        segments: list[dict[str, Any]] = []
        breakdowns: dict[str, CohortTable] = {}
        for spec in config.segments:
            try:
                result = dataset.segment(spec.segment())
            except PrivacyError as error:  # withheld: the reason is the operator's, in audit.json
                segments.append({"name": spec.name, "where": spec.where, "size": None, "suppressed": True,
                                 "withheld": str(error)})  # fmt: skip
                continue
            segments.append({"name": spec.name, "where": spec.where, "size": result.size,
                             "suppressed": result.suppressed})  # fmt: skip
            for dim in spec.breakdown:
                breakdowns[f"{spec.name}-by-{dim}"] = result.breakdown(dim)
    audit: dict[str, Any] = {
        "library_version": __version__,
        "generated_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "inputs": input_files(inputs),
        "k": config.k,
        "parameters": {
            "k": config.k,
            "reference_date": dataset.reference_date.isoformat(),
            "include_inactive": config.include_inactive,
            "policy": dataset.policy.settings(),
        },
        "load_report": dataset.load_report.model_dump(mode="json", exclude={"other_values"}),
        "tables": [_table_audit(name, table) for name, table in {**tables, **breakdowns}.items()],
        "segments": segments,
        "release": {
            "ledger": dataset.ledger.description,
            "releases_recorded": dataset.ledger.state().releases,
            "joint_audit": dataset.audit_measures(),
        },
    }
    with atomic_directory(out, marker="audit.json", what="report", overwrite=overwrite) as work:
        (work / "cohorts").mkdir()
        for name, table in {**tables, **breakdowns}.items():
            _write_table(work / "cohorts", name, table)
        (work / "report.html").write_text(_html(config, dataset, tables, segments, breakdowns, audit), "utf-8")
        (work / "audit.json").write_text(json.dumps(audit, indent=2) + "\n", "utf-8")
    return out
