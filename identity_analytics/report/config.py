"""The report configuration (TOML): inputs, tables, segments with breakdowns; validated once,
every problem named by its field (``cohorts[1].where.citizenship``)."""

from __future__ import annotations

import datetime
import json
import tomllib
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from identity_analytics.errors import FieldError, describe, field_location
from identity_analytics.segments import Segment
from identity_analytics.specs import PROTECT_MODES, Cohort, category_problem, dimension_problems
from identity_analytics.store import MANIFEST
from identity_analytics.vocabulary import DIMENSIONS, Vocabulary


class ConfigError(ValueError):
    """The report configuration is invalid; the message names the file and the field."""


def _known_dimensions(dimensions: list[str]) -> list[str]:
    for index, message in dimension_problems(dimensions)[:1]:
        raise FieldError((index,), message)
    return dimensions


def _known_categories(where: dict[str, list[str]], info: ValidationInfo) -> dict[str, list[str]]:
    """Known dimensions, at least one category each; known categories when the vocabulary is given."""
    vocabulary = info.context.get("vocabulary") if isinstance(info.context, dict) else None
    for dimension, values in where.items():
        if dimension not in DIMENSIONS:
            raise FieldError((dimension,), f"unknown dimension; the dimensions are {list(DIMENSIONS)}")
        problem = category_problem(dimension, values, vocabulary if isinstance(vocabulary, Vocabulary) else None)
        if problem is not None:
            raise FieldError((dimension,), problem)
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


