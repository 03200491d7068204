"""Requirements with local labels (torch==2.13.0+cpu) choose the build they name."""

from __future__ import annotations

import pytest
from helpers.hosts import make_host

from torchenv.backends.catalog import load_catalog
from torchenv.backends.select import InvalidRequest, Request, parse_wants, select

CATALOG = load_catalog()
H100 = make_host(driver="580.95.05", gpus=("9.0",))


@pytest.mark.parametrize(
    ("requirements", "backend", "torch"),
    [
        (("torch==2.13.0+cpu",), "cpu", "2.13"),
        (("torch==2.13.0+cu126", "torchvision"), "cu126", "2.13"),
        (("torch==2.11.0+cu128",), "cu128", "2.11"),
        (("torch==2.13.0",), "cu130", "2.13"),  # no label: the host decides
    ],
)
def test_a_local_label_names_the_backend(
    requirements: tuple[str, ...], backend: str, torch: str
) -> None:
    chosen = select(H100, Request(requirements=requirements), CATALOG)
    assert chosen.ok, chosen.reasons
    assert (chosen.torch, chosen.backend) == (torch, backend)


def test_labels_are_matched_on_the_public_version() -> None:
    wants = parse_wants(["torch==2.13.0+cpu", "torchaudio>=2.10"])
    assert wants.backend == "cpu"
    assert [(name, str(spec)) for name, spec in wants.specs] == [
        ("torch", "==2.13.0"),
        ("torchaudio", ">=2.10"),
    ]


@pytest.mark.parametrize(
    ("requirements", "backend", "message"),
    [
        (("torch==2.13.0+cu126", "torchvision==0.28.0+cu130"), None, "different builds"),
        (("torch==2.13.0+banana",), None, "names no torch backend"),
        (("torch==2.13.0+cpu",), "cu126", "contradicts"),
    ],
)
def test_contradictory_labels_are_refused(
    requirements: tuple[str, ...], backend: str | None, message: str
) -> None:
    with pytest.raises(InvalidRequest, match=message):
        select(H100, Request(requirements=requirements, backend=backend), CATALOG)
