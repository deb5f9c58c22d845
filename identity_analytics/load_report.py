"""The load report: how many records each source gave and what became of them."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict


class _Indexable(BaseModel):
    model_config = ConfigDict(frozen=True)

    #: Names readable with ``report[name]`` besides the fields.
    _extra_keys: ClassVar[tuple[str, ...]] = ()

    def __getitem__(self, key: str) -> Any:
        if key not in type(self).model_fields and key not in self._extra_keys:
            raise KeyError(key)
        return getattr(self, key)


class SourceCounts(_Indexable):
    """Records read, and how they split: read = loaded + quarantined + duplicates."""

    read: int = 0
    loaded: int = 0
    quarantined: int = 0
    duplicates: int = 0

    @property
    def balanced(self) -> bool:
        """True when every record read is accounted for."""
        return self.read == self.loaded + self.quarantined + self.duplicates

    def __add__(self, other: SourceCounts) -> SourceCounts:
        return SourceCounts(
            read=self.read + other.read,
            loaded=self.loaded + other.loaded,
            quarantined=self.quarantined + other.quarantined,
            duplicates=self.duplicates + other.duplicates,
        )


class FileCounts(SourceCounts):
    """The counts of one input (file or URL) for one kind of record."""

    source: str
    kind: Literal["identities", "demographics"]


class LoadReport(_Indexable):
    """Counts for identities and demographics, per input, and out-of-vocabulary values.

    ``read``, ``loaded``, ``quarantined`` and ``duplicates`` are totals over every record
    read, identity and demographics records alike (so ``quarantined`` is the number of rows
    of the quarantine, and read = loaded + quarantined + duplicates); ``identities`` and
    ``demographics`` give them per kind (``identities.loaded`` is the number of identities
    in the analytics table), and ``sources`` per input. ``other_values`` maps each dimension
    to the raw values counted as ``other`` and how many loaded identities had each; those
    values are never published as labels.
    """

    _extra_keys: ClassVar[tuple[str, ...]] = ("read", "loaded", "quarantined", "duplicates")

    identities: SourceCounts = SourceCounts()
    demographics: SourceCounts = SourceCounts()
    other_values: dict[str, dict[str, int]] = {}
    sources: list[FileCounts] = []

    @property
    def total(self) -> SourceCounts:
        """The counts of identity and demographics records together."""
        return self.identities + self.demographics

    @property
    def read(self) -> int:
        return self.total.read

    @property
    def loaded(self) -> int:
        return self.total.loaded

    @property
    def quarantined(self) -> int:
        return self.total.quarantined

    @property
    def duplicates(self) -> int:
        return self.total.duplicates

    @property
    def balanced(self) -> bool:
        """True when every record read, of every source, is accounted for."""
        return self.total.balanced and all(s.balanced for s in self.sources)

    @classmethod
    def from_sources(cls, sources: list[FileCounts], other_values: dict[str, dict[str, int]]) -> LoadReport:
        """Totals per kind from the per-input counts."""
        totals = {kind: SourceCounts() for kind in ("identities", "demographics")}
        for counts in sources:
            totals[counts.kind] = totals[counts.kind] + SourceCounts(
                read=counts.read, loaded=counts.loaded, quarantined=counts.quarantined, duplicates=counts.duplicates
            )
        return cls(
            identities=totals["identities"],
            demographics=totals["demographics"],
            other_values=other_values,
            sources=sources,
        )

    def __str__(self) -> str:
        lines = [
            f"{kind:<13} read {c.read:>9,}  loaded {c.loaded:>9,}  "
            f"quarantined {c.quarantined:>7,}  duplicates {c.duplicates:>7,}"
            for kind, c in (("identities", self.identities), ("demographics", self.demographics))
        ]
        for dim, values in self.other_values.items():
            shown = ", ".join(f"{v!r}: {n}" for v, n in list(values.items())[:5])
            more = f" (+{len(values) - 5} more)" if len(values) > 5 else ""
            lines.append(f"other {dim}: {shown}{more}")
        return "\n".join(lines)
