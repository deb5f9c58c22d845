"""The ``identity-analytics`` command line: pull, load, report, segment, profile, risk.

Exit codes: 0 success, 2 bad input or config, 3 refused by a privacy rule, 4 a source failed
after retries. Errors are one line on stderr naming the file or option; ``--debug`` shows the
traceback first (the exit code stays the same). On a terminal a spinner on stderr tells what
a long load or report is doing.
The pseudonym key comes from ``IDENTITY_ANALYTICS_PSEUDONYM_KEY``.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import identity_analytics as ia
from identity_analytics.atomic import atomic_file
from identity_analytics.errors import describe
from identity_analytics.loaders.http import RetryPolicy
from identity_analytics.loaders.progress import ProgressCallback
from identity_analytics.release.ledger import FileLedger
from identity_analytics.release.stored import store_ledger
from identity_analytics.report import CohortSpec, ConfigError, InputSpec, ReportConfig, write_report
from identity_analytics.store import MANIFEST

EXIT_OK, EXIT_BAD_INPUT, EXIT_PRIVACY, EXIT_SOURCE, EXIT_INTERNAL = 0, 2, 3, 4, 1

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Privacy-safe demographics analytics.")
pull_app = typer.Typer(no_args_is_help=True, help="Pull identities from the identity platform into a store.")
app.add_typer(pull_app, name="pull")
ledger_app = typer.Typer(no_args_is_help=True, help="The release ledger: what a store (or ledger) has published.")
app.add_typer(ledger_app, name="ledger")
out = Console()
err = Console(stderr=True)
_state = {"debug": False}
T = TypeVar("T")
NO_LEDGER_NOTE = (
    "note: no --ledger: this run's answers are audited with each other only, not with earlier runs over the "
    "same files; give --ledger DIR (or load the files into a store) to keep a release ledger"
)

IdentitiesOpt = Annotated[
    list[Path] | None, typer.Option("--identities", help="identities file(s) (NDJSON, JSON, Parquet; gzip)")
]
DemographicsOpt = Annotated[list[Path] | None, typer.Option("--demographics", help="demographics file(s)")]
StoreOpt = Annotated[Path | None, typer.Option("--store", help="a store written by load/pull")]
LedgerOpt = Annotated[
    Path | None,
    typer.Option("--ledger", help="release ledger directory for file input (a store keeps its own)"),
]
KOpt = Annotated[int | None, typer.Option("--k", min=2, help="smallest publishable count (default 10)")]
DateOpt = Annotated[str | None, typer.Option("--reference-date", help="YYYY-MM-DD at which birthdates become ages")]
AttemptsOpt = Annotated[int, typer.Option("--attempts", min=1, help="attempts per request before giving up")]


def _fail(code: int, message: str) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _say(text: str) -> None:
    """Print a result line verbatim (paths and names may hold ``[...]``, which is not markup here)."""
    out.print(text, markup=False, highlight=False, soft_wrap=True)


@contextlib.contextmanager
def _status(message: str) -> Iterator[Callable[[str], None]]:
    """A spinner with ``message`` on stderr while a long step runs, on a terminal only.

    Like the progress bars of pulls: stderr that is not a terminal gets nothing. Yields a
    function that replaces the message.
    """
    if not sys.stderr.isatty():
        yield lambda text: None
        return
    with err.status(escape(message)) as status:
        yield lambda text: status.update(escape(text))


@contextlib.contextmanager
def _progress_bars() -> Iterator[ProgressCallback | None]:
    """Rich progress bars on stderr drawing what a pull reports (on a terminal only)."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as bars:
        tasks: dict[str, TaskID] = {}

        def draw(what: str, done: int, total: int | None) -> None:
            if what not in tasks:
                tasks[what] = bars.add_task(escape(what), total=total)
            bars.update(tasks[what], completed=done, total=total)

        yield draw


def _count(items: Sequence[object], noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def _loading(paths: Sequence[Path]) -> str:
    """``loading a.ndjson, b.ndjson (1,234 MB)``: what a file load is busy with."""
    sizes = [p.stat().st_size for p in paths if p.is_file()]
    size = f" ({sum(sizes) / 1e6:,.0f} MB)" if sizes else ""
    return f"loading {', '.join(p.name for p in paths)}{size}"


def _run(action: Callable[[], T]) -> T:
    """Run a command body, mapping library errors to one-line messages and exit codes."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = action()
        for warning in caught:
            err.print(f"[yellow]warning:[/] {escape(str(warning.message))}", highlight=False, soft_wrap=True)
        return result
    except typer.Exit:
        raise
    except Exception as error:
        if _state["debug"]:  # the traceback, then the same exit code as without --debug
            err.print_exception()
        if isinstance(error, ia.PrivacyError):
            _fail(EXIT_PRIVACY, str(error))
        if isinstance(error, ia.SourceError):
            _fail(EXIT_SOURCE, str(error))
        if isinstance(error, ValidationError):
            where, message = describe(error)
            _fail(EXIT_BAD_INPUT, f"{where}: {message}" if where else message)
        if isinstance(error, ia.LoadError | ConfigError | ValueError | ia.NotFound | OSError):
            _fail(EXIT_BAD_INPUT, str(error))
        _fail(EXIT_INTERNAL, f"internal error ({type(error).__name__}); rerun with --debug and report it")


def _date(text: str | None) -> datetime.date | None:
    if text is None:
        return None
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--reference-date {text!r} is not a YYYY-MM-DD date") from None


def _policy(k: int | None = None, include_inactive: bool = False) -> ia.PrivacyPolicy:
    return ia.PrivacyPolicy(k=k or 10, include_inactive=include_inactive)


def _dataset(
    identities: list[Path] | None, demographics: list[Path] | None, store: Path | None, policy: ia.PrivacyPolicy,
    reference_date: datetime.date | None, ledger: Path | None = None, *, publishes: bool = True,
) -> ia.Dataset:  # fmt: skip
    """The Dataset of the input flags. Over files without ``--ledger``, a command that
    publishes says on stderr that its answers are not audited against earlier runs."""
    if bool(identities) == bool(store):
        raise ValueError("give either --identities (with optional --demographics) or --store")
    if store is not None:
        if demographics:
            raise ValueError("--demographics goes with --identities, not with --store")
        if ledger is not None:
            raise ValueError("--ledger goes with --identities: a store publishes through its own release ledger")
        ds = ia.Dataset.open(store, policy=policy)
        if reference_date is not None and reference_date != ds.reference_date:
            raise ValueError(
                f"reference date {reference_date} given, but the store's ages were computed at "
                f"{ds.reference_date} when it was loaded; load the files again with that date, or leave it out"
            )
        return ds
    assert identities is not None
    with _status(_loading([*identities, *(demographics or [])])):
        ds = ia.Dataset.from_files(
            identities, demographics or None, policy=policy, reference_date=reference_date, ledger=ledger
        )
    if ledger is None and publishes:
        err.print(NO_LEDGER_NOTE, highlight=False, soft_wrap=True, markup=False)
    return ds


def _ledger_of(store: Path | None, ledger: Path | None) -> FileLedger:
    """The ledger of ``--store`` or ``--ledger`` (exactly one)."""
    if (store is None) == (ledger is None):
        raise ValueError("give either --store or --ledger")
    if store is not None:
        if not (store / MANIFEST).is_file():
            raise ValueError(f"--store {store}: not a store (no {MANIFEST}); give the directory load/pull wrote")
        return store_ledger(store)
    assert ledger is not None
    if not ledger.is_dir():
        raise ValueError(f"--ledger {ledger}: no such directory")
    return FileLedger(ledger)


def _cohorts_from_flags(by: list[str]) -> list[CohortSpec]:
    """One cohort table per ``--by``; a problem is reported against the flag."""
    cohorts: list[CohortSpec] = []
    for text in by:
        dimensions = [d.strip() for d in text.split(",")]
        try:
            cohort = CohortSpec(name="table", by=dimensions)
        except ValidationError as error:
            raise ValueError(f"--by {text!r}: {describe(error)[1]}") from None
        if any(c.by == cohort.by for c in cohorts):
            raise ValueError(f"--by {text!r} is given twice")
        cohorts.append(cohort.model_copy(update={"name": "_x_".join(dimensions)}))
    return cohorts


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="show tracebacks and debug logs")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log progress to stderr")] = False,
) -> None:
    _state["debug"] = debug
    if debug or verbose:
        logging.basicConfig(
            level=logging.DEBUG if debug else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
        )


@app.command()
def load(
    identities: IdentitiesOpt = None,
    demographics: DemographicsOpt = None,
    store: Annotated[Path, typer.Option("--store", help="where to write the store")] = Path("store"),
    strict: Annotated[bool, typer.Option(help="stop at the first bad record")] = False,
    reference_date: DateOpt = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing store")] = False,
) -> None:
    """Load identity (and demographics) files into a Parquet store."""

    def body() -> None:
        if not identities:
            raise ValueError("give at least one --identities file")
        with _status(_loading([*identities, *(demographics or [])])) as show:
            ds = ia.Dataset.from_files(
                identities, demographics or None, policy=_policy(), reference_date=_date(reference_date), strict=strict
            )
            show(f"writing the store to {store}")
            ds.save(store, overwrite=overwrite)
        _say(str(ds.load_report))
        _say(f"store written to {store}")

    _run(body)


@pull_app.command("kratos")
def pull_kratos(
    url: Annotated[str, typer.Argument(help="Kratos admin API base URL")],
    store: Annotated[Path, typer.Option("--store", help="where to write the store")],
    api_key_env: Annotated[
        str, typer.Option(help="environment variable holding the API key (if any)")
    ] = "KRATOS_API_KEY",
    page_size: Annotated[int, typer.Option(min=1, max=500)] = 250,
    organization_id: Annotated[str | None, typer.Option()] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="checkpoint file: a rerun resumes a killed pull")] = None,
    allow_insecure: Annotated[bool, typer.Option(help="allow plain http to a non-loopback host")] = False,
    attempts: AttemptsOpt = 8,
    reference_date: DateOpt = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing store")] = False,
) -> None:
    """Pull every identity from the Kratos admin API into a store."""

    def body() -> None:
        with _progress_bars() as progress:
            ds = ia.Dataset.from_kratos(
                url, api_key=os.environ.get(api_key_env) or None, policy=_policy(), page_size=page_size,
                organization_id=organization_id, checkpoint=checkpoint, allow_insecure=allow_insecure,
                reference_date=_date(reference_date), retry=RetryPolicy(attempts=attempts), progress=progress,
            )  # fmt: skip
        ds.save(store, overwrite=overwrite)
        _say(str(ds.load_report))

    _run(body)


@pull_app.command("klustr")
def pull_klustr(
    url: Annotated[str, typer.Argument(help="Klustr gateway base URL")],
    tokens: Annotated[Path, typer.Option("--tokens", help="file with one user token per line")],
    store: Annotated[Path, typer.Option("--store", help="where to write the store")],
    concurrency: Annotated[int, typer.Option(min=1, max=256)] = 16,
    checkpoint: Annotated[Path | None, typer.Option(help="checkpoint file: a rerun resumes a killed pull")] = None,
    allow_insecure: Annotated[bool, typer.Option(help="allow plain http to a non-loopback host")] = False,
    attempts: AttemptsOpt = 8,
    reference_date: DateOpt = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing store")] = False,
) -> None:
    """Pull each user's identity and demographics from the Klustr gateway into a store."""

    def body() -> None:
        token_list = [t.strip() for t in tokens.read_text("utf-8").splitlines() if t.strip()]
        with _progress_bars() as progress:
            ds = ia.Dataset.from_klustr(
                url, token_list, policy=_policy(), concurrency=concurrency, checkpoint=checkpoint,
                allow_insecure=allow_insecure, reference_date=_date(reference_date),
                retry=RetryPolicy(attempts=attempts), progress=progress,
            )  # fmt: skip
        ds.save(store, overwrite=overwrite)
        _say(str(ds.load_report))

    _run(body)


@app.command()
def report(
    out_dir: Annotated[Path, typer.Option("--out", help="report directory (written atomically)")],
    config: Annotated[Path | None, typer.Option("--config", help="report.toml")] = None,
    identities: IdentitiesOpt = None,
    demographics: DemographicsOpt = None,
    store: StoreOpt = None,
    by: Annotated[
        list[str] | None, typer.Option("--by", help="dimensions of one table, comma-separated; repeatable")
    ] = None,
    ledger: LedgerOpt = None,
    k: KOpt = None,
    reference_date: DateOpt = None,
) -> None:
    """Cohort tables (CSV, Parquet, JSON), report.html and audit.json, from flags or a config."""

    def body() -> None:
        if config is not None:
            if identities or demographics or store or by or ledger:
                raise ValueError("give either --config or the input and --by flags, not both")
            settings = ReportConfig.from_toml(config)
            if k is not None or reference_date is not None:
                settings = settings.model_copy(
                    update={"k": k or settings.k, "reference_date": _date(reference_date) or settings.reference_date}
                )
        else:
            if not by:
                raise ValueError("give --by (e.g. --by age,income,parental_status) or --config")
            if bool(identities) == bool(store):
                raise ValueError("give either --identities (with optional --demographics) or --store")
            tables = _cohorts_from_flags(by)
            settings = ReportConfig(
                input=InputSpec(
                    identities=[str(p) for p in identities or []],
                    demographics=[str(p) for p in demographics or []],
                    store=str(store) if store else None,
                    ledger=str(ledger) if ledger else None,
                ),
                k=k or 10,
                reference_date=_date(reference_date),
                cohorts=tables,
            )
        spec = settings.input
        policy = _policy(settings.k, settings.include_inactive)
        ds = _dataset(
            [Path(p) for p in spec.identities], [Path(p) for p in spec.demographics],
            Path(spec.store) if spec.store else None, policy, settings.reference_date,
            Path(spec.ledger) if spec.ledger else None,
        )  # fmt: skip
        inputs = [*spec.identities, *spec.demographics, *([spec.store] if spec.store else [])]
        with _status(f"computing {_count(settings.cohorts, 'cohort table')}, {_count(settings.segments, 'segment')}"):
            written = write_report(ds, settings, out_dir, inputs)
        _say(f"report written to {written}")

    _run(body)


@app.command()
def segment(
    definition: Annotated[Path, typer.Argument(help="segment file (.yaml or .json)")],
    identities: IdentitiesOpt = None,
    demographics: DemographicsOpt = None,
    store: StoreOpt = None,
    breakdown: Annotated[list[str] | None, typer.Option("--breakdown", help="dimensions, comma-separated")] = None,
    members: Annotated[Path | None, typer.Option("--members", help="write the member pseudonyms to this CSV")] = None,
    allow_minors: Annotated[bool, typer.Option(help="include minors in the member list")] = False,
    ledger: LedgerOpt = None,
    k: KOpt = None,
    reference_date: DateOpt = None,
) -> None:
    """Size a segment; optionally break it down and export its member pseudonyms."""

    def body() -> None:
        seg = ia.Segment.load(definition)
        ds = _dataset(identities, demographics, store, _policy(k), _date(reference_date), ledger)
        result = ds.segment(seg)
        _say(f"segment {seg.name}: {'suppressed (fewer than k)' if result.suppressed else f'{result.size:,}'}")
        for dims in breakdown or []:
            _say(str(result.breakdown([d.strip() for d in dims.split(",")])))
        if members is not None:
            with atomic_file(members) as work:
                result.members(allow_minors=allow_minors).to_pandas().to_csv(work, index=False)
            _say(f"member pseudonyms written to {members}")

    _run(body)


@app.command()
def profile(
    identity_id: Annotated[str, typer.Argument(help="identity id")],
    identities: IdentitiesOpt = None,
    demographics: DemographicsOpt = None,
    store: StoreOpt = None,
    public: Annotated[bool, typer.Option(help="the public profile")] = False,
) -> None:
    """Print a profile (or public profile) as JSON."""

    def body() -> None:
        ds = _dataset(identities, demographics, store, _policy(), None, publishes=False)
        view = ds.profiles.public(identity_id) if public else ds.profiles.get(identity_id)
        sys.stdout.write(json.dumps(view.to_json_dict(), indent=2, ensure_ascii=False) + "\n")

    _run(body)


@app.command()
def risk(
    qi: Annotated[str, typer.Option("--qi", help="quasi-identifiers, comma-separated")],
    sensitive: Annotated[str | None, typer.Option(help="sensitive attribute for l-diversity")] = None,
    identities: IdentitiesOpt = None,
    demographics: DemographicsOpt = None,
    store: StoreOpt = None,
    ledger: LedgerOpt = None,
    k: KOpt = None,
    reference_date: DateOpt = None,
) -> None:
    """k-anonymity of quasi-identifiers and l-diversity of a sensitive attribute."""

    def body() -> None:
        ds = _dataset(identities, demographics, store, _policy(k), _date(reference_date), ledger)
        result = ds.risk([q.strip() for q in qi.split(",")], sensitive=sensitive)
        _say(str(result))
        table = Table("class size", "classes")
        for band, classes in result.class_sizes.items():
            table.add_row(band, f"{classes:,}")
        out.print(table)

    _run(body)


@ledger_app.command("show")
def ledger_show(
    store: StoreOpt = None,
    ledger: Annotated[Path | None, typer.Option("--ledger", help="a ledger directory")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the entries as JSON lines")] = False,
) -> None:
    """List the releases (and resets) the ledger has recorded."""

    def body() -> None:
        entries = _ledger_of(store, ledger).history()
        if as_json:
            for entry in entries:
                sys.stdout.write(json.dumps(entry) + "\n")
            return
        table = Table("release", "at", "k", "counts", "member lists", "what")
        for entry in entries:
            if entry["kind"] == "reset":
                table.add_row("reset", str(entry["at"]), "", "", "", escape(f"reason: {entry['reason']}"))
            elif entry["kind"] == "release":
                table.add_row(
                    str(entry["release"]), str(entry["at"]), str(entry["k"]), f"{entry['counts']:,}",
                    str(entry["member_lists"]), escape(str(entry["label"])),
                )  # fmt: skip
        out.print(table)
        releases = sum(e["kind"] == "release" for e in entries)
        _say(f"{releases} release{'' if releases == 1 else 's'} recorded")

    _run(body)


@ledger_app.command("reset")
def ledger_reset(
    reason: Annotated[str, typer.Option("--reason", help="why; recorded in the ledger")],
    store: StoreOpt = None,
    ledger: Annotated[Path | None, typer.Option("--ledger", help="a ledger directory")] = None,
) -> None:
    """Forget every release so far (later answers are no longer audited against them); recorded."""

    def body() -> None:
        target = _ledger_of(store, ledger)
        target.reset(reason)
        _say(f"{target.description} reset; the reset is recorded with its reason")

    _run(body)


def main() -> Any:
    """Entry point of the ``identity-analytics`` command."""
    return app()


if __name__ == "__main__":
    main()
