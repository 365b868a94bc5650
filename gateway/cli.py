"""The ``gateway`` command: serve, migrate, mint tokens, build demo data, sync, benchmark."""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich import box
from rich.console import Console
from rich.table import Column, Table
from sqlalchemy.orm import Session, sessionmaker

from gateway.settings import MAX_DAYS, get_settings

app = typer.Typer(
    help="National Care Capacity Gateway: one national view of care-home bed capacity.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)
token_app = typer.Typer(help="Bearer tokens for trackers, readers and admins.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(token_app, name="token")
console = Console()
# What went wrong goes to stderr, so a script reading a command's output (a token from
# ``token create``, the JSON of ``sources --json``) never takes an error for it.
errors = Console(stderr=True)
T = TypeVar("T")


@contextmanager
def _database(*, migrate: bool = True) -> Iterator[sessionmaker[Session]]:
    """Sessions on the database GATEWAY_DATABASE_URL names (brought to the latest schema
    first unless ``migrate`` is false); its connections are closed when the block ends."""
    import sqlalchemy as sa

    from gateway.store.db import check_schema, create_engine, session_factory, sqlite_file_missing, upgrade

    url = get_settings().database_url
    if migrate:
        with _answering():
            _said(upgrade(url))
    elif sqlite_file_missing(url):
        # Connecting would create an empty file there, then call it never migrated: a
        # mistyped path followed by gateway db upgrade would make a second, empty gateway.
        missing = sa.engine.make_url(url).database
        errors.print(
            f"[red]GATEWAY_DATABASE_URL: there is no database file at {missing}[/red]",
            highlight=False,
            soft_wrap=True,  # a path copied whole, not broken across lines
        )
        raise typer.Exit(2)
    engine = create_engine(url)
    try:
        with _answering():
            schema = None if migrate else check_schema(engine)
        if schema is not None and not schema.ready:
            errors.print(f"[red]GATEWAY_DATABASE_URL: {schema.detail}[/red]", highlight=False)
            raise typer.Exit(2)
        yield session_factory(engine)
    finally:
        engine.dispose()


def _said(newer: str | None) -> None:
    """Say on stderr that the database was left as a newer release migrated it."""
    if newer is not None:
        errors.print(f"not migrated: {newer}", highlight=False)


@contextmanager
def _answering() -> Iterator[None]:
    """Say plainly, with exit status 2, that the database does not answer (down,
    restarting, locked) if it stops answering in the block, instead of a traceback: its
    driver's error class only, never its text (which may quote SQL parameters)."""
    from gateway.store.db import database_fault, database_unavailable

    try:
        yield
    except Exception as error:
        if not database_unavailable(error):
            raise
        said = f"GATEWAY_DATABASE_URL: the database does not answer ({database_fault(error)})"
        errors.print(f"[red]{said}[/red]", highlight=False)
        raise typer.Exit(2) from None


def _split(values: list[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


@app.callback()
def _logging() -> None:
    """Every command logs as GATEWAY_LOG_FORMAT says, warnings and worse (``serve`` as its
    --log-level says): a sync's retries, say, print above its progress bar."""
    from gateway.logs import configure_logging

    configure_logging("warning", get_settings().log_format, console=Console(stderr=True))


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Bring the database named by GATEWAY_DATABASE_URL to the latest schema."""
    from gateway.store.db import upgrade

    with _answering():
        newer = upgrade(get_settings().database_url, revision)
    if newer is not None:
        _said(newer)
        return
    console.print(f"database at revision {revision}")


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="Who the token is for; pushes are recorded under it")],
    scopes: Annotated[list[str], typer.Option(help="submit, read, admin (comma-separated)")],
    regions: Annotated[
        list[str] | None,
        typer.Option(help="NHS regions a tracker may write (codes or names, or 'all')"),
    ] = None,
    expires_in_days: Annotated[
        float | None,
        typer.Option(min=0, max=MAX_DAYS, help="Stop working after this many days (unset: never)"),
    ] = None,
) -> None:
    """Mint a token and print it once: only its digest is stored."""
    from gateway.auth import create_token
    from gateway.store.db import transaction
    from gateway.store.tables import utcnow

    expires_at = utcnow() + timedelta(days=expires_in_days) if expires_in_days is not None else None
    try:
        with _database() as factory, transaction(factory) as session:
            token, plain = create_token(
                session,
                name=name,
                scopes=_split(scopes),
                regions=_split(regions or []),
                expires_at=expires_at,
            )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    expiry = f"; expires {expires_at.isoformat(timespec='seconds')}" if expires_at else ""
    console.print(
        f"token for [bold]{token.name}[/] (scopes {', '.join(token.scopes)}; "
        f"regions {', '.join(token.regions) or 'none'}{expiry}); shown once:"
    )
    print(plain)


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str | None, typer.Argument(help="The token's id ('gateway token list')")] = None,
    name: Annotated[str | None, typer.Option(help="Revoke every token of this name still in use")] = None,
) -> None:
    """Revoke a token, by id or by name: it stops working within GATEWAY_AUTH_CACHE_S."""
    from gateway.auth import revoke_tokens
    from gateway.store.db import transaction

    try:
        with _database(migrate=False) as factory, transaction(factory) as session:
            revoked = [(t.id, t.name) for t in revoke_tokens(session, token_id=token_id, name=name)]
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    for revoked_id, revoked_name in revoked:
        console.print(f"revoked {revoked_id} ({revoked_name})")
    console.print(f"gateway processes stop taking it within {get_settings().auth_cache_s:g} s")


@token_app.command("list")
def token_list() -> None:
    """List tokens (names, scopes, regions; never the tokens themselves)."""
    from gateway.store import repository
    from gateway.store.tables import utcnow

    # Two lines a token: its id (what `token revoke` takes, never cut short however narrow
    # the terminal or a pipe's 80 columns) and name, then the rest, which may wrap. A table
    # of seven columns squeezed the dates into slivers at 80 columns.
    now = utcnow()
    with _database(migrate=False) as factory, factory() as session:
        tokens = repository.list_tokens(session)
        if not tokens:
            console.print("no tokens yet: gateway token create mints one")
        for t in tokens:
            if t.revoked_at is not None:
                state = f"revoked {_minute(t.revoked_at)}"
            elif t.expires_at is not None and t.expires_at <= now:
                state = "expired"
            else:
                state = "in use"
            console.print(f"[bold]{t.id}[/bold]  {t.name}", highlight=False, soft_wrap=True)
            console.print(
                f"    scopes {','.join(t.scopes)}; regions {','.join(t.regions) or 'none'}; "
                f"created {_minute(t.created_at)}; "
                f"expires {_minute(t.expires_at) if t.expires_at else 'never'}; {state}",
                highlight=False,
            )


def _minute(moment: datetime) -> str:
    """An instant to the minute in UTC, in one word (a wrapped line never splits it)."""
    return moment.strftime("%Y-%m-%dT%H:%MZ")


@app.command("serve")
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: Annotated[int, typer.Option(help="Gateway processes side by side")] = 1,
    migrate: Annotated[bool, typer.Option(help="Run migrations first")] = True,
    log_level: Annotated[str, typer.Option(help="critical, error, warning, info or debug")] = "info",
    access_log: Annotated[bool, typer.Option(help="Log a line per request")] = True,
) -> None:
    """Run the gateway's HTTP server."""
    import uvicorn

    from gateway.logs import log_config
    from gateway.store.db import upgrade

    settings = get_settings()
    try:
        logs = log_config(log_level, settings.log_format)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--log-level") from None
    if migrate:
        with _answering():
            _said(upgrade(settings.database_url))
    with _shared_metrics(workers):
        uvicorn.run(
            "gateway.api.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_config=logs,
            log_level=log_level,
            access_log=access_log,
        )


@contextmanager
def _shared_metrics(workers: int) -> Iterator[None]:
    """Several workers behind one port keep their metrics in a folder they share (made
    for the run, unless the environment names one), so any of them answers a scrape with
    the counts of all."""
    if workers < 2 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="gateway-metrics-") as folder:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
        try:
            yield
        finally:
            del os.environ["PROMETHEUS_MULTIPROC_DIR"]


@app.command("demo-data")
def demo_data(
    out: Annotated[Path, typer.Option(help="Folder to write the data set into")],
    seed: Annotated[int, typer.Option(help="Same seed, same files")] = 2023,
) -> None:
    """Generate the deterministic national demo data set."""
    from gateway.demoset import generate

    manifest = generate(out, seed=seed)
    table = Table("NHS region", "locations", "maximum capacity", "occupied", title="demo care homes")
    for region, row in sorted(manifest.get("regions", {}).items()):
        table.add_row(
            region, str(row.get("locations")), str(row.get("maximum_capacity")), str(row.get("occupied"))
        )
    console.print(table)
    console.print(f"written to {out}")


@app.command("demo")
def demo(
    port: int = 8000,
    data: Annotated[Path, typer.Option(help="Demo data folder (built if missing)")] = Path("var/demo-data"),
) -> None:
    """Run the gateway with the national demo data, simulators and all."""
    from gateway.demo_stack import run_demo

    run_demo(port=port, data_dir=data)


@app.command("sync")
def sync_command(
    source: Annotated[str, typer.Argument(help="london or cqc")],
    full: Annotated[bool, typer.Option(help="cqc: a full sync (else incremental)")] = False,
) -> None:
    """Run one sync of a source now, with a progress bar and a summary."""
    import httpx
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from gateway.store.tables import SUCCEEDED
    from gateway.sync.sources import PULLED_SOURCES, SyncContext

    settings = get_settings()
    spec = PULLED_SOURCES.get(source)
    if spec is None:
        raise typer.BadParameter(f"unknown source {source!r}; choose from {', '.join(PULLED_SOURCES)}")
    if not spec.configured(settings):
        raise typer.BadParameter(f"{source} is not configured (see the README's settings)")
    job = next((j for j in spec.jobs if j.kind == ("full" if full else "incremental")), spec.jobs[0])

    async def with_progress(factory: sessionmaker[Session]) -> object:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed} records"),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task(f"sync {source} ({job.kind})", total=None)

            def report(done: int, total: int | None) -> None:
                progress.update(task, completed=done, total=total)

            async with httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=10.0)) as http:
                return await job.run(SyncContext(factory, http, settings, progress=report))

    with _database() as factory:
        # The source's lease, as the gateway's scheduler takes it: never two runs at once.
        result = _holding_lease(factory, source, lambda: with_progress(factory), f"a sync of {source}")
    row = result.model_dump(mode="json")  # type: ignore[attr-defined]
    table = Table("measure", "value", title=f"sync run {row['id']} of {source}: {row['status']}")
    for key in (
        "pages",
        "records_seen",
        "accepted",
        "unchanged",
        "stale",
        "rejected",
        "held",
        "error_class",
        "error_message",
    ):
        table.add_row(key, str(row[key]))
    console.print(table)
    for rejection in row["rejections"][:20]:
        console.print(f"rejected {rejection['ref']}: {'; '.join(rejection['reasons'])}")
    if row["status"] != SUCCEEDED:
        raise typer.Exit(1)


async def _thread_to_its_end(work: Callable[[], T], stop: threading.Event | None = None) -> T:
    """Run ``work`` in a thread. Stopped (Ctrl-C), it sets ``stop`` and waits for the thread
    to end before stopping in turn: a thread cannot be stopped, so the lease held around
    this goes only once the work has, and no gateway process runs the same work beside it."""
    working = asyncio.ensure_future(asyncio.to_thread(work))
    try:
        return await asyncio.shield(working)
    except asyncio.CancelledError:
        if stop is not None:
            stop.set()
        errors.print("stopping: the work under way ends first (its lease is held until then)")
        await working
        raise


def _holding_lease(
    factory: sessionmaker[Session], name: str, work: Callable[[], Awaitable[T]], what: str
) -> T:
    """Await ``work()`` while holding ``name``'s lease, as the gateway's scheduler takes it
    (never two runs at once); exit with status 1, saying ``what`` is running, when a
    gateway process holds it."""
    from gateway.bench import run_async
    from gateway.sync.scheduler import lease_holder, source_lease

    async def leased() -> tuple[bool, T | None]:
        ttl = timedelta(seconds=get_settings().sync_lease_s)
        async with source_lease(factory, name, lease_holder(), ttl) as held:
            return (True, await work()) if held else (False, None)

    with _answering():
        held, result = run_async(leased())
    if not held:
        errors.print(f"[red]{what} is running in another gateway process; try again later[/red]")
        raise typer.Exit(1)
    return result  # type: ignore[return-value]


@app.command("sources")
def sources_command(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object, as GET /api/v1/sources")] = False,
) -> None:
    """Each source's health, as GET /api/v1/sources gives it: status, last sync, failures
    in a row, age of its newest data. Exit status 1 when any source is failing."""
    import orjson

    from gateway.sync.health import source_health

    with _database(migrate=False) as factory, factory() as session:
        # Every source that has run, though its upstream settings are the gateway's, not
        # this command's: a monitor must see London failing wherever it runs.
        health = source_health(session, get_settings(), every_pulled=True)
    if as_json:
        print(orjson.dumps({"sources": health}).decode())
    else:
        errors = any(row["last_error_class"] for row in health)
        table = Table(
            Column("source", no_wrap=True),
            Column("status", no_wrap=True),
            Column("last success", no_wrap=True),
            Column("fails", no_wrap=True),
            Column("data age", no_wrap=True),
            *([Column("last error", overflow="fold")] if errors else []),
            title="sources (times in UTC)",
            box=box.SIMPLE_HEAD,
            show_edge=False,
            collapse_padding=True,
        )
        for row in health:
            success = row["last_successful_sync"]
            table.add_row(
                row["source"],
                row["status"],
                success[:16].replace("T", " ") if success else "never",
                str(row["consecutive_failures"]),
                _age(row["newest_data_age_seconds"]),
                *([row["last_error_class"] or ""] if errors else []),
            )
        console.print(table if health else "no source has synced or pushed yet")
    if any(row["status"] == "failing" for row in health):
        raise typer.Exit(1)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "no data"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 120 else f"{minutes / 60:.1f} h"


@app.command("reconcile")
def reconcile_command() -> None:
    """Compare every tracker with the CQC registry once and print the findings' counts."""
    from gateway.reconcile.service import ReconcileSummary, reconcile
    from gateway.store.db import transaction

    settings = get_settings()
    with _database() as factory:

        def work() -> ReconcileSummary:
            with transaction(factory) as session:
                return reconcile(session, recent=timedelta(seconds=settings.push_freshness_target_s))

        summary = _holding_lease(factory, "reconcile", lambda: _thread_to_its_end(work), "reconciliation")
    table = Table("finding kind", "open", title="reconciliation")
    for kind, count in sorted(summary.open_by_kind.items()):
        table.add_row(kind, str(count))
    console.print(table)
    console.print(
        f"opened {summary.opened}, closed {summary.closed}; matching: linked {summary.linked}, "
        f"queued for review {summary.queued_for_review}, unmatched {summary.unmatched}"
    )


@app.command("discard-bodies")
def discard_bodies_command(
    older_than_days: Annotated[
        float | None,
        typer.Option(
            min=0, max=MAX_DAYS, help="Retention in days (default: GATEWAY_PUSH_BODY_RETENTION_DAYS)"
        ),
    ] = None,
) -> None:
    """Discard the raw bodies of pushes older than the retention period now (the pushes'
    records, answers and counts stay)."""
    from rich.progress import Progress, TextColumn, TimeElapsedColumn

    from gateway.ingest.retention import discard_old_bodies

    settings = get_settings()
    days = older_than_days if older_than_days is not None else settings.push_body_retention_days
    if days is None:
        raise typer.BadParameter(
            "give --older-than-days, or set GATEWAY_PUSH_BODY_RETENTION_DAYS", param_hint="--older-than-days"
        )
    with (
        _database() as factory,
        Progress(
            TextColumn("discarding push bodies older than {task.fields[days]} days"),
            TextColumn("{task.completed} discarded"),
            TimeElapsedColumn(),
            console=console,
        ) as progress,
    ):
        task = progress.add_task("discard", total=None, days=f"{days:g}")

        stop = threading.Event()

        def work() -> int:
            return discard_old_bodies(
                factory,
                timedelta(days=days),
                progress=lambda n: progress.update(task, completed=n),
                stop=stop,
            )

        discarded = _holding_lease(
            factory, "push-body-retention", lambda: _thread_to_its_end(work, stop), "push body retention"
        )
    console.print(f"discarded the raw bodies of {discarded} pushes received more than {days:g} days ago")


@app.command("bench")
def bench(name: Annotated[str, typer.Argument(help="ingest, london, cqc, fhir or search")]) -> None:
    """Run a benchmark; its last line is one JSON object with its figures."""
    from gateway.bench import run_benchmark

    run_benchmark(name)


def main() -> None:
    """The ``gateway`` command: bad settings are said plainly (exit status 2), not as a
    traceback."""
    from gateway.settings import SettingsError

    try:
        app()
    except SettingsError as exc:
        errors.print(f"[red]{exc}[/red]", highlight=False)
        raise SystemExit(2) from None


if __name__ == "__main__":  # pragma: no cover
    main()
