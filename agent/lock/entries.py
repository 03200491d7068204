"""What a lock records beside its pins: each wheel with its hash, the marker, the tool table."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchenv.agent import __version__
from torchenv.agent.base.reporter import Reporter
from torchenv.agent.lock.locktarget import named
from torchenv.agent.lock.pylock import LockedWheel, toml_safe
from torchenv.agent.lock.resolvers.target import Target
from torchenv.probes.report import HostReport

if TYPE_CHECKING:
    from torchenv.agent.index.client import IndexClient
    from torchenv.agent.index.model import Artifact

from torchenv.agent.lock.inputs import LockInputs, SelectionLike


def _sha256(artifact: Artifact) -> str | None:
    value = artifact.hashes.get("sha256")
    return value.lower() if value else None


def locked_wheel(artifact: Artifact, fetch: Callable[[Artifact], tuple[str, int]]) -> LockedWheel:
    """The lock's record of a wheel.

    A wheel whose index publishes no sha256 (the nightly pages) is downloaded into the cache
    to hash it, so the lock never lacks a hash and sync finds the file there. A size is kept
    where the index lists one; PEP 751 makes it optional, so a page without sizes (PEP 503)
    costs no request for one (sync then bounds the download by MAX_WHEEL and the hash).
    """
    sha, size = _sha256(artifact), artifact.size
    if sha is None:
        sha, size = fetch(artifact)
    return LockedWheel(name=artifact.filename, url=artifact.url, size=size, sha256=sha)


def environment_marker(target: Target) -> str:
    env = target.markers()
    keys = ("sys_platform", "platform_machine", "implementation_name", "python_version")
    return " and ".join(f"{k} == '{env[k]}'" for k in keys)


def tool_table(
    inputs: LockInputs, host: HostReport, selection: SelectionLike, resolver: str
) -> dict[str, Any]:
    release = getattr(selection, "torch", None)
    reasons = getattr(selection, "reasons", ()) or ()
    skipped = getattr(selection, "skipped", ()) or ()
    return {
        "torchenv-version": __version__,
        "fingerprint": host.fingerprint(),
        "target": toml_safe(named(host.target_facts())),
        "backend": selection.backend,
        "torch": str(release) if release else "",
        "channel": inputs.channel,
        "torch-index-url": inputs.torch_index,
        "index-url": inputs.default_index,
        "requirements": [str(r) for r in inputs.requirements],
        "resolver": resolver,
        "reasons": [str(r) for r in reasons],
        "skipped": [str(r) for r in skipped],  # better builds the index does not hold
        "python": inputs.target.python_minor,
    }


def _fetcher(
    client: IndexClient, directory: Path, reporter: Reporter
) -> Callable[[Artifact], tuple[str, int]]:
    """Download a wheel to hash it, and leave it where sync looks for it (by its sha256)."""

    def fetch(artifact: Artifact) -> tuple[str, int]:
        from torchenv.agent.index.client import sha256_of
        from torchenv.agent.index.wheelstore import cached_wheel

        reporter.info(f"{artifact.filename}: the index publishes no hash; downloading to hash it")
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=directory, prefix=".lock-") as scratch:
            path = client.download(artifact, Path(scratch))
            digest, size = sha256_of(path), path.stat().st_size
            dest = cached_wheel(directory, digest, path.name)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest)
        return digest, size

    return fetch
