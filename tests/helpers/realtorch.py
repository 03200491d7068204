"""The machine's real CPU torch wheel and its dependencies, found through pip's configuration."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from urllib.parse import unquote, urlparse

from indexsim import Catalog, Hosted, WheelSpec
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name, parse_wheel_filename

from torchenv.agent.base.indexconfig import read_pip_config


def _local_wheel_dirs() -> list[Path]:
    """Where this machine's pip configuration finds wheels: find-links and file:// indexes."""
    config = read_pip_config()
    dirs = [Path(link) for link in config.find_links if "://" not in link]
    for url in (config.index_url, *config.extra_index_urls):
        if url and url.startswith("file://"):
            dirs.append(Path(unquote(urlparse(url).path)))
    return dirs


def _find_wheel(
    dirs: list[Path],
    project: str,
    want: re.Pattern[str] | None = None,
    spec: SpecifierSet | None = None,
) -> Path | None:
    """The newest wheel of `project` for this interpreter that fits `spec` (and `want`)."""
    name = canonicalize_name(project)
    found: list[Path] = []
    for d in dirs:
        found += [c for c in d.glob("*.whl") if _fits(c, name, want)]
        page = d / name / "index.html"
        if page.is_file():
            for href in re.findall(r'href="([^"#]+)', page.read_text()):
                path = (page.parent / unquote(href)).resolve()
                if path.suffix == ".whl" and path.is_file() and _fits(path, name, want):
                    found.append(path)
    fitting = [p for p in found if spec is None or parse_wheel_filename(p.name)[1] in spec]
    return max(fitting, key=lambda p: parse_wheel_filename(p.name)[1], default=None)


def _fits(path: Path, name: str, want: re.Pattern[str] | None) -> bool:
    from packaging.tags import sys_tags

    try:
        project, _, _, tags = parse_wheel_filename(path.name)
    except ValueError:
        return False
    ours = set(sys_tags())
    return project == name and bool(tags & ours) and (want is None or bool(want.search(path.name)))


def _requires(path: Path) -> list[Requirement]:
    with zipfile.ZipFile(path) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        text = zf.read(meta).decode()
    env = {**default_environment(), "extra": ""}
    reqs = [Requirement(line.split(":", 1)[1].strip()) for line in text.splitlines()
            if line.startswith("Requires-Dist:")]  # fmt: skip
    return [r for r in reqs if r.marker is None or r.marker.evaluate(env)]


def real_torch_catalog() -> tuple[Catalog, dict[str, Path]] | None:
    """The local CPU torch wheel and its dependency closure, as simulator files (or None)."""
    dirs = _local_wheel_dirs()
    torch = _find_wheel(dirs, "torch", re.compile(r"\+cpu-"))
    if torch is None:
        return None
    files, todo, seen = [], [torch], set()
    while todo:
        wheel = todo.pop()
        project, version, _, _ = parse_wheel_filename(wheel.name)
        if project in seen:
            continue
        seen.add(project)
        tag = wheel.name[: -len(".whl")].split("-", 2)[2]
        spec = WheelSpec(project, str(version), tag)
        index, variant = ("pytorch", "cpu") if project == "torch" else ("pypi", "")
        files.append((Hosted(index, "", variant, spec, pep658=False), spec.filename, wheel))
        for req in _requires(wheel):
            dep = _find_wheel(dirs, req.name, spec=req.specifier)
            if dep is None:
                return None
            todo.append(dep)
    return Catalog(tuple(h for h, _, _ in files)), {name: w for _, name, w in files}
