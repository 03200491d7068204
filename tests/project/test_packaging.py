"""The distribution ships every package: pyproject's list matches the source tree."""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from helpers import ROOT


def test_every_package_directory_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapping = config["package-dir"]  # "torchenv.agent" -> "agent"
    found = set()
    for package, directory in mapping.items():
        for init in (ROOT / directory).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / directory)
            found.add(".".join([package, *relative.parts]))
    assert found == listed


def test_every_library_the_code_imports_is_a_declared_dependency() -> None:
    """A library imported directly (rich, not only through typer) is in [project] dependencies."""
    import ast
    from importlib.metadata import packages_distributions

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    declared = {
        canonicalize_name(Requirement(r).name)
        for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    }
    owners = packages_distributions()
    imported: set[str] = set()
    for directory in ("agent", "backends", "probes"):
        for source in (ROOT / directory).rglob("*.py"):
            for node in ast.walk(ast.parse(source.read_text())):
                if isinstance(node, ast.Import):
                    imported |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"torchenv", "__future__"}
    third_party -= {"tomllib"}  # the stdlib's, on 3.11+
    missing = {
        name: owners.get(name)
        for name in third_party
        if not {canonicalize_name(d) for d in owners.get(name, [name])} & declared
    }
    assert "rich" in third_party  # the CLI's progress imports it itself
    assert missing == {}
