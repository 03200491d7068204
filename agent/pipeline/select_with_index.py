"""The selection with the settings in force: the catalog, what the index holds, and select()."""

# The catalog says what runs where; the configured index says what exists. Before select()
# decides, the torch page of each candidate backend's index is read (in parallel, through the
# HTTP cache with ETag/Last-Modified revalidation), best-ranked candidates first, until the
# winner's index has been read: a release the catalog prefers but the index lacks is skipped
# with the reason, and the next-ranked build the index holds wins. Offline (or when the index
# cannot be reached), what each page held when last read is used, its age shown; a page never
# read leaves its index unknown: the catalog decides alone there, and a warning says so.

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torchenv.agent.base.options import IndexConfig, SelectionOptions
    from torchenv.agent.base.reporter import Reporter
    from torchenv.agent.index.client import IndexClient
    from torchenv.agent.index.model import Artifact
    from torchenv.backends.availability import Availability, IndexListing
    from torchenv.backends.catalog import Catalog
    from torchenv.backends.select import Request, Selection
    from torchenv.probes.report import HostReport

PAGE_BATCH = 4  # index pages read at once (the best-ranked candidates' distinct indexes)
MAX_ROUNDS = 6  # a mirror holding few builds may need a few batches before one fits
OFFLINE = "offline, and the page was never read here"
READ_TIMEOUT = 15.0  # seconds per page when select reads alone (lock and auto use their own)


def listing_of(
    url: str, artifacts: Sequence[Artifact], *, age: float | None = None
) -> IndexListing:
    """An index page's torch wheels as selection data (pure)."""
    from torchenv.agent.index.catalog_refresh import summarize, wheel_facts
    from torchenv.backends.availability import IndexListing, Listed

    page_backend = url.rstrip("/").rsplit("/", 1)[-1]
    facts = [f for a in artifacts for f in wheel_facts(a, page_backend)]
    listed = tuple(Listed.from_row(row) for row in summarize(facts))
    return IndexListing(url.rstrip("/"), listed, found=bool(listed), age=age)


LISTINGS_FILE = "index-listings.json"  # what each index page held when last read
LISTINGS_SCHEMA = 1


@dataclass
class ListingStore:
    """The listings last read from each index URL, kept in the cache directory so that an
    offline or failed read still knows what the index held (and since when), 404s included."""

    path: Path | None

    def load(self) -> dict[str, Any]:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}  # a cache: unreadable means empty
        if not isinstance(data, dict) or data.get("schema") != LISTINGS_SCHEMA:
            return {}
        pages = data.get("pages")
        return pages if isinstance(pages, dict) else {}

    def get(self, url: str, now: float) -> IndexListing | None:
        from torchenv.backends.availability import IndexListing, Listed

        entry = self.load().get(url.rstrip("/"))
        if not isinstance(entry, dict):
            return None
        try:
            rows = tuple(Listed.from_row(row) for row in entry.get("listed", ()))
            age = max(0.0, now - float(entry["read_at"]))
        except (KeyError, TypeError, ValueError):
            return None
        return IndexListing(url.rstrip("/"), rows, found=bool(entry.get("found")), age=age)

    def put(self, listings: Sequence[IndexListing], now: float) -> None:
        from torchenv.agent.base.fsutil import write_atomic

        fresh = [x for x in listings if x.error is None and x.age is None]
        if self.path is None or not fresh:
            return
        pages = self.load()
        for listing in fresh:
            pages[listing.url] = {
                "found": listing.found,
                "read_at": now,
                "listed": [dataclasses.asdict(row) for row in listing.listed],
            }
        blob = json.dumps({"schema": LISTINGS_SCHEMA, "pages": pages}, sort_keys=True)
        with contextlib.suppress(OSError):  # a cache that cannot be written costs a read later
            write_atomic(self.path, blob.encode("utf-8"))


# (url, when its listing was read, or None: unread or an old copy) for each page the last
# run_selection used; agent/cli/fastpath_write.py keeps a select answer only while all are young.
reads: list[tuple[str, float | None]] = []


def catalog_inputs(cache_dir: str | Path | None, *, listings: bool = True) -> list[tuple[str, str]]:
    """What a kept selection rests on besides its pages (fastpath's (kind, path) pairs): the
    shipped catalog files, the refreshed catalog and (`listings`) the kept listings in the
    cache, which the selection itself writes."""
    import torchenv.backends
    from torchenv.agent.index import catalog_refresh

    data = Path(torchenv.backends.__file__ or "").parent / "data"
    out = [("list", str(data)), *(("stat", str(f)) for f in sorted(data.iterdir()))]
    if cache_dir:
        out.append(("stat", str(catalog_refresh.live_path(cache_dir))))
        out += [("stat", str(Path(cache_dir) / LISTINGS_FILE))] if listings else []
    return out


@dataclass
class IndexReader:
    """Reads the torch page of index URLs for selection: a listing read less than `max_age`
    seconds ago as it is (no request, no client), else live (through the HTTP cache), else the
    listing kept from the last read, with its age."""

    client: IndexClient | None
    store: ListingStore
    offline: bool = False
    max_age: float = 0.0
    make_client: Callable[[], IndexClient] | None = None

    def read(self, urls: Sequence[str]) -> list[IndexListing]:
        now = time.time()
        young = {u: self._young(u, now) for u in urls}
        todo = [u for u in urls if young[u] is None]
        if todo and self.client is None and self.make_client is not None and not self.offline:
            self.client = self.make_client()  # offline: the kept listings, no client at all
        read = (self.client.map if self.client else _each)(self._one, todo) if todo else []
        self.store.put(read, time.time())
        fetched = dict(zip(todo, read, strict=True))
        done = time.time()
        for url in urls:
            if young[url] is not None:
                kept = self.store.get(url, now)
                at = now - kept.age if kept is not None and kept.age is not None else None
            else:
                got = fetched[url]
                at = done if got.error is None and got.age is None else None
            reads.append((url, at))
        return [young[u] or fetched[u] for u in urls]

    def _young(self, url: str, now: float) -> IndexListing | None:
        """The kept listing when it is younger than max_age (shown as read now: no warning)."""
        if self.offline or self.max_age <= 0:
            return None
        kept = self.store.get(url, now)
        if kept is None or kept.age is None or kept.age >= self.max_age:
            return None
        return replace(kept, age=None)

    def _one(self, url: str) -> IndexListing:
        from torchenv.agent.base.errors import IndexError_
        from torchenv.backends.availability import IndexListing

        if not self.offline and self.client is not None:
            try:
                return listing_of(url, self.client.project_page(url, "torch"))
            except IndexError_ as exc:
                problem = exc.message
        else:
            problem = OFFLINE
        kept = self.store.get(url, time.time())
        return kept if kept is not None else IndexListing(url.rstrip("/"), error=problem)


def _each(fn: Callable[[str], IndexListing], urls: list[str]) -> list[IndexListing]:
    return [fn(u) for u in urls]


def report_selection(selection: Selection, reporter: Reporter) -> None:
    """Tell the user what lock and auto chose around: skipped builds, then warnings."""
    reporter.info(f"torch {selection.torch} {selection.backend} from {selection.index_url}")
    for line in selection.skipped:
        reporter.info(f"skipped: {line}")
    for warning in selection.warnings:
        reporter.warning(warning)


def read_warnings(availability: Availability, selection: Selection) -> list[str]:
    """What the user must know about how the index was read: unreadable pages, old copies."""
    from torchenv.backends.availability import show_age

    chosen = selection.index_url.rstrip("/") if selection.index_url else None
    unread = {u: listing for u, listing in availability.listings.items() if listing.error}
    out = []
    if unread:
        first = next(iter(unread.values()))
        out.append(
            "could not read the torch page of "
            + ", ".join(unread)
            + f" ({first.error}): what "
            + ("that index holds" if len(unread) == 1 else "those indexes hold")
            + " is unknown, so the choice rests on the catalog alone"
            + ("; the lock will show whether the index has it" if chosen in unread else "")
        )
    listing = availability.get(chosen) if chosen else None
    if listing is not None and listing.error is None and listing.age is not None:
        out.append(
            f"{chosen}/torch/ was not read now; what it held {show_age(listing.age)} ago "
            "decided (`torchenv select` without --offline reads it again)"
        )
    return out


def choose(
    host: HostReport,
    request: Request,
    catalog: Catalog,
    reader: IndexReader,
    first: Selection,
) -> tuple[Selection, Availability]:
    """select() with what the index holds, reading only the pages the choice needs, from
    `first`: select()'s answer before any page was read."""
    from torchenv.backends.availability import Availability
    from torchenv.backends.catalog import add_listed
    from torchenv.backends.select import pages_to_read, select

    availability = Availability()
    result = first
    for _ in range(MAX_ROUNDS):
        todo = pages_to_read(result, availability, limit=PAGE_BATCH)
        if not todo:
            break
        availability = availability.with_listings(reader.read(todo))
        known = add_listed(catalog, availability.rows()) if request.channel == "stable" else catalog
        result = select(host, request, known, availability)
    return result, availability


def make_request(requirements: tuple[str, ...], options: SelectionOptions) -> Request:
    from torchenv.backends.select import Request

    return Request(
        requirements=requirements,
        channel=options.channel,
        backend=options.backend,
        torch_index_url=options.index.torch_index_url,
        default_index_url=options.index.index_url,
    )


def _own_client(index: IndexConfig) -> IndexClient:
    from torchenv.agent.index.client import IndexClient

    return IndexClient(
        cache_dir=index.cache_dir, retries=1, timeout=READ_TIMEOUT,
        page_max_age=index.page_max_age,
    )  # fmt: skip


def run_selection(
    host: HostReport,
    requirements: tuple[str, ...],
    options: SelectionOptions,
    *,
    client: IndexClient | None = None,
    offline: bool = False,
) -> Selection:
    """select() with the settings in force and what the configured index holds; raises
    SelectionError when nothing satisfies. `client` is reused when given (lock and auto pass
    theirs, so the pages they read again come from its cache)."""
    return begin_selection(host, requirements, options, client=client, offline=offline)()


def begin_selection(
    host: HostReport,
    requirements: tuple[str, ...],
    options: SelectionOptions,
    *,
    client: IndexClient | None = None,
    offline: bool = False,
) -> Callable[[], Selection]:
    """run_selection in two steps: this one decides which torch pages the first round reads
    and, with a client given, starts reading them (those without a young listing); the call
    it returns makes the selection, taking those pages. A lock loads what it needs in
    between, while the index answers. Raises ConfigError for an invalid request."""
    from torchenv.agent.base.errors import ConfigError
    from torchenv.agent.index import catalog_refresh
    from torchenv.backends.availability import Availability
    from torchenv.backends.select import InvalidRequest, pages_to_read, select

    request = make_request(requirements, options)
    cache = options.index.cache_dir
    catalog = catalog_refresh.load(cache)
    reader = IndexReader(
        client,
        ListingStore(Path(cache) / LISTINGS_FILE if cache else None),
        offline=offline,
        max_age=options.index.page_max_age,
        make_client=lambda: _own_client(options.index),
    )
    try:  # the request is checked here, once: the later rounds' select() take it as it is
        first = select(host, request, catalog, Availability())
    except InvalidRequest as exc:
        raise ConfigError(
            str(exc),
            hint="requirements look like 'torch>=2.6'; backends like cpu, cu126, rocm6.4, xpu, mps",
        ) from exc
    if client is not None and not offline:
        now = time.time()
        for url in pages_to_read(first, None, limit=PAGE_BATCH):
            if reader._young(url, now) is None:
                client.read_ahead(url, ("torch",))

    def finish() -> Selection:
        from torchenv.agent.base.errors import SelectionError

        reads.clear()
        try:
            result, availability = choose(host, request, catalog, reader, first)
        finally:
            if client is None and reader.client is not None:
                reader.client.close()
        notes = read_warnings(availability, result)
        result = replace(result, warnings=tuple(dict.fromkeys((*result.warnings, *notes))))
        if not result.ok:
            hint = (
                ("what would unlock it: " + "; ".join(result.unlock))
                if result.unlock
                else ("see `torchenv select --explain` for every candidate")
            )
            raise SelectionError(
                "; ".join(result.reasons[:3]),
                hint=hint,
                details=result.to_json(),
            )
        return result

    return finish
