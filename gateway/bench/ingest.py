"""``gateway bench ingest``: the whole national demo set through the push path.

Measured: every batch handed to :func:`receive_submission`, the function behind
``POST /api/v1/submissions`` (raw body kept, envelope and records validated against the
schema, regions authorised, precedence judged, versions and current view written), into a
fresh, migrated SQLite database.

Floor, in the same run: the same bodies parsed with orjson and the same rows (raw
submission, location, vacancy line and version rows) inserted with a bare ``executemany``
on the sqlite3 module into an empty database of the same schema.
"""

from __future__ import annotations

import sqlite3
import tempfile
import uuid
from pathlib import Path
from typing import Any

import orjson

from gateway.auth import create_token
from gateway.bench import print_result, stopwatch
from gateway.demo_loading import national_push_bodies
from gateway.ingest.submissions import receive_submission
from gateway.store.db import create_engine, session_factory, transaction, upgrade
from gateway.store.tables import utcnow


def _migrated(path: Path) -> str:
    url = f"sqlite:///{path}"
    upgrade(url)
    return url


def _floor(bodies: list[bytes], path: Path) -> float:
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    now = utcnow().replace(tzinfo=None).isoformat(sep=" ")
    with stopwatch() as elapsed:
        for body in bodies:
            submission_id = str(uuid.uuid4())
            connection.execute(
                "INSERT INTO submission (id, source, token_id, request_hash, body, received_at,"
                " accepted, unchanged, stale, rejected) VALUES (?,?,?,?,?,?,0,0,0,0)",
                (submission_id, "bench", "bench", "", body, now),
            )
            records = orjson.loads(body)["locations"]
            locations, lines, versions = [], [], []
            for record in records:
                cqc_id = record["cqc_location_id"]
                address = record.get("address") or {}
                provider = record.get("provider") or {}
                locations.append(
                    (
                        cqc_id,
                        record["name"],
                        provider.get("cqc_provider_id"),
                        provider.get("name"),
                        record.get("nhs_region"),
                        record.get("local_authority"),
                        address.get("line1"),
                        address.get("postcode"),
                        address.get("town"),
                        record.get("provider_type"),
                        orjson.dumps(record.get("short_stay_services", [])),
                        orjson.dumps(record.get("languages", [])),
                        record.get("notes"),
                        orjson.dumps(record.get("funding_sources", [])),
                        b"[]",
                        b"[]",
                        record.get("accepting_admissions"),
                        record.get("active", True),
                        b"[]",
                        "bench",
                        record["updated_at"],
                        now,
                        0,
                        "",
                    )
                )
                for line in record["vacancies"]:
                    lines.append(
                        (
                            cqc_id,
                            line["vacancy_type"],
                            line["vacancy_type"],
                            line.get("weekly_price_from"),
                            line["maximum_capacity"],
                            line["occupied"],
                            line["reserved"],
                            line["admittable"],
                            line["unavailable"],
                            orjson.dumps(line.get("unavailable_reasons", [])),
                            line.get("flexible", False),
                            True,
                            b"[]",
                        )
                    )
                versions.append(
                    (
                        cqc_id,
                        provider.get("cqc_provider_id"),
                        "bench",
                        record["updated_at"],
                        now,
                        now,
                        submission_id,
                        "",
                        orjson.dumps(record),
                    )
                )
            connection.executemany(
                "INSERT OR REPLACE INTO location (cqc_location_id, name, cqc_provider_id, provider_name,"
                " nhs_region, local_authority, address_line1, postcode, town, provider_type,"
                " short_stay_services, languages, notes, funding_sources,"
                " contracts_with_local_authorities, contracts_with_sub_icbs, accepting_admissions,"
                " active, quality_flags, source, source_updated_at, received_at, version_id,"
                " content_hash, entered_capacity)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,0)",
                locations,
            )
            connection.executemany(
                "INSERT OR REPLACE INTO vacancy_line (cqc_location_id, line_key, vacancy_type,"
                " weekly_price_from, maximum_capacity, occupied, reserved, admittable, unavailable,"
                " unavailable_reasons, flexible, consistent, quality_flags)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                lines,
            )
            connection.executemany(
                "INSERT INTO location_version (cqc_location_id, cqc_provider_id, source,"
                " source_updated_at, received_at, recorded_at, submission_id, content_hash, record)"
                " VALUES (?,?,?,?,?,?,?,?,?)",
                versions,
            )
            connection.commit()
        seconds = elapsed()
    connection.close()
    return seconds


def bench_ingest(data_dir: Path | None = None) -> dict[str, Any]:
    """Run the ingest benchmark and print its table and JSON line."""
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        work = Path(tmp)
        bodies = national_push_bodies(data_dir or work / "demo-data")
        records = sum(len(orjson.loads(b)["locations"]) for b in bodies)
        lines = sum(len(r["vacancies"]) for b in bodies for r in orjson.loads(b)["locations"])

        url = _migrated(work / "gateway.db")
        engine = create_engine(url)
        factory = session_factory(engine)
        with transaction(factory) as session:
            token, _ = create_token(session, name="bench-tracker", scopes=["submit"], regions=["all"])
        from gateway.auth import Principal

        principal = Principal(token.id, token.name, frozenset(token.scopes), frozenset(token.regions))
        summary = {"accepted": 0, "rejected": 0, "unchanged": 0, "stale": 0}
        with stopwatch() as elapsed:
            for body in bodies:
                outcome = receive_submission(factory, principal, body, content_type="application/json")
                for key, value in outcome.body["summary"].items():
                    summary[key] += value
            seconds = elapsed()
        engine.dispose()

        floor_url = _migrated(work / "floor.db")
        floor_s = _floor(bodies, Path(floor_url.split("///", 1)[1]))

    ratio = seconds / floor_s
    figures = {
        "bench": "ingest",
        "batches": len(bodies),
        "locations": records,
        "vacancy_lines": lines,
        "accepted": summary["accepted"],
        "rejected": summary["rejected"],
        "seconds": round(seconds, 3),
        "records_per_s": round(records / seconds, 1),
        "floor_s": round(floor_s, 3),
        "ratio": round(ratio, 2),
    }
    print_result(
        "ingest: national demo set through the push path (SQLite)",
        [
            ("batches", str(len(bodies))),
            ("locations / vacancy lines", f"{records} / {lines}"),
            ("accepted / rejected", f"{summary['accepted']} / {summary['rejected']}"),
            ("gateway seconds", f"{seconds:.3f}"),
            ("records per second", f"{records / seconds:,.0f}"),
            ("floor seconds (orjson + bare executemany)", f"{floor_s:.3f}"),
            ("ratio (target at most 3)", f"{ratio:.2f}"),
        ],
        figures,
    )
    return figures
