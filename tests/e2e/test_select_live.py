"""Selection with what the configured index holds (pure: listings given as data)."""

from __future__ import annotations

from helpers.hosts import make_host

from torchenv.backends.availability import Availability, IndexListing, Listed
from torchenv.backends.catalog import add_listed, load_catalog
from torchenv.backends.select import Flag, Request, pages_to_read, select

MIRROR = "http://mirror.example/whl"
CATALOG = load_catalog()
H100 = make_host(driver="580.95.05", gpus=("9.0",), python="3.11")
CPU = make_host(python="3.11")


def listing(
    backend: str, *versions: str, python: tuple[str, ...] = ("3.11",), ft: tuple[str, ...] = ()
) -> IndexListing:
    """The torch page of MIRROR/<backend> holding `versions` for linux-x86_64."""
    rows = tuple(
        Listed(".".join(v.split(".")[:2]), "linux-x86_64", backend, python, ft, (v,))
        for v in versions
    )
    return IndexListing(f"{MIRROR}/{backend}", rows, found=bool(rows))


def mirror(*listings: IndexListing) -> Availability:
    return Availability().with_listings(listings)


# the mirror of issue 9: torch 2.14.1 for cu130 and 2.13.0 for cpu, one release behind
BEHIND = mirror(
    listing("cu130", "2.14.1"),
    listing("cpu", "2.13.0+cpu"),
    listing("cu132"),
    listing("cu126"),
)
REQUEST = Request(torch_index_url=MIRROR)


def test_a_release_the_index_lacks_is_skipped_and_the_next_it_holds_wins() -> None:
    chosen = select(H100, REQUEST, CATALOG, BEHIND)
    assert (chosen.torch, chosen.backend) == ("2.14", "cu130")
    assert chosen.index_url == f"{MIRROR}/cu130"
    assert f"torch 2.15 is not on {MIRROR}/cu130; 2.14.1 is" in chosen.skipped
    assert f"{MIRROR}/cu132 has no torch wheels" in chosen.skipped
    assert f"torch 2.14.1 is on {MIRROR}/cu130" in chosen.reasons


def test_without_listings_the_catalog_decides_alone() -> None:
    chosen = select(H100, REQUEST, CATALOG)
    assert (chosen.torch, chosen.backend) == ("2.15", "cu130") and chosen.skipped == ()


def test_the_cpu_host_gets_the_cpu_release_the_mirror_has() -> None:
    chosen = select(CPU, REQUEST, CATALOG, BEHIND)
    assert (chosen.torch, chosen.backend) == ("2.13", "cpu")
    assert f"torch 2.14 is not on {MIRROR}/cpu; 2.13.0+cpu is" in chosen.skipped


def test_pages_to_read_are_the_best_candidates_indexes_until_the_winner_is_known() -> None:
    first = select(H100, REQUEST, CATALOG)
    todo = pages_to_read(first, None, limit=3)
    assert todo == [f"{MIRROR}/cu130", f"{MIRROR}/cu132", f"{MIRROR}/cu126"]
    # the winner's index read: nothing ranked below it can change the choice
    known = mirror(listing("cu130", "2.15.0"))
    assert pages_to_read(select(H100, REQUEST, CATALOG, known), known) == []
    # the winner's index lacks it: read the next ones, the one just read excepted
    behind = mirror(listing("cu130", "2.14.1"))
    assert pages_to_read(select(H100, REQUEST, CATALOG, behind), behind, limit=2) == [
        f"{MIRROR}/cu132",
        f"{MIRROR}/cu126",
    ]
    cpu = select(CPU, REQUEST, CATALOG)
    assert pages_to_read(cpu, None) == [f"{MIRROR}/cpu"]


def test_a_cuda_less_mirror_says_why_the_gpu_host_gets_cpu() -> None:
    cpu_only = mirror(
        listing("cpu", "2.13.0+cpu"), listing("cu130"), listing("cu132"), listing("cu126"),
        listing("cu128"), listing("cu129"), listing("cu124"), listing("cu121"),
        listing("cu118"), listing("cu117"),
    )  # fmt: skip
    chosen = select(H100, REQUEST, CATALOG, cpu_only)
    assert chosen.backend == "cpu"
    assert any("the index holds no accelerated build" in w for w in chosen.warnings)


def test_a_release_only_the_index_knows_is_used_conservatively() -> None:
    newer = mirror(listing("cu130", "2.16.0+cu130", "2.14.1"))
    catalog = add_listed(CATALOG, newer.rows())
    chosen = select(H100, REQUEST, catalog, newer)
    assert (chosen.torch, chosen.backend) == ("2.16", "cu130")
    assert Flag.INFERRED in chosen.flags


def test_free_threaded_python_needs_a_release_with_free_threaded_wheels() -> None:
    ft = make_host(driver="580.95.05", gpus=("9.0",), python="3.13", free_threaded=True)
    # the catalog alone: 2.10 is the newest release publishing cp313t wheels
    assert select(ft, REQUEST, CATALOG).torch == "2.10"
    # a mirror whose 2.10 has no cp313t wheel: skipped, saying so; 2.8 (cp313t) is next
    no_ft = mirror(listing("cu130", "2.10.0"), listing("cu126", "2.10.0"), listing("cu128"))
    chosen = select(ft, REQUEST, CATALOG, no_ft)
    assert (chosen.torch, chosen.backend) == ("2.8", "cu129")
    assert f"{MIRROR}/cu130 has no free-threaded torch 2.10 wheel (for Python 3.13t)" in (
        chosen.skipped
    )
    with_ft = mirror(listing("cu130", "2.10.0", ft=("3.13",)))
    assert select(ft, REQUEST, CATALOG, with_ft).reasons[0].startswith("torch 2.10.0 is on")


def test_nightly_takes_the_release_the_nightly_index_has() -> None:
    nightly_url = f"{MIRROR}/nightly/cu130"
    rows = (Listed("2.17", "linux-x86_64", "cu130", ("3.11",), (), ("2.17.0.dev20261201+cu130",)),)
    listings = mirror(IndexListing(nightly_url, rows))
    chosen = select(H100, Request(torch_index_url=MIRROR, channel="nightly"), CATALOG, listings)
    assert (chosen.torch, chosen.backend) == ("2.17", "cu130")
    assert chosen.index_url == nightly_url
    assert any("2.17.0.dev20261201+cu130 is on" in r for r in chosen.reasons)


def test_a_page_that_could_not_be_read_says_nothing_about_its_index() -> None:
    unread = mirror(IndexListing(f"{MIRROR}/cu130", error="connection refused"))
    chosen = select(H100, REQUEST, CATALOG, unread)
    assert (chosen.torch, chosen.backend) == ("2.15", "cu130") and chosen.skipped == ()


def test_a_kept_copy_shows_its_age() -> None:
    old = IndexListing(
        f"{MIRROR}/cu130",
        (Listed("2.14", "linux-x86_64", "cu130", ("3.11",), (), ("2.14.1",)),),
        age=3 * 3600,
    )
    chosen = select(H100, REQUEST, CATALOG, mirror(old, listing("cu132"), listing("cu126")))
    assert f"torch 2.14.1 is on {MIRROR}/cu130 (as read 3 h ago)" in chosen.reasons


def test_apple_builds_are_looked_for_on_the_default_index() -> None:
    mac = make_host(os="macos", arch="arm64", python="3.12", macos="14.5")
    request = Request(torch_index_url=MIRROR, default_index_url="http://pypi.example/simple")
    first = select(mac, request, CATALOG)
    assert pages_to_read(first, None) == ["http://pypi.example/simple"]
    rows = (Listed("2.14", "macos-arm64", "mps", ("3.12",), (), ("2.14.1",)),)
    pypi = mirror(IndexListing("http://pypi.example/simple", rows))
    chosen = select(mac, request, CATALOG, pypi)
    assert (chosen.torch, chosen.backend) == ("2.14", "mps")
    assert "torch 2.15 is not on http://pypi.example/simple; 2.14.1 is" in chosen.skipped
