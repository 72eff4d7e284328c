"""Discovery: import what a source saw (the raw file as the body, streamed), list assets.

The import's body is never held whole: the import runs on a worker thread and reads
the body through :class:`BodyStream`, which asks the event loop for the next chunk
only when the source wants more bytes (so a slow import slows the client, not memory).
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import anyio.from_thread
from fastapi import APIRouter, Query, Request
from pydantic import Field, StrictBool, StrictInt
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from iotiam.api.auth import Caller, Wired
from iotiam.api.json_bodies import UntrustedJsonRoute
from iotiam.api.schemas import Body
from iotiam.discovery.adoption import MAX_ADOPT, Adopted, Proposal
from iotiam.discovery.models import (
    DiscoveredAsset,
    ImportReport,
    SourceContext,
    bounded_text,
    is_asset_id,
)
from iotiam.errors import InvalidInput, UnsupportedMediaType

router = APIRouter(prefix="/v1/discovery", tags=["discovery"], route_class=UntrustedJsonRoute)

MAX_OPTIONS = 64
#: the buffer the sources read through (lines are read from it, never from the socket)
READ_BUFFER = 256 * 1024

#: an import's body is the file itself, byte for byte, whatever type it is labelled with
#: (octet-stream, text/*, application/xml, application/x-ndjson ...). A form wraps the file
#: in its own framing, which the sources would read as lines of the file: refused (415).
IMPORT_MEDIA_TYPE = "application/octet-stream"
FORM_MEDIA_TYPES = ("multipart/", "application/x-www-form-urlencoded")
_IMPORT_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    IMPORT_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
    "description": "The file the source reads (nmap XML, a leases file, JSON lines ...), "
                   "as the raw body; a form (multipart or urlencoded) is refused (415)."}}


class BodyStream(io.RawIOBase):
    """A request body as a blocking binary stream, for a worker thread started by
    ``run_in_threadpool`` (each read past the buffer waits for the event loop)."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self._chunk = b""
        self._offset = 0
        self._done = False
        #: bytes handed to the reader so far
        self.received = 0

    def readable(self) -> bool:
        """It is."""
        return True

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` from the current chunk, fetching the next one when it is used."""
        while self._offset >= len(self._chunk) and not self._done:
            try:
                self._chunk = anyio.from_thread.run(self._next)
            except StopAsyncIteration:
                self._done = True
            except ClientDisconnect:
                raise InvalidInput("the client went away before the body ended") from None
            self._offset = 0
        if self._done and self._offset >= len(self._chunk):
            return 0
        size = min(len(buffer), len(self._chunk) - self._offset)
        buffer[:size] = self._chunk[self._offset:self._offset + size]
        self._offset += size
        self.received += size
        return size

    async def _next(self) -> bytes:
        return await self._chunks.__anext__()


def _context(site: str | None, network: str | None, options: list[str],
             observed_at: datetime | None = None) -> SourceContext:
    if len(options) > MAX_OPTIONS:
        raise InvalidInput(f"at most {MAX_OPTIONS} options")
    parsed: dict[str, str] = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or not key.strip() or len(key) > 64:
            raise InvalidInput(f"option {option[:60]!r} is not key=value (a key of at "
                               "most 64 characters)")
        key = key.strip()
        if key in parsed:  # keeping either silently could map every record wrongly
            raise InvalidInput(f"option {key!r} is given twice: give each option once")
        parsed[key] = bounded_text(value, f"option {key}") or ""
    if observed_at is not None and observed_at.tzinfo is None:
        raise InvalidInput("observed_at needs a time zone (e.g. 'Z' or '+00:00')")
    return SourceContext(site=bounded_text(site, "site"), network=bounded_text(network,
                                                                                "network"),
                         default_time=None if observed_at is None else observed_at.timestamp(),
                         options=parsed)


def _require_raw_body(request: Request) -> None:
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media.startswith(FORM_MEDIA_TYPES):
        raise UnsupportedMediaType(f"an import's body is the file itself (for example as "
                                   f"{IMPORT_MEDIA_TYPE}), not a form ({media[:60]!r})")


def render_report(report: ImportReport) -> dict[str, Any]:
    """An import's report as the API answers it."""
    return {"source": report.source, "read": report.read, "added": report.added,
            "duplicates": report.duplicates, "matched": report.matched,
            "new_assets": report.new_assets, "refused": report.refused,
            "refusals": [{"line": r.position, "reason": r.reason} for r in report.refusals]}


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def render_asset(asset: DiscoveredAsset) -> dict[str, Any]:
    """A discovered asset as the API shows it."""
    return {"id": asset.id, "status": str(asset.status), "org_path": asset.org_path,
            "site": asset.site, "network": asset.network, "ip": asset.ip, "mac": asset.mac,
            "hostname": asset.hostname, "vendor": asset.vendor, "model": asset.model,
            "open_ports": list(asset.open_ports), "first_seen": _when(asset.first_seen),
            "last_seen": _when(asset.last_seen), "sources": list(asset.sources),
            "identifiers": [{"kind": str(kind), "value": value}
                            for kind, value in asset.identifiers],
            "sightings": asset.sightings, "device_id": asset.device_id}


@router.post("/imports", openapi_extra=_IMPORT_BODY)
async def import_sightings(
    request: Request, caller: Caller, svc: Wired,
    source: str = Query(min_length=1, max_length=64),
    site: str | None = Query(default=None, max_length=256),
    network: str | None = Query(default=None, max_length=256),
    option: Annotated[list[str] | None, Query()] = None,
    observed_at: Annotated[datetime | None, Query(description=(
        "The time of records that carry none (an ARP table, a CMDB export): give the "
        "file's own time, so that importing it again adds nothing; now when omitted"))
    ] = None,
) -> dict[str, Any]:
    """Import what a source saw; the answer counts what was added, matched and refused."""
    _require_raw_body(request)
    context = _context(site, network, option or [], observed_at)
    body = io.BufferedReader(BodyStream(request.stream()), buffer_size=READ_BUFFER)
    report = await run_in_threadpool(svc.discovery.import_stream, caller, source, body,
                                     context)
    return render_report(report)


@router.get("/assets")
def list_assets(
    caller: Caller, svc: Wired,
    status: str | None = Query(default=None, max_length=32),
    site: str | None = Query(default=None, max_length=256),
    source: str | None = Query(default=None, max_length=64),
    after: str | None = Query(default=None, max_length=64),
    limit: int = Query(default=100, ge=1, le=1000),
) -> dict[str, Any]:
    """Discovered assets in the caller's subtree, in id order (pass ``next`` as
    ``after``); ``total`` counts all the filters select."""
    if after is not None and not is_asset_id(after):
        raise InvalidInput("'after' is not a cursor this API returned (an asset id)")
    items = svc.discovery.assets(caller, status=status, site=site, source=source,
                                 after=after, limit=limit)
    total = svc.discovery.count_assets(caller, status=status, site=site, source=source)
    return {"items": [render_asset(a) for a in items], "total": total,
            "next": items[-1].id if len(items) == limit else None}


@router.get("/assets/{asset_id}")
def show_asset(asset_id: str, caller: Caller, svc: Wired) -> dict[str, Any]:
    """One asset (not found outside the caller's subtree)."""
    return render_asset(svc.discovery.asset(caller, asset_id))


class AdoptIn(Body):
    """Bring discovered assets under management."""

    assets: list[str] = Field(min_length=1, max_length=MAX_ADOPT)
    #: the device type every one of them gets
    type: str = Field(min_length=1, max_length=128)
    org: str | None = Field(default=None, max_length=128)
    #: overrides the site each was seen at
    site: str | None = Field(default=None, max_length=256)
    #: mint a one-time claim token per device, valid this long (none: they wait for
    #: their EST request in the approval queue)
    claim_ttl_seconds: StrictInt | None = Field(default=None, ge=30, le=30 * 86400)
    #: the id an asset becomes, instead of the one guessed from what it was seen with
    device_ids: dict[str, str] | None = Field(default=None, max_length=MAX_ADOPT)
    #: only say what each would become
    dry_run: StrictBool = False


def _proposal(proposal: Proposal) -> dict[str, Any]:
    return {"asset": proposal.asset_id, "device": proposal.device_id, "site": proposal.site,
            "attributes": proposal.attributes}


def _adopted(adopted: Adopted) -> dict[str, Any]:
    claim = None if adopted.claim_token is None else {
        "token": adopted.claim_token, "expires_at": adopted.claim_expires_at}
    return {"asset": adopted.asset_id, "device": adopted.device_id, "ok": adopted.ok,
            "error": adopted.error, "claim": claim}


@router.post("/adoptions")
def adopt_assets(body: AdoptIn, caller: Caller, svc: Wired) -> dict[str, Any]:
    """Register each asset as a pending device of ``type`` (with a claim token when
    ``claim_ttl_seconds``); ``dry_run`` shows the proposals and stores nothing."""
    if body.dry_run:
        return {"dry_run": True, "items": [
            _proposal(p) for p in svc.adoption.proposals(caller, body.assets, body.site,
                                                         body.device_ids)]}
    ttl = None if body.claim_ttl_seconds is None else timedelta(seconds=body.claim_ttl_seconds)
    done = svc.adoption.adopt(caller, body.assets, type_name=body.type, org_unit_id=body.org,
                              site=body.site, claim_ttl=ttl, device_ids=body.device_ids)
    return {"dry_run": False, "items": [_adopted(a) for a in done],
            "adopted": sum(1 for a in done if a.ok)}
