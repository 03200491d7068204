"""After `catalog refresh`, selection offers only the builds the configured index holds."""

from __future__ import annotations

from typing import Any

from selecthosts import make_host

from torchenv.backends.catalog import load_catalog
from torchenv.backends.select import Request, select

MIRROR = "http://mirror.example/whl"
H100 = make_host(driver="580.95.05", gpus=("9.0",), python="3.11")


def live(*rows: tuple[str, str]) -> dict[str, Any]:
    """A refresh result holding the given (torch, backend) builds for linux-x86_64, cp311."""
    return {
        "schema": 1,
        "index": MIRROR,
        "fetched": "2026-11-01T00:00:00Z",
        "backends": sorted({b for _, b in rows}),
        "wheels": [
            {"torch": t, "platform": "linux-x86_64", "backend": b, "python": ["3.11"],
             "python_ft": [], "versions": [f"{t}.0+{b}"]}
            for t, b in rows
        ],
    }  # fmt: skip


def test_a_refreshed_mirror_limits_the_choice_to_what_it_holds() -> None:
    catalog = load_catalog(live(("2.9", "cu126"), ("2.9", "cpu"), ("2.8", "cu128")))
    chosen = select(H100, Request(torch_index_url=MIRROR + "/"), catalog)
    assert (chosen.torch, chosen.backend) == ("2.9", "cu126")
    missing = [c for c in chosen.candidates if c.torch == "2.14" and c.backend == "cu130"]
    assert missing and not missing[0].ok
    assert "is not on http://mirror.example/whl" in missing[0].reasons[0]


def test_another_index_or_channel_is_not_limited_by_the_refresh() -> None:
    catalog = load_catalog(live(("2.9", "cu126")))
    elsewhere = select(H100, Request(), catalog)
    assert elsewhere.torch is not None and elsewhere.torch != "2.9"
    nightly = select(H100, Request(torch_index_url=MIRROR, channel="nightly"), catalog)
    assert nightly.ok and nightly.torch != "2.9"


def test_a_mirror_without_any_fitting_build_says_so() -> None:
    catalog = load_catalog(live(("2.9", "cpu")))
    chosen = select(H100, Request(torch_index_url=MIRROR, requirements=("torch>=2.10",)), catalog)
    assert not chosen.ok
    assert "is not on http://mirror.example/whl" in chosen.reasons[1]
    assert chosen.unlock == ("a newer `torchenv catalog refresh`, or an index that has it",)
