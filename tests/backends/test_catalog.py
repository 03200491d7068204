"""The shipped catalog, driver -> CUDA, and `catalog refresh` against the index simulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.hosts import make_host
from indexsim import Catalog as SimCatalog
from indexsim import Hosted, IndexSim, WheelSpec, build_site
from typer.testing import CliRunner

from torchenv.agent.cli.main import app
from torchenv.agent.index import catalog_refresh
from torchenv.agent.index.client import IndexClient
from torchenv.backends.catalog import (
    DATA_DIR,
    INFERRED_LIVE,
    CatalogError,
    Kind,
    dotted,
    load_catalog,
)
from torchenv.backends.select import Flag, Request, select

CATALOG = load_catalog()


# --- the shipped data ---------------------------------------------------------------------


def test_every_data_row_cites_a_source_the_file_defines() -> None:
    for path in DATA_DIR.glob("*.json"):
        data = json.loads(path.read_text())
        assert data["sources"], path.name
        rows = [
            r
            for key in ("drivers", "minor_version_compat", "builds", "releases")
            for r in data.get(key, ())
        ]
        assert rows, path.name
        for row in rows:
            assert row["source"] in data["sources"], (path.name, row)


def test_releases_run_from_2_0_to_2_15_newest_first_with_cpu_everywhere() -> None:
    torches = [r.torch for r in CATALOG.releases]
    assert torches[0] == "2.15" and torches[-1] == "2.0" and len(torches) == 16
    for release in CATALOG.releases:
        for platform in ("linux-x86_64", "linux-aarch64", "windows-x86_64"):
            assert release.build(platform, "cpu") is not None, (release.torch, platform)
    assert "python" in CATALOG.release("2.15").inferred  # type: ignore[union-attr]


def test_cu128_code_differs_between_2_7_2_8_and_2_11() -> None:
    def sass(torch: str) -> tuple[str, ...]:
        build = CATALOG.release(torch).build("linux-x86_64", "cu128")  # type: ignore[union-attr]
        assert build is not None
        return build.sass

    assert "7.0" not in sass("2.7") and "7.0" in sass("2.8") and "7.0" in sass("2.10")
    assert "7.0" not in sass("2.11")
    ptx = CATALOG.release("2.7").build("linux-x86_64", "cu128").ptx  # type: ignore[union-attr]
    assert ptx == ("12.0",)


def test_aarch64_cuda_builds_carry_their_own_lists() -> None:
    build = CATALOG.release("2.14").build("linux-aarch64", "cu130")  # type: ignore[union-attr]
    assert build is not None and "11.0" in build.sass
    assert CATALOG.release("2.6").build("linux-aarch64", "cu124").sass == ("9.0",)  # type: ignore[union-attr]


def test_macos_x86_64_ends_at_2_2_2_and_rocm_is_linux_only() -> None:
    intel = [r for r in CATALOG.releases if r.builds("macos-x86_64")]
    assert intel[0].torch == "2.2" and intel[0].last_patch == 2
    for release in CATALOG.releases:
        for platform, builds in release.platforms:
            if any(b.kind is Kind.ROCM for b in builds):
                assert platform == "linux-x86_64"


@pytest.mark.parametrize(
    ("driver", "os_name", "cuda"),
    [
        ("450.80.02", "linux", None),
        ("525.60.13", "linux", "11.8"),
        ("535.104.05", "linux", "12.1"),
        ("550.54.14", "linux", "12.4"),
        ("566.36", "windows", "12.6"),
        ("570.26", "linux", "12.8"),
        ("570.26", "windows", "12.6"),
        ("576.02", "windows", "12.9"),
        ("580.95.05", "linux", "13.0"),
        ("590.44.01", "linux", "13.1"),
        ("610.1", "linux", "13.2"),
    ],
)
def test_driver_to_newest_cuda_comes_from_the_native_floors(
    driver: str, os_name: str, cuda: str | None
) -> None:
    found = CATALOG.newest_cuda_for_driver(dotted(driver), os_name)
    assert found == (dotted(cuda) if cuda else None)


def test_nightly_is_the_next_release_built_like_the_newest() -> None:
    (nightly,) = CATALOG.releases_for("nightly")
    assert nightly.torch == "2.16" and nightly.origin == "nightly"
    assert dict(nightly.family)["torchvision"] == "0.31"
    with pytest.raises(CatalogError):
        CATALOG.releases_for("weekly")


# --- merging what the live index shows ----------------------------------------------------

LIVE = {
    "schema": 1,
    "index": "http://mirror.example/whl",
    "fetched": "2026-12-01T00:00:00Z",
    "wheels": [
        {
            "torch": "2.16",
            "platform": "linux-x86_64",
            "backend": "cu134",
            "python": ["3.11", "3.12"],
            "python_ft": [],
            "versions": ["2.16.0+cu134"],
        },
        {
            "torch": "2.16",
            "platform": "linux-x86_64",
            "backend": "cpu",
            "python": ["3.11", "3.12"],
            "python_ft": [],
            "versions": ["2.16.0+cpu"],
        },
        {
            "torch": "2.15",
            "platform": "linux-x86_64",
            "backend": "cu126",
            "python": ["3.12"],
            "python_ft": [],
            "versions": ["2.15.0+cu126"],
        },
    ],
}


def test_live_rows_add_releases_and_backends_flagged_as_inferred() -> None:
    merged = load_catalog(LIVE)
    assert merged.releases[0].torch == "2.16" and merged.releases[0].origin == "live"
    cu134 = merged.releases[0].build("linux-x86_64", "cu134")
    assert cu134 is not None and cu134.inferred == INFERRED_LIVE
    assert cu134.sass == CATALOG.release("2.14").build("linux-x86_64", "cu132").sass  # type: ignore[union-attr]
    assert cu134.ptx == ()  # borrowed code never claims PTX
    cu126 = merged.release("2.15").build("linux-x86_64", "cu126")  # type: ignore[union-attr]
    assert cu126 is not None and cu126.inferred == INFERRED_LIVE
    assert merged.release("2.15").build("linux-x86_64", "cu130") is not None  # type: ignore[union-attr]


def test_a_learnt_cuda_build_is_used_conservatively() -> None:
    merged = load_catalog(LIVE)
    # driver 580 runs CUDA 13.0: cu134 (floor unknown) only by minor-version compatibility
    result = select(make_host(driver="580.95.05", gpus=("9.0",)), Request(), merged)
    assert (result.torch, result.backend) == ("2.16", "cu134")
    assert {Flag.INFERRED, Flag.MINOR_VERSION_COMPAT} <= set(result.flags)
    # a GTX 1080 Ti still gets the learnt 2.15 cu126 (SASS 6.0 borrowed from 2.14's cu126)
    pascal = select(make_host(driver="580.95.05", gpus=("6.1",)), Request(), merged)
    assert (pascal.torch, pascal.backend) == ("2.15", "cu126")


def test_a_live_file_of_another_schema_is_refused() -> None:
    with pytest.raises(CatalogError):
        load_catalog({**LIVE, "schema": 99})


# --- refresh against the index simulator --------------------------------------------------


def _hosted(variant: str, version: str, tag: str) -> Hosted:
    return Hosted("pytorch", "", variant, WheelSpec("torch", version, tag), pep658=False)


SIM_FILES = (
    _hosted("cu134", "2.16.0+cu134", "cp312-cp312-manylinux_2_28_x86_64"),
    _hosted("cu134", "2.16.0+cu134", "cp313-cp313t-manylinux_2_28_x86_64"),
    _hosted("cu134", "2.16.0+cu134", "cp312-cp312-win_amd64"),
    _hosted("cu126", "2.15.0+cu126", "cp312-cp312-manylinux_2_28_x86_64"),
    _hosted("cu126", "2.15.0+cu126", "cp312-cp312-manylinux_2_28_aarch64"),
    _hosted("cpu", "2.16.0+cpu", "cp312-cp312-manylinux_2_28_x86_64"),
    _hosted("cpu", "2.16.0", "cp312-none-macosx_14_0_arm64"),
)


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IndexSim]:
    site = build_site(SimCatalog(SIM_FILES), tmp_path_factory.mktemp("refresh-wheels"))
    with IndexSim(site) as server:
        yield server


def test_refresh_reads_the_backend_pages_and_skips_missing_ones(
    sim: IndexSim, tmp_path: Path
) -> None:
    with IndexClient(cache_dir=tmp_path / "http") as client:
        live = catalog_refresh.refresh(
            client, sim.torch_index_url, ["cpu", "cu126", "cu134", "cu999"]
        )
    assert live["backends"] == ["cpu", "cu126", "cu134"]
    rows = {(w["torch"], w["platform"], w["backend"]): w for w in live["wheels"]}
    assert rows[("2.16", "linux-x86_64", "cu134")]["python"] == ["3.12"]
    assert rows[("2.16", "linux-x86_64", "cu134")]["python_ft"] == ["3.13"]
    assert ("2.16", "windows-x86_64", "cu134") in rows
    assert ("2.16", "macos-arm64", "mps") in rows
    assert ("2.15", "linux-aarch64", "cu126") in rows
    merged = catalog_refresh.load(catalog_refresh.save(live, tmp_path).parent)
    assert merged.live_index == sim.torch_index_url
    assert merged.releases[0].build("windows-x86_64", "cu134") is not None


def test_backends_to_ask_include_the_next_cuda_and_rocm() -> None:
    names = catalog_refresh.backends_to_ask(CATALOG)
    assert {"cpu", "xpu", "cu118", "cu132", "cu133", "cu140", "rocm7.3", "rocm8.0"} <= set(names)
    assert "mps" not in names


def test_the_shipped_catalog_needs_no_cache(tmp_path: Path) -> None:
    assert catalog_refresh.load(tmp_path / "empty").releases == CATALOG.releases


def test_a_corrupt_cache_file_is_a_config_error(tmp_path: Path) -> None:
    from torchenv.agent.base.errors import ConfigError

    (tmp_path / catalog_refresh.LIVE_FILE).write_text("{not json")
    with pytest.raises(ConfigError) as caught:
        catalog_refresh.load(tmp_path)
    assert "catalog refresh" in (caught.value.hint or "")


@pytest.mark.parametrize(
    "text",
    [
        "[1]",
        '"catalog"',
        '{"schema": 1, "wheels": [{"torch": "2.x", "platform": "linux-x86_64", "backend": "cpu"}]}',
        '{"schema": 1, "wheels": [{"torch": "2.16", "platform": "linux-x86_64", '
        '"backend": "cpu", "python": ["3.x"]}]}',
    ],
)
def test_a_malformed_cache_file_is_a_config_error(tmp_path: Path, text: str) -> None:
    from torchenv.agent.base.errors import ConfigError

    (tmp_path / catalog_refresh.LIVE_FILE).write_text(text)
    with pytest.raises(ConfigError) as caught:
        catalog_refresh.load(tmp_path)
    assert "catalog refresh" in (caught.value.hint or "")


def test_cli_refresh_then_select_uses_what_it_learnt(sim: IndexSim, tmp_path: Path) -> None:
    env = {
        "TORCHENV_TORCH_INDEX_URL": sim.torch_index_url,
        "TORCHENV_CACHE_DIR": str(tmp_path),
        "TORCHENV_USER_CONFIG": str(tmp_path / "none.toml"),
    }
    runner = CliRunner()
    refreshed = runner.invoke(app, ["catalog", "refresh", "--json", "--backend", "cu134"], env=env)
    assert refreshed.exit_code == 0, refreshed.output
    assert json.loads(refreshed.output)["backends"] == ["cu134"]
    chosen = runner.invoke(
        app,
        [
            "select",
            "--json",
            "--os",
            "linux",
            "--arch",
            "x86_64",
            "--python",
            "3.12",
            "--driver",
            "580.95.05",
            "--gpu",
            "9.0",
        ],
        env=env,
    )
    assert chosen.exit_code == 0, chosen.output
    data = json.loads(chosen.output)
    assert (data["torch"], data["backend"]) == ("2.16", "cu134")
    assert data["index_url"] == f"{sim.torch_index_url}/cu134"
