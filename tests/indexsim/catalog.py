"""The simulated projects: a PyTorch-style index and a PyPI-style index, with their quirks.

Quirks reproduced (see shared/FACTS.md section 4):
- local labels on PyTorch-index builds (+cpu, +cu126, ...), none on macOS wheels or PyPI;
- nightly versions like 2.9.0.dev20250801+cu126, links without #sha256, and nightly torch
  needing pytorch-triton, which only the nightly index has;
- release CUDA torch needing triton from PyPI;
- the cu126 aarch64 wheel of torch 2.9.0 lists none of the nvidia-* requirements that the
  x86_64 wheel of the same version lists;
- older copies of certifi, numpy and pillow (and the other torch dependencies) on the
  PyTorch index;
- torchvision/torchaudio releases pin `torch==X` without a label (it matches every build),
  nightlies pin the exact labelled build;
- PEP 658 metadata files on some PyTorch-index wheels, on every PyPI wheel.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from .wheels import WheelSpec

PYTHONS = ("cp310", "cp311", "cp312")
LINUX_X86 = "manylinux_2_28_x86_64"
LINUX_ARM = "manylinux_2_28_aarch64"
MAC_ARM = "macosx_11_0_arm64"
WIN = "win_amd64"
TEST_DOUBLE = "Test double built by torchenv's index simulator; not the real {name}"

# Compute capabilities per build (shared/FACTS.md section 3).
ARCH_LISTS: Mapping[str, tuple[str, ...]] = {
    "cu118": ("sm_37", "sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"),
    "cu126": ("sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"),
    "cu128": ("sm_70", "sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"),
    "cu130": ("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120", "compute_120"),
}
AARCH64_ARCH_LISTS: Mapping[str, tuple[str, ...]] = {
    "cu126": ("sm_80", "sm_90"),
    "cu130": ("sm_80", "sm_90", "sm_100", "sm_110", "sm_120"),
}


@dataclass(frozen=True)
class Hosted:
    """A file on one simulated index: where it is listed and whether it has a .metadata file."""

    index: str  # "pytorch" or "pypi"
    channel: str  # "" (release), "nightly" or "test" on pytorch; "" on pypi
    variant: str  # "cpu", "cu126", ... on pytorch; "" on pypi
    wheel: WheelSpec | None = None
    sdist: tuple[str, str] | None = None  # (name, version) for a source distribution
    pep658: bool = True
    core_metadata_attr: bool = True  # PEP 714 name; False = only data-dist-info-metadata
    yanked: str | None = None

    @property
    def project(self) -> str:
        if self.wheel is not None:
            return self.wheel.project
        assert self.sdist is not None
        return self.sdist[0].lower()

    @property
    def filename(self) -> str:
        if self.wheel is not None:
            return self.wheel.filename
        assert self.sdist is not None
        return f"{self.sdist[0].replace('-', '_')}-{self.sdist[1]}.tar.gz"

    @property
    def directory(self) -> str:
        """The URL directory the file lives in (without leading or trailing slash)."""
        if self.index == "pypi":
            return f"packages/{self.project}"
        return "/".join(p for p in ("whl", self.channel, self.variant) if p)

    @property
    def page_dir(self) -> str:
        """The index root (URL path) whose project pages list the file."""
        if self.index == "pypi":
            return "simple"
        return "/".join(p for p in ("whl", self.channel, self.variant) if p)


@dataclass(frozen=True)
class Catalog:
    files: tuple[Hosted, ...] = field(default_factory=tuple)

    def wheels(self) -> list[WheelSpec]:
        seen: dict[str, WheelSpec] = {}
        for h in self.files:
            if h.wheel is not None:
                first = seen.setdefault(h.wheel.filename, h.wheel)
                if first != h.wheel:
                    raise ValueError(f"two different wheels named {h.wheel.filename}")
        return list(seen.values())

    def find(self, filename: str) -> list[Hosted]:
        return [h for h in self.files if h.filename == filename]

    def padded(self, sizes: Mapping[str, int]) -> Catalog:
        """The same catalog with padding (bytes) on the wheels of the named projects."""
        return Catalog(
            tuple(
                replace(h, wheel=replace(h.wheel, padding=sizes[h.project]))
                if h.wheel is not None and h.project in sizes
                else h
                for h in self.files
            )
        )


def _linux_cuda_reqs(cuda: str) -> tuple[str, ...]:
    marker = 'platform_system == "Linux"'
    names = {
        "cu118": (
            "nvidia-cuda-runtime-cu11==11.8.89",
            "nvidia-cublas-cu11==11.11.3.6",
            "nvidia-cudnn-cu11==9.1.0.70",
        ),
        "cu126": (
            "nvidia-cuda-runtime-cu12==12.6.77",
            "nvidia-cublas-cu12==12.6.4.1",
            "nvidia-cudnn-cu12==9.5.1.17",
        ),
        "cu128": (
            "nvidia-cuda-runtime-cu12==12.8.90",
            "nvidia-cublas-cu12==12.8.4.1",
            "nvidia-cudnn-cu12==9.10.2.21",
        ),
        "cu130": (
            "nvidia-cuda-runtime==13.0.96",
            "nvidia-cublas==13.0.0.19",
            "nvidia-cudnn-cu13==9.13.0.50",
        ),
    }[cuda]
    return tuple(f"{n}; {marker}" for n in names)


def _nvidia_wheels() -> list[WheelSpec]:
    specs: list[tuple[str, str, tuple[str, ...]]] = [
        ("nvidia-cuda-runtime-cu11", "11.8.89", ()),
        ("nvidia-cublas-cu11", "11.11.3.6", ()),
        ("nvidia-cudnn-cu11", "9.1.0.70", ("nvidia-cublas-cu11",)),
        ("nvidia-cuda-runtime-cu12", "12.6.77", ()),
        ("nvidia-cublas-cu12", "12.6.4.1", ()),
        ("nvidia-cudnn-cu12", "9.5.1.17", ("nvidia-cublas-cu12",)),
        ("nvidia-cuda-runtime-cu12", "12.8.90", ()),
        ("nvidia-cublas-cu12", "12.8.4.1", ()),
        ("nvidia-cudnn-cu12", "9.10.2.21", ("nvidia-cublas-cu12",)),
        ("nvidia-cuda-runtime", "13.0.96", ()),
        ("nvidia-cublas", "13.0.0.19", ()),
        ("nvidia-cudnn-cu13", "9.13.0.50", ("nvidia-cublas",)),
    ]
    out = []
    for name, version, reqs in specs:
        for plat in ("manylinux_2_27_x86_64", "manylinux_2_27_aarch64"):
            out.append(
                WheelSpec(
                    name,
                    version,
                    f"py3-none-{plat}",
                    requires_dist=reqs,
                    requires_python=">=3",
                    summary=TEST_DOUBLE.format(name=name),
                    files=_stub_module(name, version),
                )
            )
    return out


IMPORT_NAMES = {"pillow": "PIL", "typing-extensions": "typing_extensions"}


def _stub_module(name: str, version: str) -> dict[str, str]:
    module = IMPORT_NAMES.get(name, name.replace("-", "_"))
    doc = f'"""Test double of {name} from torchenv\'s index simulator."""\n'
    return {f"{module}/__init__.py": f'{doc}__version__ = "{version}"\n'}


def torch_stub(
    version: str, cuda: str | None, arch_list: Iterable[str], hip: str | None = None
) -> dict[str, str]:
    """An importable `torch` that only reports the build it stands for (never a GPU)."""
    doc = '"""Test double of torch from torchenv\'s index simulator; it is not PyTorch."""\n'
    return {
        "torch/__init__.py": doc
        + "from torch import backends, cuda, version\n\n"
        + "__version__ = version.__version__\nTEST_DOUBLE = True\n",
        "torch/version.py": doc
        + f"__version__ = {version!r}\ncuda = {cuda!r}\nhip = {hip!r}\n"
        + "git_version = 'indexsim'\n",
        "torch/cuda/__init__.py": doc
        + "def is_available() -> bool:\n    return False\n\n\n"
        + "def device_count() -> int:\n    return 0\n\n\n"
        + f"def get_arch_list() -> list[str]:\n    return {list(arch_list)!r}\n",
        "torch/backends/__init__.py": doc + "from torch.backends import mps\n",
        "torch/backends/mps/__init__.py": doc
        + "def is_available() -> bool:\n    return False\n\n\n"
        + "def is_built() -> bool:\n    return False\n",
    }


def _family_stub(name: str, version: str, cuda: str | None) -> dict[str, str]:
    doc = f'"""Test double of {name} from torchenv\'s index simulator."""\n'
    return {
        f"{name}/__init__.py": doc + f"from {name}.version import __version__, cuda\n",
        f"{name}/version.py": doc + f"__version__ = {version!r}\ncuda = {cuda!r}\n",
    }


@dataclass(frozen=True)
class TorchRelease:
    torch: str
    vision: str
    audio: str
    variants: tuple[str, ...]
    cuda_aarch64: tuple[str, ...]  # CUDA variants that also have Linux aarch64 wheels
    triton: str | None  # release CUDA builds depend on triton from PyPI
    pypi_cuda: str  # the CUDA build PyPI's Linux x86_64 wheel is
    requires_python: str = ">=3.9.0"


RELEASES = (
    TorchRelease("2.7.0", "0.22.0", "2.7.0", ("cpu", "cu118", "cu126"), (), "3.3.0", "cu126"),
    TorchRelease(
        "2.9.0",
        "0.24.0",
        "2.9.0",
        ("cpu", "cu126", "cu128", "cu130"),
        ("cu126", "cu130"),
        "3.5.0",
        "cu128",
        requires_python=">=3.10",
    ),
)
TEST_RELEASE = TorchRelease(
    "2.10.0", "0.25.0", "2.10.0", ("cpu", "cu126"), (), "3.6.0", "cu128", ">=3.10"
)
NIGHTLIES = ("2.9.0.dev20250801", "2.9.0.dev20250802")
NIGHTLY_VISION = {
    "2.9.0.dev20250801": "0.24.0.dev20250801",
    "2.9.0.dev20250802": "0.24.0.dev20250802",
}
PYTORCH_TRITON = "3.4.0+git11ec6354"
# aarch64 wheel of this release+variant lacks the nvidia-* requirements (issue 4, problem 3)
NO_NVIDIA_ON_AARCH64 = ("2.9.0", "cu126")
TORCH_DEPS = (
    "filelock",
    "typing-extensions>=4.10.0",
    "sympy>=1.13.3",
    "networkx",
    "jinja2",
    "fsspec",
    'setuptools; python_version >= "3.12"',
)


def _cuda_of(variant: str) -> str | None:
    if not variant.startswith("cu"):
        return None
    digits = variant[2:]
    return f"{digits[:-1]}.{digits[-1]}"


def _arch_list(variant: str, plat: str) -> tuple[str, ...]:
    if plat == LINUX_ARM:
        return AARCH64_ARCH_LISTS.get(variant, ())
    return ARCH_LISTS.get(variant, ())


def _torch_reqs(rel: TorchRelease, variant: str, plat: str, triton: str | None) -> tuple[str, ...]:
    reqs = list(TORCH_DEPS)
    if variant.startswith("cu") and plat in (LINUX_X86, LINUX_ARM):
        skip = (rel.torch, variant) == NO_NVIDIA_ON_AARCH64 and plat == LINUX_ARM
        if not skip:
            reqs += _linux_cuda_reqs(variant)
        if triton and plat == LINUX_X86:
            reqs.append(f'{triton}; platform_system == "Linux" and platform_machine == "x86_64"')
    return tuple(reqs)


def _family(
    rel: TorchRelease,
    variant: str,
    plat: str,
    py: str,
    *,
    label: bool,
    triton: str | None,
    torch_pin_label: bool,
) -> list[WheelSpec]:
    """torch, torchvision and torchaudio wheels of one build for one Python and platform."""
    suffix = f"+{variant}" if label else ""
    cuda = _cuda_of(variant)
    tag = f"{py}-{py}-{plat}"
    torch_version = rel.torch + suffix
    pin = torch_version if torch_pin_label else rel.torch
    vision = rel.vision + suffix
    audio = rel.audio + suffix
    return [
        WheelSpec(
            "torch",
            torch_version,
            tag,
            requires_dist=_torch_reqs(rel, variant, plat, triton),
            requires_python=rel.requires_python,
            summary=TEST_DOUBLE.format(name="torch"),
            files=torch_stub(torch_version, cuda, _arch_list(variant, plat)),
        ),
        WheelSpec(
            "torchvision",
            vision,
            tag,
            requires_dist=("numpy", f"torch=={pin}", "pillow!=8.3.*,>=5.3.0"),
            requires_python=rel.requires_python,
            summary=TEST_DOUBLE.format(name="torchvision"),
            files=_family_stub("torchvision", vision, cuda),
        ),
        WheelSpec(
            "torchaudio",
            audio,
            tag,
            requires_dist=(f"torch=={pin}",),
            requires_python=rel.requires_python,
            summary=TEST_DOUBLE.format(name="torchaudio"),
            files=_family_stub("torchaudio", audio, cuda),
        ),
    ]


def _platforms(rel: TorchRelease, variant: str) -> tuple[str, ...]:
    if variant == "cpu":
        return (LINUX_X86, LINUX_ARM, WIN)
    if variant in rel.cuda_aarch64:
        return (LINUX_X86, LINUX_ARM, WIN)
    return (LINUX_X86, WIN)


def _pytorch_release(rel: TorchRelease, channel: str, pythons: tuple[str, ...]) -> list[Hosted]:
    out: list[Hosted] = []
    for variant in rel.variants:
        # PEP 658 files only on cu126/cu130 release wheels (and only with the PEP 714
        # attribute on cu130): the other variants have none, as on the live index.
        pep658 = channel == "" and variant in ("cu126", "cu130")
        for py in pythons:
            for plat in _platforms(rel, variant):
                triton = f"triton=={rel.triton}" if rel.triton else None
                for spec in _family(
                    rel, variant, plat, py, label=True, triton=triton, torch_pin_label=False
                ):
                    out.append(
                        Hosted(
                            "pytorch",
                            channel,
                            variant,
                            spec,
                            pep658=pep658,
                            core_metadata_attr=variant == "cu130",
                        )
                    )
            if variant == "cpu":  # macOS wheels: no label, copied from PyPI
                for spec in _family(
                    rel, "cpu", MAC_ARM, py, label=False, triton=None, torch_pin_label=False
                ):
                    out.append(Hosted("pytorch", channel, "cpu", spec, pep658=False))
    return out


def _nightly(pythons: tuple[str, ...]) -> list[Hosted]:
    out: list[Hosted] = []
    variant = "cu126"
    for version in NIGHTLIES:
        rel = TorchRelease(
            version,
            NIGHTLY_VISION[version],
            version,
            (variant,),
            (variant,),
            None,
            "cu126",
            ">=3.10",
        )
        for py in pythons:
            for plat in (LINUX_X86, LINUX_ARM):
                triton = f"pytorch-triton=={PYTORCH_TRITON}"
                for spec in _family(
                    rel, variant, plat, py, label=True, triton=triton, torch_pin_label=True
                ):
                    out.append(Hosted("pytorch", "nightly", variant, spec, pep658=False))
    for py in pythons:
        for plat in (LINUX_X86, LINUX_ARM):
            spec = WheelSpec(
                "pytorch-triton",
                PYTORCH_TRITON,
                f"{py}-{py}-{plat}",
                summary=TEST_DOUBLE.format(name="pytorch-triton"),
                files=_stub_module("pytorch-triton", PYTORCH_TRITON),
            )
            out.append(Hosted("pytorch", "nightly", variant, spec, pep658=False))
    return out


def _pure(
    name: str, version: str, reqs: tuple[str, ...] = (), rp: str | None = ">=3.9"
) -> WheelSpec:
    return WheelSpec(
        name,
        version,
        "py3-none-any",
        requires_dist=reqs,
        requires_python=rp,
        summary=TEST_DOUBLE.format(name=name),
        files=_stub_module(name, version),
    )


def _binary(name: str, version: str, pythons: tuple[str, ...], rp: str) -> list[WheelSpec]:
    plats = (
        "manylinux_2_17_x86_64.manylinux2014_x86_64",
        "manylinux_2_17_aarch64.manylinux2014_aarch64",
        MAC_ARM,
        WIN,
    )
    return [
        WheelSpec(
            name,
            version,
            f"{py}-{py}-{plat}",
            requires_python=rp,
            summary=TEST_DOUBLE.format(name=name),
            files=_stub_module(name, version),
        )
        for py in pythons
        for plat in plats
    ]


# PyPI versions, and the older copies the PyTorch index carries.
PURE_PYPI = {
    "certifi": ("2025.8.3", (), ">=3.7"),
    "filelock": ("3.18.0", (), ">=3.9"),
    "typing-extensions": ("4.14.1", (), ">=3.9"),
    "sympy": ("1.14.0", ("mpmath<1.4,>=1.1.0",), ">=3.9"),
    "mpmath": ("1.3.0", (), None),
    "networkx": ("3.4.2", (), ">=3.10"),
    "jinja2": ("3.1.6", ("MarkupSafe>=2.0",), ">=3.7"),
    "fsspec": ("2025.7.0", (), ">=3.9"),
    "setuptools": ("80.9.0", (), ">=3.9"),
}
PURE_PYTORCH_COPIES = {
    "certifi": "2022.12.7",
    "filelock": "3.13.1",
    "typing-extensions": "4.12.2",
    "sympy": "1.13.3",
    "mpmath": "1.3.0",
    "networkx": "3.3",
    "jinja2": "3.1.4",
    "fsspec": "2024.6.1",
}
BINARY_PYPI = {
    "numpy": ("2.2.6", ">=3.10"),
    "pillow": ("11.3.0", ">=3.9"),
    "markupsafe": ("3.0.2", ">=3.9"),
}
BINARY_PYTORCH_COPIES = {
    "numpy": ("1.26.3", ">=3.9"),
    "pillow": ("10.2.0", ">=3.8"),
    "markupsafe": ("2.1.5", ">=3.7"),
}
YANKED_NUMPY = ("2.2.5", "Broken on aarch64 (simulated yank)")


def _pypi(pythons: tuple[str, ...]) -> list[Hosted]:
    out: list[Hosted] = []
    for name, (version, reqs, rp) in PURE_PYPI.items():
        out.append(Hosted("pypi", "", "", _pure(name, version, reqs, rp)))
    out.append(Hosted("pypi", "", "", sdist=("mpmath", "1.3.0")))
    for name, (version, rp) in BINARY_PYPI.items():
        out += [Hosted("pypi", "", "", spec) for spec in _binary(name, version, pythons, rp)]
    out += [
        Hosted("pypi", "", "", spec, yanked=YANKED_NUMPY[1])
        for spec in _binary("numpy", YANKED_NUMPY[0], pythons, ">=3.10")
    ]
    for rel in RELEASES:
        if rel.triton:
            for py in pythons:
                for plat in (
                    "manylinux_2_27_x86_64.manylinux_2_28_x86_64",
                    "manylinux_2_27_aarch64.manylinux_2_28_aarch64",
                ):
                    spec = WheelSpec(
                        "triton",
                        rel.triton,
                        f"{py}-{py}-{plat}",
                        requires_dist=("setuptools>=40.8.0",),
                        summary=TEST_DOUBLE.format(name="triton"),
                        files=_stub_module("triton", rel.triton),
                    )
                    out.append(Hosted("pypi", "", "", spec))
        # PyPI's torch: no label; Linux x86_64 is a CUDA build, aarch64 is CPU-only.
        for py in pythons:
            for variant, plat in (
                (rel.pypi_cuda, LINUX_X86),
                ("cpu", LINUX_ARM),
                ("cpu", MAC_ARM),
                ("cpu", WIN),
            ):
                triton = f"triton=={rel.triton}" if rel.triton else None
                for spec in _family(
                    rel, variant, plat, py, label=False, triton=triton, torch_pin_label=False
                ):
                    out.append(Hosted("pypi", "", "", spec))
    out += [Hosted("pypi", "", "", spec) for spec in _nvidia_wheels()]
    return out


def _pytorch_copies(pythons: tuple[str, ...], variants: Iterable[str]) -> list[Hosted]:
    out: list[Hosted] = []
    for variant in variants:
        for name, version in PURE_PYTORCH_COPIES.items():
            _, reqs, rp = PURE_PYPI[name]
            out.append(Hosted("pytorch", "", variant, _pure(name, version, reqs, rp), pep658=False))
        for name, (version, rp) in BINARY_PYTORCH_COPIES.items():
            out += [
                Hosted("pytorch", "", variant, spec, pep658=False)
                for spec in _binary(name, version, pythons, rp)
            ]
        if variant.startswith("cu"):
            cuda_names = {r.split("==")[0] for r in _linux_cuda_reqs(variant)}
            out += [
                Hosted("pytorch", "", variant, spec, pep658=False)
                for spec in _nvidia_wheels()
                if spec.project in cuda_names
            ]
    return out


def default_catalog(pythons: tuple[str, ...] = PYTHONS) -> Catalog:
    """Every simulated file on both indexes."""
    files: list[Hosted] = []
    variants: set[str] = set()
    for rel in RELEASES:
        files += _pytorch_release(rel, "", pythons)
        variants.update(rel.variants)
    files += _pytorch_release(TEST_RELEASE, "test", pythons)
    files += _nightly(pythons)
    files += _pytorch_copies(pythons, sorted(variants))
    files += _pypi(pythons)
    return Catalog(tuple(files))


def small_catalog(
    specs: Iterable[WheelSpec], *, index: str = "pypi", pep658: bool = True, variant: str = "cu126"
) -> Catalog:
    """A catalog of hand-made wheels on one index (for focused tests)."""
    files = [
        Hosted(index, "", "" if index == "pypi" else variant, spec, pep658=pep658) for spec in specs
    ]
    return Catalog(tuple(files))
