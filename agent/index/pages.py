"""Project pages (PEP 503 HTML, PEP 691 JSON) and core metadata, parsed (pure)."""

from __future__ import annotations

import functools
import hashlib
import html.parser
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

from packaging.tags import Tag
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from torchenv.agent.base.errors import IndexError_

if TYPE_CHECKING:  # imported where used: `import torchenv.agent.index.client` stays cheap
    pass

from torchenv.agent.index.bodies import HINT
from torchenv.agent.index.model import Artifact, CoreMetadata

JSON_TYPE = "application/vnd.pypi.simple.v1+json"


PAGE_ACCEPT = f"{JSON_TYPE}, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"


def project_url(index_url: str, project: str) -> str:
    return index_url.rstrip("/") + "/" + canonicalize_name(project) + "/"


def make_artifact(
    project: str,
    url: str,
    *,
    hashes: Mapping[str, str] | None = None,
    requires_python: str | None = None,
    core_metadata: Mapping[str, str] | bool = False,
    yanked: str | None = None,
    size: int | None = None,
) -> Artifact:
    """An Artifact from a link; the hash fragment of `url` (if any) joins `hashes`."""
    parts = urlsplit(url)
    found = dict(hashes or {})
    if parts.fragment:
        algo, sep, value = parts.fragment.partition("=")
        if sep and algo in hashlib.algorithms_guaranteed:
            found.setdefault(algo, value)
    bare = urlunsplit((parts.scheme, parts.netloc, parts.path, parts.query, ""))
    filename = unquote(parts.path.rsplit("/", 1)[-1])
    version, tags = _parse_filename(filename)
    return Artifact(
        project=canonicalize_name(project),
        filename=filename,
        url=bare,
        hashes=found,
        requires_python=requires_python or None,
        core_metadata=core_metadata,
        yanked=yanked,
        size=size,
        version=version,
        tags=tags,
    )


def _parse_filename(filename: str) -> tuple[Version | None, frozenset[Tag]]:
    return _file_parts(filename)[1:]


def _file_project(filename: str) -> str | None:
    return _file_parts(filename)[0]


@functools.lru_cache(maxsize=4096)  # each link's file is parsed for make_artifact and _belongs
def _file_parts(filename: str) -> tuple[str | None, Version | None, frozenset[Tag]]:
    """(project, version, tags) from a wheel's or sdist's file name; Nones where it names
    none. Only immutable values: the cache shares them."""
    try:
        if filename.endswith(".whl"):
            name, version, _, tags = parse_wheel_filename(filename)
            return name, version, tags
        if filename.endswith((".tar.gz", ".zip")):
            name, version = parse_sdist_filename(filename)
            return name, version, frozenset()
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        pass
    return None, None, frozenset()


def _belongs(artifact: Artifact) -> bool:
    """Keep files of this project only (a page may link others), named by plain file names
    (a link whose name decodes to a path, `..%2F..%2Fx.whl`, is no file of the project)."""
    from torchenv.agent.base.fsutil import Escapes, file_name

    try:
        file_name(artifact.filename)
    except Escapes:
        return False
    owner = _file_project(artifact.filename)
    return owner is None or owner == artifact.project


def _metadata_attr(value: str | None) -> Mapping[str, str] | bool:
    """data-core-metadata / data-dist-info-metadata: "true" or "<algo>=<hex>" (PEP 658)."""
    if value is None:
        return False
    value = value.strip()
    if value.lower() == "true":
        return True
    algo, sep, digest = value.partition("=")
    if sep and algo:
        return {algo.lower(): digest}
    return False


class _LinkParser(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.base: str | None = None
        self.links: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "base" and self.base is None:
            self.base = dict(attrs).get("href")
        elif tag == "a":
            found = dict(attrs)
            if found.get("href"):
                self.links.append(found)


def parse_html_page(text: str, page_url: str, project: str) -> list[Artifact]:
    """A PEP 503 page (with PEP 592 yanks, PEP 658/714 metadata, data-requires-python)."""
    parser = _LinkParser()
    parser.feed(text)
    parser.close()
    base = urljoin(page_url, parser.base) if parser.base else page_url
    out = []
    for link in parser.links:
        href = link["href"]
        assert href is not None
        core = link.get("data-core-metadata")
        if core is None:
            core = link.get("data-dist-info-metadata")
        artifact = make_artifact(
            project,
            urljoin(base, href),
            requires_python=link.get("data-requires-python"),
            core_metadata=_metadata_attr(core),
            yanked=(link["data-yanked"] or "") if "data-yanked" in link else None,
        )
        if _belongs(artifact):
            out.append(artifact)
    return out


def parse_json_page(doc: Mapping[str, Any], page_url: str, project: str) -> list[Artifact]:
    """A PEP 691 JSON page."""
    files = doc.get("files")
    if not isinstance(files, list):
        raise IndexError_(
            f"The JSON page {page_url} has no list of files",
            hint="The index answered something that is not a PEP 691 page; " + HINT,
        )
    out = []
    for entry in files:
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
            continue
        core = entry.get("core-metadata", entry.get("dist-info-metadata", False))
        yanked = entry.get("yanked", False)
        size = entry.get("size")
        artifact = make_artifact(
            project,
            urljoin(page_url, entry["url"]),
            hashes={str(k): str(v) for k, v in (entry.get("hashes") or {}).items()},
            requires_python=entry.get("requires-python"),
            core_metadata=_json_core_metadata(core),
            yanked=(yanked if isinstance(yanked, str) else "") if yanked else None,
            size=size if isinstance(size, int) else None,
        )
        if _belongs(artifact):
            out.append(artifact)
    return out


def _json_core_metadata(value: Any) -> Mapping[str, str] | bool:
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()} or True
    return bool(value)


def parse_core_metadata(raw: bytes, source: str) -> CoreMetadata:
    """Parse METADATA (an email-header document); `source` names it in errors."""
    from email.parser import Parser

    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    text = raw.decode("utf-8", errors="replace")
    headers = Parser().parsestr(text, headersonly=True)
    name, version = headers.get("Name"), headers.get("Version")
    if not name or not version:
        raise IndexError_(
            f"The metadata of {source} has no Name or Version", hint="The file is damaged; " + HINT
        )
    try:
        reqs = tuple(Requirement(r) for r in headers.get_all("Requires-Dist") or ())
        rp = headers.get("Requires-Python")
        return CoreMetadata(
            name=str(name).strip(),
            version=Version(str(version).strip()),
            requires_dist=reqs,
            requires_python=SpecifierSet(str(rp)) if rp else None,
            raw=text,
        )
    except (InvalidRequirement, InvalidVersion, InvalidSpecifier) as exc:
        raise IndexError_(
            f"The metadata of {source} cannot be parsed: {exc}",
            hint="The wheel's METADATA is invalid; pin another version of the project",
        ) from exc
