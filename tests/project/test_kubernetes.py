"""kubernetes/: every manifest (and every kustomization, rendered by kubectl's own kustomize)
against the Kubernetes schemas, offline; every label against NFD's rules; and the manifests
consistent with the agent's configuration, its real NFD output and docs/docker.md."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from helpers import HOSTS, ROOT
from helpers.daemon import FAKE_AUTO, point, running_agent, wait_until
from helpers.kube import KUBE, _kind, agent_config, base, render
from helpers.nfd import (
    label_name_problems,
    label_value_problems,
    live_labels,
    parse_feature_file,
    utcnow,
)

from torchenv.agent import __version__
from torchenv.backends.catalog import load_catalog

# The Kubernetes versions whose schemas (shipped in kubernetes-validate) the manifests must
# pass: the oldest we claim and the newest the pinned kubernetes-validate knows.
SCHEMA_VERSIONS = ("1.32.0", "1.37.0")
KUSTOMIZATIONS = sorted(p.parent for p in KUBE.rglob("kustomization.yaml"))
PLAIN = sorted(p for p in KUBE.rglob("*.yaml") if p.name != "kustomization.yaml")


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _patch_files() -> set[Path]:
    """Files a kustomization names as patches (partial resources: validated once rendered)."""
    found = set()
    for directory in KUSTOMIZATIONS:
        for patch in documents(directory / "kustomization.yaml")[0].get("patches", []):
            if "path" in patch:
                found.add((directory / patch["path"]).resolve())
    return found


# ---------------------------------------------------------------- the schemas


def test_there_are_manifests_to_check() -> None:
    names = {p.relative_to(KUBE).as_posix() for p in KUSTOMIZATIONS}
    assert {"base", "overlays/nvidia-default-runtime", "overlays/mirror"} <= names
    assert KUBE / "examples" / "training-job.yaml" in PLAIN


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: p.relative_to(KUBE).as_posix())
def test_rendered_kustomizations_validate(directory: Path, version: str) -> None:
    resources = render(directory)
    assert resources
    for resource in resources:
        kubernetes_validate.validate(resource, version, strict=True)


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
@pytest.mark.parametrize("path", PLAIN, ids=lambda p: p.relative_to(KUBE).as_posix())
def test_every_plain_manifest_validates_as_it_is(path: Path, version: str) -> None:
    if path.resolve() in _patch_files():
        pytest.skip("a patch: validated through the kustomization that applies it")
    if not path.is_relative_to(KUBE / "examples"):
        # resources of a kustomization: the kustomization sets their namespace and tags
        assert any(path.is_relative_to(d) for d in KUSTOMIZATIONS), path
    for resource in documents(path):
        kubernetes_validate.validate(resource, version, strict=True)


def test_strict_validation_would_catch_a_misspelled_field() -> None:
    daemonset = _kind(base(), "DaemonSet")
    daemonset["spec"]["template"]["spec"]["nodeSelectr"] = {"a": "b"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(daemonset, SCHEMA_VERSIONS[0], strict=True)


# ---------------------------------------------------------------- the DaemonSet


def test_daemonset_runs_the_agent_with_gpus_its_config_and_the_host_paths(tmp_path: Path) -> None:
    resources = base()
    config = agent_config(resources, tmp_path)
    spec = _kind(resources, "DaemonSet")["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["args"][:1] == ["agent"]
    assert spec["runtimeClassName"] == "nvidia"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert env["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"
    assert "nvidia.com/gpu" not in container["resources"].get("limits", {})
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}

    def host_path(path: Path) -> str:
        """The node directory mounted where the container sees `path`."""
        mount = max((m for m in mounts if path == Path(m) or Path(m) in path.parents), key=len)
        return volumes[mounts[mount]]["hostPath"]["path"] + str(path)[len(mount) :]

    assert config.nfd_feature_file is not None
    assert host_path(config.nfd_feature_file.parent) == (
        "/etc/kubernetes/node-feature-discovery/features.d"
    )
    assert host_path(config.state_dir).startswith("/var/lib/torchenv")
    for environment in config.environments:
        assert host_path(environment.prefix).startswith("/opt/torchenv/")
    assert host_path(Path(env["TORCHENV_CACHE_DIR"])) == "/var/cache/torchenv/torchenv"
    assert host_path(Path(env["UV_CACHE_DIR"])) == "/var/cache/torchenv/uv"
    # the socket the probes ask is the agent's, on a volume of the pod
    for probe in ("livenessProbe", "readinessProbe"):
        command = container[probe]["exec"]["command"]
        assert command[:2] == ["torchenv", "status"]
        assert command[command.index("--socket") + 1] == str(config.socket)
    assert "--check" in container["readinessProbe"]["exec"]["command"]
    assert "--check" not in container["livenessProbe"]["exec"]["command"]
    assert any(config.socket.parent == Path(m) for m in mounts)


def test_overlays_change_what_they_say(tmp_path: Path) -> None:
    plain = _kind(render(KUBE / "overlays/nvidia-default-runtime"), "DaemonSet")
    assert "runtimeClassName" not in plain["spec"]["template"]["spec"]
    rendered = render(KUBE / "overlays/mirror")
    assert (
        agent_config(rendered, tmp_path).environments == agent_config(base(), tmp_path).environments
    )
    mirror = _kind(rendered, "ConfigMap")["data"]["config.toml"]
    assert re.search(r'^torch-index-url = "https://', mirror, re.M)
    assert re.search(r'^index-url = "https://', mirror, re.M)


def test_images_are_the_ones_docs_docker_md_builds() -> None:
    docker_md = (ROOT / "docs" / "docker.md").read_text()
    built = set(re.findall(r"docker build -t (\S+)", docker_md))
    named = set()
    for directory in KUSTOMIZATIONS:
        for resource in render(directory):
            named |= set(_images(resource))
    for path in PLAIN:
        if path.resolve() not in _patch_files():
            for resource in documents(path):
                if path.is_relative_to(KUBE / "examples"):
                    named |= set(_images(resource))
    assert named and named <= built, (named, built)
    assert f"torchenv:{__version__}" in named  # the agent's image carries this version
    assert f'"torchenv[uv]=={__version__}"' in docker_md


def _images(resource: dict[str, Any]) -> list[str]:
    spec = resource.get("spec", {}).get("template", {}).get("spec", {})
    pods = spec.get("initContainers", []) + spec.get("containers", [])
    return [c["image"] for c in pods]


# ---------------------------------------------------------------- labels


def _selector_terms(resource: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    """(key, operator, values) of every nodeSelector and required node affinity term."""
    spec = resource["spec"]["template"]["spec"]
    terms = [(k, "In", [v]) for k, v in spec.get("nodeSelector", {}).items()]
    affinity = spec.get("affinity", {}).get("nodeAffinity", {})
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution", {})
    for term in required.get("nodeSelectorTerms", []):
        for expr in term.get("matchExpressions", []):
            terms.append((expr["key"], expr["operator"], expr.get("values", [])))
    return terms


def _all_workloads() -> list[dict[str, Any]]:
    found = [r for d in KUSTOMIZATIONS for r in render(d)]
    found += [r for p in PLAIN if p.resolve() not in _patch_files() for r in documents(p)]
    return [r for r in found if "template" in r.get("spec", {})]


def test_every_selector_label_follows_the_rules() -> None:
    terms = [t for r in _all_workloads() for t in _selector_terms(r)]
    assert terms
    for key, _, values in terms:
        assert label_name_problems(key) == []
        for value in values:
            assert label_value_problems(value) == []
    for resource in _all_workloads():
        labels = resource["spec"]["template"]["metadata"].get("labels", {})
        for key, value in labels.items():
            assert label_value_problems(value) == [], key


def test_the_example_selects_labels_the_real_agent_publishes(tmp_path: Path) -> None:
    """The agent of the base's ConfigMap (its environments, its NFD settings) runs for a
    replayed H100 node; its feature file passes NFD's rules, and every torchenv.io/ label the
    example workload selects on is one that file has, with values that are real backends."""
    config = agent_config(base(), tmp_path)
    host = tmp_path / "host"
    point(host, HOSTS / "h100-driver580")
    features = tmp_path / "features.d" / "torchenv"
    lines = ["[agent]", f'socket = "{tmp_path}/agent.sock"', f'state-dir = "{tmp_path}/state"',
             f'host-replay = "{host}"', f'provisioner = ["{sys.executable}", "{FAKE_AUTO}"]',
             f'nfd-feature-file = "{features}"', f"nfd-expiry = {config.nfd_expiry:g}"]  # fmt: skip
    for index, environment in enumerate(config.environments):
        lines += ["[[environment]]", f'name = "{environment.name}"',
                  f'prefix = "{tmp_path}/env{index}"']  # fmt: skip
    (tmp_path / "agent.toml").write_text("\n".join(lines) + "\n")
    with running_agent(tmp_path / "agent.toml", tmp_path / "agent.sock", tmp_path / "log") as a:
        for environment in config.environments:
            a.wait_state("active", name=environment.name)
        text = wait_until(lambda: features.is_file() and features.read_text(), "the features")
        assert a.terminate() == 0
    parsed, problems = parse_feature_file(text)
    assert problems == []
    published = live_labels(parsed, utcnow())
    assert published["torchenv.io/backend"] == "cu130"
    backends = {
        build.backend
        for release in load_catalog().releases
        for _, builds in release.platforms
        for build in builds
    }
    example = documents(KUBE / "examples" / "training-job.yaml")
    selected = [t for r in example for t in _selector_terms(r) if t[0].startswith("torchenv.io/")]
    assert selected
    for key, operator, values in selected:
        assert key in published, (key, sorted(published))
        if key.endswith("backend"):
            assert set(values) <= backends
        if operator == "In":
            assert published[key] in values  # this replayed H100 node qualifies


def test_the_example_pods_share_the_agents_cache_and_their_environment() -> None:
    daemonset = _kind(base(), "DaemonSet")["spec"]["template"]["spec"]
    agent_cache = next(v for v in daemonset["volumes"] if v["name"] == "cache")["hostPath"]
    (job,) = documents(KUBE / "examples" / "training-job.yaml")
    spec = job["spec"]["template"]["spec"]
    assert job["spec"]["parallelism"] == 8
    volumes = {v["name"]: v for v in spec["volumes"]}
    (init,) = spec["initContainers"]
    (app,) = spec["containers"]
    assert init["command"][:2] == ["torchenv", "auto"]
    prefix = init["command"][init["command"].index("--prefix") + 1]
    init_mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    app_mounts = {m["name"]: m for m in app["volumeMounts"]}
    env_volume = next(n for n, p in init_mounts.items() if Path(p) in Path(prefix).parents)
    assert "emptyDir" in volumes[env_volume]  # each pod's own environment...
    assert app_mounts[env_volume]["mountPath"] == init_mounts[env_volume]
    assert app["command"][0] == f"{prefix}/bin/python"
    cache = next(n for n, v in volumes.items() if "hostPath" in v)
    assert volumes[cache]["hostPath"]["path"] == agent_cache["path"]  # ...the node's cache
    assert cache not in app_mounts  # the app does not need the cache
    # The image's TORCHENV_CACHE_DIR / UV_CACHE_DIR (docs/docker.md) are under that mount,
    # in the same subdirectories as the agent's, so both read and write the same entries.
    docker_md = (ROOT / "docs" / "docker.md").read_text()
    image_env = dict(re.findall(r"(TORCHENV_CACHE_DIR|UV_CACHE_DIR)=(\S+)", docker_md))
    agent_env = {e["name"]: e["value"] for e in daemonset["containers"][0]["env"]}
    agent_mount = next(
        m["mountPath"] for m in daemonset["containers"][0]["volumeMounts"] if m["name"] == "cache"
    )
    for name in ("TORCHENV_CACHE_DIR", "UV_CACHE_DIR"):
        inside_pod = Path(image_env[name]).relative_to(init_mounts[cache])
        inside_agent = Path(agent_env[name]).relative_to(agent_mount)
        assert inside_pod == inside_agent, name
