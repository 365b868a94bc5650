"""``gateway sources``: each source's health from the command line, as GET /api/v1/sources
gives it, with exit status 1 while any source is failing."""

from __future__ import annotations

import orjson
from sqlalchemy.orm import Session, sessionmaker

from adapters.common.http import TransientUpstreamError
from gateway.auth import Principal
from gateway.ingest.submissions import receive_submission
from gateway.store.tables import utcnow
from gateway.sync.runs import RunCounts, finish_run, start_run
from tests.conftest import GatewayCli
from tests.factories import batch, location

LONDON = {
    "GATEWAY_LONDON_BASE_URL": "http://127.0.0.1:9",
    "GATEWAY_LONDON_CLIENT_ID": "gw",
    "GATEWAY_LONDON_CLIENT_SECRET": "s3cret",
    "GATEWAY_SOURCE_FAILING_AFTER": "2",
}


def _london_fails(factory: sessionmaker[Session], times: int) -> None:
    for _ in range(times):
        run_id = start_run(factory, "london", "incremental")
        finish_run(
            factory, run_id, RunCounts(), TransientUpstreamError("GET /homes: HTTP 503", status_code=503)
        )


def _tracker_pushed(factory: sessionmaker[Session]) -> None:
    principal = Principal("t", "tracker-north-west", frozenset({"submit"}), frozenset({"north-west"}))
    body = orjson.dumps(batch(location("1-500000001", updated_at=utcnow().isoformat())))
    assert receive_submission(factory, principal, body).status_code == 200


def test_nothing_yet_is_said_plainly(gateway_cli: GatewayCli) -> None:
    done = gateway_cli("sources")
    assert done.exit_code == 0, done.output
    assert "no source has synced or pushed yet" in done.output


def test_a_failing_source_is_shown_and_sets_the_exit_status(
    gateway_cli: GatewayCli, factory: sessionmaker[Session]
) -> None:
    _tracker_pushed(factory)
    _london_fails(factory, 1)
    once = gateway_cli("sources", **LONDON)
    assert once.exit_code == 0, once.output  # one failure: degraded at worst, not failing
    _london_fails(factory, 1)
    done = gateway_cli("sources", **LONDON)
    assert done.exit_code == 1, done.output
    rows = {line.split()[0]: line.split() for line in done.output.splitlines() if line.strip()}
    assert rows["london"][1:2] == ["failing"] and rows["london"][-1] == "transient"
    assert rows["tracker-north-west"][1] == "ok"
    assert "s3cret" not in done.output


def test_json_is_what_the_api_serves(gateway_cli: GatewayCli, factory: sessionmaker[Session]) -> None:
    _tracker_pushed(factory)
    done = gateway_cli("sources", "--json", GATEWAY_LONDON_BASE_URL=None)
    assert done.exit_code == 0, done.output
    (source,) = orjson.loads(done.output)["sources"]
    assert (source["source"], source["kind"], source["status"]) == ("tracker-north-west", "push", "ok")
    assert source["newest_data_age_seconds"] is not None and source["consecutive_failures"] == 0


def test_a_pulled_source_that_has_run_is_shown_without_its_settings(
    gateway_cli: GatewayCli, factory: sessionmaker[Session]
) -> None:
    """A monitor run where the gateway's upstream settings are not still sees London."""
    _london_fails(factory, 3)
    done = gateway_cli("sources", GATEWAY_LONDON_BASE_URL=None, GATEWAY_CQC_BASE_URL=None)
    assert done.exit_code == 1, done.output
    rows = {line.split()[0]: line.split() for line in done.output.splitlines() if line.strip()}
    assert rows["london"][1] == "failing"
    assert "cqc" not in rows  # never run here: nothing to show
