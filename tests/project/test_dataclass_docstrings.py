"""Every dataclass has a docstring: for one without, @dataclass builds `__doc__` from
inspect.signature(cls) as the class is made, at import: a cost every command pays."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import ROOT

PACKAGES = ("agent", "backends", "probes")


def undocumented(root: Path = ROOT) -> list[str]:
    """`path:line Name` for each class under a dataclass decorator that has no docstring."""
    out = []
    for top in PACKAGES:
        for path in sorted((root / top).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (
                    isinstance(node, ast.ClassDef)
                    and any("dataclass" in ast.unparse(d) for d in node.decorator_list)
                    and ast.get_docstring(node) is None
                ):
                    out.append(f"{path.relative_to(root).as_posix()}:{node.lineno} {node.name}")
    return out


def test_every_dataclass_has_a_docstring() -> None:
    missing = undocumented()
    assert not missing, "dataclasses without a docstring:\n" + "\n".join(missing)


def test_the_rule_finds_a_dataclass_without_one(tmp_path: Path) -> None:
    (tmp_path / "probes").mkdir()
    (tmp_path / "probes" / "m.py").write_text(
        '"""M."""\n\nfrom dataclasses import dataclass\n\n\n'
        "@dataclass(frozen=True)\nclass Bare:\n    x: int\n\n\n"
        '@dataclass\nclass Told:\n    """Has one."""\n\n    y: int\n',
        encoding="utf-8",
    )
    assert undocumented(tmp_path) == ["probes/m.py:7 Bare"]
