"""Reads, version reads and history (the mCSD ITI-91 change feed).

Every version of every resource comes from one ``location_version`` row:
- a Location version per location version;
- a HealthcareService version per vacancy line in it, and an inactive one for each
  vacancy type the location stopped offering in it (retired entries are never deleted);
- an Organization version per location version that names a provider, and an inactive
  one for the version in which its last location stopped naming it (moved to another
  provider, or names none); a location naming it again makes it active again.

Instance history (``GET /fhir/{type}/{id}/_history``) is newest first, as R4 asks of
history. The type-level feed (``GET /fhir/{type}/_history?_since=``) lists versions recorded in
[``_since``, horizon), oldest first; the horizon is taken under the change clock, so no
version can later be recorded before it. It is the Bundle's ``meta.lastUpdated``: a
consumer that polls again with ``_since`` set to it sees every change exactly once.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from adapters.fhir.outbound import render
from adapters.fhir.outbound.render import LocationSnapshot
from gateway.errors import NotFound
from gateway.fhir import params as P
from gateway.fhir.bundles import bundle, decode_cursor, encode_cursor, history_entry, page_url
from gateway.fhir.criteria import SERVICE_ID
from gateway.fhir.search import organization_resources, organizations
from gateway.store import fhir as store
from gateway.store.fhir import OrganizationVersion, organization_versions

RESOURCE_TYPES = ("Location", "HealthcareService", "Organization")


def _service_versions(
    versions: list[LocationSnapshot], vacancy_type: str
) -> list[tuple[dict[str, Any], bool]]:
    """The versions of one location's service of one vacancy type, oldest first, each
    with whether it was the first."""
    out: list[tuple[dict[str, Any], bool]] = []
    previous: dict[str, Any] | None = None
    for snapshot in versions:
        lines = {ln["vacancy_type"]: ln for ln in render.national_lines(snapshot.record)}
        had = previous is not None and vacancy_type in previous
        if vacancy_type in lines or had:
            out.append((render.render_service(snapshot, lines.get(vacancy_type), vacancy_type), not out))
        previous = lines
    return out


def _organizations(
    session: Session, provider_id: str, versions: list[OrganizationVersion]
) -> list[dict[str, Any]]:
    """The Organization resources of the given versions of one provider, in their order."""
    return organization_resources(session, [(provider_id, version) for version in versions])


def _instance_versions(
    session: Session, resource_type: str, resource_id: str
) -> list[tuple[dict[str, Any], bool]]:
    """Every version of one resource, oldest first, each with whether it was the first."""
    if resource_type == "Location":
        versions = store.location_versions(session, resource_id)
        return [(render.render_location(s), i == 0) for i, s in enumerate(versions)]
    if resource_type == "HealthcareService":
        found = SERVICE_ID.match(resource_id)
        if not found:
            return []
        return _service_versions(store.location_versions(session, found.group(1)), found.group(2))
    org_versions = _organization_versions(session, resource_id)
    resources = _organizations(session, resource_id, org_versions)
    return [(resource, i == 0) for i, resource in enumerate(resources)]


def _organization_versions(session: Session, provider_id: str) -> list[OrganizationVersion]:
    """Every version of the provider's Organization, oldest first."""
    return organization_versions(provider_id, store.provider_timeline(session, provider_id))


def read(session: Session, resource_type: str, resource_id: str) -> dict[str, Any]:
    """The current version of a resource, or NotFound."""
    if resource_type == "Location":
        current = store.current_version_ids(session, [resource_id]).get(resource_id)
        found = store.versions_by_id(session, [current]) if current is not None else []
        if found:
            return render.render_location(found[0])
    elif resource_type == "Organization":
        orgs = organizations(session, [resource_id])
        if orgs:
            return orgs[0]
        # No location names the provider now: its last version, inactive, if it was ever named.
        retired = _organization_versions(session, resource_id)
        if retired:
            return _organizations(session, resource_id, retired[-1:])[0]
    elif resource_type == "HealthcareService":
        versions = _instance_versions(session, resource_type, resource_id)
        if versions:
            return versions[-1][0]
    raise NotFound(f"{resource_type}/{resource_id} is not known to the gateway")


def vread(session: Session, resource_type: str, resource_id: str, version_id: str) -> dict[str, Any]:
    if resource_type == "Organization":
        versions = _organization_versions(session, resource_id)
        wanted = [v for v in versions if str(v.version_id) == version_id]
        if wanted:
            return _organizations(session, resource_id, wanted)[0]
        raise NotFound(f"{resource_type}/{resource_id} has no version {version_id}")
    for resource, _ in _instance_versions(session, resource_type, resource_id):
        if resource["meta"]["versionId"] == version_id:
            return resource
    raise NotFound(f"{resource_type}/{resource_id} has no version {version_id}")


INSTANCE_HISTORY_PARAMETERS = ("_since", "_count", "_cursor", "_format")


def _recorded(resource: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(resource["meta"]["lastUpdated"]).replace("Z", "+00:00"))


def instance_history(
    session: Session,
    base: str,
    resource_type: str,
    resource_id: str,
    items: list[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """The versions of one resource as a history Bundle, newest first (R4: "sorted with
    oldest versions last"), unlike the type's change feed, which mCSD polls oldest first.

    ``_since`` keeps the versions recorded at or after it; ``_count`` pages them, a ``next``
    link resuming after the last version shown (by its id, so versions recorded between
    pages neither repeat nor push others out). Other parameters are refused (400): ignored,
    they would answer another question than the one asked.
    """
    items = items or []
    for key, _ in items:
        if key not in INSTANCE_HISTORY_PARAMETERS:
            raise P.bad(
                key, f"not supported on history; use {', '.join(sorted(INSTANCE_HISTORY_PARAMETERS))}"
            )
    given = dict(items)
    since = P.parse_date("_since", given["_since"]).low if "_since" in given else None
    count = P.parse_count(given.get("_count")) if "_count" in given else None
    assert isinstance(since, datetime | None)
    versions = _instance_versions(session, resource_type, resource_id)
    if not versions:
        raise NotFound(f"{resource_type}/{resource_id} is not known to the gateway")
    newest_first = [
        (resource, first)
        for resource, first in reversed(versions)
        if since is None or _recorded(resource) >= since
    ]
    if "_cursor" in given:
        after = decode_cursor(given["_cursor"]).get("before")
        shown = [str(resource["meta"]["versionId"]) for resource, _ in newest_first]
        if not isinstance(after, str) or after not in shown:
            raise P.bad("_cursor", "not a paging cursor this gateway made; follow the Bundle's links")
        following = newest_first[shown.index(after) + 1 :]
    else:
        following = newest_first
    page = following if count is None else following[:count]
    path = f"{resource_type}/{resource_id}/_history"
    links = [("self", page_url(base, path, items))]
    if len(following) > len(page) and page:
        cursor = encode_cursor({"before": str(page[-1][0]["meta"]["versionId"])})
        links.append(
            (
                "next",
                page_url(base, path, [*((k, v) for k, v in items if k != "_cursor"), ("_cursor", cursor)]),
            )
        )
    entries = [history_entry(base, resource, first) for resource, first in page]
    return bundle("history", entries, links, total=len(newest_first))


def _feed(
    session: Session,
    resource_type: str,
    since: datetime | None,
    horizon: datetime,
    after: tuple[datetime, int, str] | None,
) -> Iterator[tuple[tuple[datetime, int, str], dict[str, Any], bool]]:
    """The type's feed entries after ``after``, in order: (key, resource, first)."""
    key = (after[0], after[1]) if after else None
    skip_within = after[2] if after else None
    names: dict[str, str] = {}
    while True:
        # Resuming within a version (a page ended among its services): read it again.
        batch = store.feed_versions(
            session, since=since, horizon=horizon, after=key, limit=200, inclusive=skip_within is not None
        )
        if not batch:
            return
        previous = store.previous_records(session, [(s.cqc_location_id, s.version_id) for s in batch])
        # Whether an entry is its resource's first version, as instance history says: found
        # for the whole batch at once (a query per entry would cost one per version paged).
        first_named: dict[str, int] = {}
        reoffered: set[tuple[str, str, int]] = set()
        if resource_type == "Organization":
            named = {s.provider_id for s in batch} | {_provider_id(r) for r in previous.values()}
            names.update(store.provider_names(session, {p for p in named if p}))
            first_named = store.first_naming_versions(
                session, {s.provider_id for s in batch if s.provider_id}
            )
        elif resource_type == "HealthcareService":
            reoffered = store.offered_before(session, _new_offers(batch, previous))
        for snapshot in batch:
            position = (snapshot.recorded_at, snapshot.version_id)
            prior = previous.get(snapshot.version_id)
            if resource_type == "Location":
                items = [("", render.render_location(snapshot), prior is None)]
            elif resource_type == "Organization":
                items = _organization_items(session, snapshot, prior, names, first_named)
            else:
                before = {ln["vacancy_type"] for ln in render.national_lines(prior or {})}
                items = []
                for res in render.render_services(snapshot, prior):
                    vacancy_type = res["type"][0]["coding"][0]["code"]
                    offered_earlier = (
                        snapshot.cqc_location_id,
                        vacancy_type,
                        snapshot.version_id,
                    ) in reoffered
                    items.append((res["id"], res, vacancy_type not in before and not offered_earlier))
            for sub, resource, first in items:
                if key is not None and position == key and skip_within is not None and sub <= skip_within:
                    continue
                yield (position[0], position[1], sub), resource, first
            skip_within = None
        last = batch[-1]
        key = (last.recorded_at, last.version_id)


def _new_offers(
    batch: list[LocationSnapshot], previous: dict[int, dict[str, Any]]
) -> list[tuple[str, str, int]]:
    """(location, vacancy type, version) of each service a version offers that the version
    before it did not: new, unless an older version offered it (then offered again)."""
    out = []
    for snapshot in batch:
        prior = previous.get(snapshot.version_id)
        if prior is None:
            continue  # the location's first version: every service in it is new
        before = {ln["vacancy_type"] for ln in render.national_lines(prior)}
        for line in render.national_lines(snapshot.record):
            if line["vacancy_type"] not in before:
                out.append((snapshot.cqc_location_id, line["vacancy_type"], snapshot.version_id))
    return out


def _provider_id(record: dict[str, Any] | None) -> str | None:
    found: str | None = ((record or {}).get("provider") or {}).get("cqc_provider_id")
    return found


def _organization_items(
    session: Session,
    snapshot: LocationSnapshot,
    prior: dict[str, Any] | None,
    names: dict[str, str],
    first_named: dict[str, int],
) -> list[tuple[str, dict[str, Any], bool]]:
    """The Organization versions one location version makes, in feed order: the provider
    it names (position ""; its first version when no earlier version named the provider,
    ``first_named`` giving the first that did), then the provider it stopped naming
    (position: its id) when no other location names that one any more (retired, inactive)."""
    items: list[tuple[str, dict[str, Any], bool]] = []
    org = render.render_organization(snapshot, names.get(snapshot.provider_id or ""))
    if org is not None:
        first = first_named.get(snapshot.provider_id or "") == snapshot.version_id
        items.append(("", org, first))
    left = _provider_id(prior)
    if left and left != snapshot.provider_id and not store.still_named(session, left, snapshot.version_id):
        assert prior is not None
        retired = render.render_retired_organization(snapshot, prior["provider"], names.get(left))
        items.append((left, retired, False))
    return items


def type_history(
    session: Session,
    factory: sessionmaker[Session],
    base: str,
    resource_type: str,
    items: list[tuple[str, str]],
) -> dict[str, Any]:
    """A page of the type's change feed as a history Bundle (oldest first)."""
    allowed = {"_since", "_count", "_cursor", "_format"}
    for key, _ in items:
        if key not in allowed:
            raise P.bad(key, f"not supported on history; use {', '.join(sorted(allowed))}")
    given = dict(items)
    since = P.parse_date("_since", given["_since"]).low if "_since" in given else None
    count = P.parse_count(given.get("_count"))
    if count == 0:
        # A page of nothing still hands out the horizon: a consumer polling on from it
        # would skip every change in between.
        raise P.bad("_count", "the change feed pages at least one version at a time")
    after: tuple[datetime, int, str] | None = None
    if "_cursor" in given:
        cursor = decode_cursor(given["_cursor"])
        try:
            horizon = datetime.fromisoformat(cursor["h"])
            after = (datetime.fromisoformat(cursor["a"][0]), int(cursor["a"][1]), str(cursor["a"][2]))
        except (KeyError, TypeError, ValueError, IndexError):
            raise P.bad(
                "_cursor", "not a paging cursor this gateway made; follow the Bundle's links"
            ) from None
    else:
        horizon = store.feed_horizon(factory)
    assert isinstance(since, datetime | None)
    entries: list[dict[str, Any]] = []
    last_key: tuple[datetime, int, str] | None = None
    more = False
    for position, resource, first in _feed(session, resource_type, since, horizon, after):
        if len(entries) == count:
            more = True
            break
        entries.append(history_entry(base, resource, first))
        last_key = position
    self_url = page_url(base, f"{resource_type}/_history", items)
    links = [("self", self_url)]
    if more and last_key is not None:
        cursor_text = encode_cursor(
            {"h": horizon.isoformat(), "a": [last_key[0].isoformat(), last_key[1], last_key[2]]}
        )
        next_items = [(k, v) for k, v in items if k != "_cursor"] + [("_cursor", cursor_text)]
        links.append(("next", page_url(base, f"{resource_type}/_history", next_items)))
    return bundle("history", entries, links, last_updated=horizon)
