"""A loopback mirror of the REAL wheels this machine's pip configuration finds.

It serves them the way devpi, Artifactory or a plain web server serve a mirror (see
docs/architecture.md, "Real indexes"): PEP 503 HTML pages only (no PEP 691 JSON, no PEP 658
metadata files, no sizes), `#sha256=` link fragments, ETag/Last-Modified on pages and HTTP
Range requests on files, as CDNs and nginx answer them. Two sides:

- the PyTorch side, `/whl/<variant>/`: each real torch build under the variant it is (a local
  label, or the CUDA its METADATA requires: the unlabelled torch 2.14.1 wheel is CUDA 13.0, so
  it is served as `/whl/cu130/`), the family wheels made for it, and DECOYS: copies of PyPI
  packages at other versions (real numpy and fsspec files that the default side lacks, and a
  test-built jinja2 copy) that a lock must never take;
- the default side, `/simple/`: every other real wheel of the machine's file:// indexes, plus
  test-built stand-ins for what those lack (`cuda-bindings`, which the real torch 2.14.1
  requires on Linux; clearly named as stand-ins in their metadata).

Wheels are found only through pip's configuration (find-links and file:// index URLs); where
they are absent, `find_mirror_files()` says why and tests skip with that reason.
"""

from __future__ import annotations

from .mirror import (
    DECOY_SUMMARY,
    STANDIN_SUMMARY,
    Knobs,
    MirrorFiles,
    RealMirror,
    RealWheel,
    find_mirror_files,
    find_real_wheels,
)

__all__ = [
    "DECOY_SUMMARY",
    "STANDIN_SUMMARY",
    "Knobs",
    "MirrorFiles",
    "RealMirror",
    "RealWheel",
    "find_mirror_files",
    "find_real_wheels",
]
