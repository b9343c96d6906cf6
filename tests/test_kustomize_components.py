"""deploy/kubernetes's labels and opt-in components (`components/`: backups, config-seed, ingress,
metrics, network-policy), rendered on top of each overlay with `kubectl kustomize` and checked without a
cluster: every object passes the schemas (strict), the recommended labels are on every object of
the base and only the stable ones are in the selectors, a second copy in the same namespace shares
no selector with the first, and each component does what its comments say.

Run as any user; needs `kubectl` on PATH and `kubernetes-validate`, as tests/test_manifests.py.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from moltbot import profile
from tests.test_manifests import KUBERNETES, REPO, VERSIONS, container, env, rendered

COMPONENTS = sorted(path.parent for path in (KUBERNETES / "components").rglob("kustomization.yaml"))
OVERLAYS = ("hardened", "repair")
RECOMMENDED = {
    f"app.kubernetes.io/{key}"
    for key in ("name", "instance", "version", "component", "part-of", "managed-by")
}
SELECTED_BY = {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component"}


def render(workdir: Path, overlay: str = "hardened", **extra: Any) -> dict[str, list[dict[str, Any]]]:
    """An overlay of the test's own: `overlay` with every component, and `extra` keys; by kind."""
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(KUBERNETES / "overlays" / overlay, workdir)],
        "components": [os.path.relpath(path, workdir) for path in COMPONENTS],
        **extra,
    }
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "kustomization.yaml").write_text(json.dumps(kustomization), encoding="utf-8")
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for doc in rendered(workdir):
        by_kind.setdefault(doc["kind"], []).append(doc)
    return by_kind


def test_the_four_components() -> None:
    assert [path.name for path in COMPONENTS] == [
        "backups",
        "config-seed",
        "ingress",
        "metrics",
        "network-policy",
    ]


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("version", VERSIONS)
def test_each_overlay_with_every_component_passes_the_schema(
    tmp_path: Path, overlay: str, version: str
) -> None:
    objects = render(tmp_path, overlay)
    assert sorted(objects) == [
        "ConfigMap",
        "CronJob",
        "Deployment",
        "Ingress",
        "NetworkPolicy",
        "PersistentVolumeClaim",
        "Service",
    ]
    for doc in (doc for docs in objects.values() for doc in docs):
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} fails Kubernetes {version}: {error}")


def test_the_recommended_labels_are_on_every_object_and_only_the_stable_ones_select() -> None:
    for doc in rendered(KUBERNETES / "overlays" / "hardened"):
        assert doc["metadata"]["labels"].keys() >= RECOMMENDED, doc["kind"]
    [deployment] = [
        doc for doc in rendered(KUBERNETES / "overlays" / "hardened") if doc["kind"] == "Deployment"
    ]
    [service] = [doc for doc in rendered(KUBERNETES / "overlays" / "hardened") if doc["kind"] == "Service"]
    assert (
        deployment["spec"]["selector"]["matchLabels"].keys()
        == SELECTED_BY
        == service["spec"]["selector"].keys()
    )
    assert deployment["spec"]["template"]["metadata"]["labels"].keys() >= RECOMMENDED


def test_the_version_label_is_the_image_s() -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    dockerfile = re.search(r"^ARG VERSION=(\S+)$", (REPO / "Dockerfile").read_text(), re.MULTILINE)
    assert dockerfile and dockerfile.group(1) == version
    for doc in rendered(KUBERNETES / "overlays" / "hardened"):
        assert doc["metadata"]["labels"]["app.kubernetes.io/version"] == version


# What deploy/README.md gives a second copy for its backups: kustomize leaves a CronJob's pod
# affinity as it is, and the backup must run beside its own copy's gateway (the claims it mounts).
SECOND_COPY_BACKUP = {
    "target": {"kind": "CronJob", "name": "moltbot-backup"},
    "patch": "- {op: replace, path: /spec/jobTemplate/spec/template/spec/affinity/podAffinity/"
    "requiredDuringSchedulingIgnoredDuringExecution/0/labelSelector/matchLabels/"
    "app.kubernetes.io~1instance, value: second}",
}


def backup_pod(copy: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    [cron_job] = copy["CronJob"]
    pod: dict[str, Any] = cron_job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return pod


def beside(pod: dict[str, Any]) -> dict[str, str]:
    """The labels of the pod a backup's pod must run beside (on the same node)."""
    [term] = pod["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    labels: dict[str, str] = term["labelSelector"]["matchLabels"]
    return labels


def test_a_second_copy_in_the_same_namespace_selects_only_its_own_pod(tmp_path: Path) -> None:
    """As deploy/README.md says: a namePrefix and an instance of its own, in the selectors too."""
    first = render(tmp_path / "first")
    second = render(
        tmp_path / "second",
        namePrefix="second-",
        labels=[{"pairs": {"app.kubernetes.io/instance": "second"}, "includeSelectors": True}],
        patches=[SECOND_COPY_BACKUP],
    )
    selectors = [copy["Service"][0]["spec"]["selector"] for copy in (first, second)]
    assert selectors[0] != selectors[1]
    for copy, selector in zip((first, second), selectors, strict=True):
        [deployment] = copy["Deployment"]
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        assert copy["NetworkPolicy"][0]["spec"]["podSelector"]["matchLabels"].items() <= selector.items()
        backend = copy["Ingress"][0]["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
        assert backend["name"] == copy["Service"][0]["metadata"]["name"]
        assert (
            beside(backup_pod(copy)).items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        )
        claims = set(claims_of(backup_pod(copy)).values())
        assert claims == {claim["metadata"]["name"] for claim in copy["PersistentVolumeClaim"]}
    assert {copy["Service"][0]["metadata"]["name"] for copy in (first, second)} == {
        "moltbot",
        "second-moltbot",
    }


def test_the_ingress_keeps_idle_websockets_open_for_an_hour(tmp_path: Path) -> None:
    [ingress] = render(tmp_path)["Ingress"]
    annotations = ingress["metadata"]["annotations"]
    for key in (
        "nginx.ingress.kubernetes.io/proxy-read-timeout",
        "nginx.ingress.kubernetes.io/proxy-send-timeout",
    ):
        assert int(annotations[key]) >= 3600
    assert annotations["haproxy.org/timeout-tunnel"] == "3600s"
    assert ingress["spec"]["tls"] and ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"][
        "port"
    ] == {"name": "gateway"}


def test_the_network_policy_denies_all_but_the_gateway_s_port_in_and_dns_and_https_out(
    tmp_path: Path,
) -> None:
    [policy] = render(tmp_path)["NetworkPolicy"]
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert [rule["ports"] for rule in spec["ingress"]] == [[{"port": 18789, "protocol": "TCP"}]]
    ports = [(port["port"], port["protocol"]) for rule in spec["egress"] for port in rule["ports"]]
    assert sorted(ports) == [(53, "TCP"), (53, "UDP"), (443, "TCP")]


def test_the_config_seed_is_mounted_where_the_init_is_told_and_seeds_origins_and_proxies(
    tmp_path: Path,
) -> None:
    objects = render(tmp_path)
    [deployment], [config_map] = objects["Deployment"], objects["ConfigMap"]
    seed = {item["name"]: item.get("value") for item in container(deployment)["env"]}["MOLTBOT_CONFIG_SEED"]
    mounts = {mount["mountPath"]: mount for mount in container(deployment)["volumeMounts"]}
    mount = mounts[os.path.dirname(seed)]
    assert mount["readOnly"] is True
    volumes = {volume["name"]: volume for volume in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes[mount["name"]]["configMap"]["name"] == config_map["metadata"]["name"]
    config = json.loads(config_map["data"][os.path.basename(seed)])
    assert config["gateway"]["controlUi"]["allowedOrigins"] and config["gateway"]["trustedProxies"]


def test_tmp_holds_the_gateway_s_rotated_file_log_off_the_memory_limit() -> None:
    """The gateway's file log rotates at 100 MB with five archives, one family per day, each day's
    pruned a day after: twelve files at most. /tmp is disk, not a tmpfs counted against memory."""
    [deployment] = [
        doc for doc in rendered(KUBERNETES / "overlays" / "hardened") if doc["kind"] == "Deployment"
    ]
    mounts = {mount["mountPath"]: mount["name"] for mount in container(deployment)["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in deployment["spec"]["template"]["spec"]["volumes"]}
    scratch = volumes[mounts["/tmp"]]["emptyDir"]
    assert "medium" not in scratch
    size = re.fullmatch(r"(\d+)Gi", scratch["sizeLimit"])
    assert size and int(size.group(1)) << 30 > 12 * 100 * 1024 * 1024
    repair = yaml.safe_load((KUBERNETES / "overlays" / "repair" / "root-steps.yaml").read_text())
    assert "volumes" not in repair["spec"]["template"]["spec"]  # the repair overlay keeps them


def test_the_metrics_component_listens_annotates_the_pod_and_names_the_service_port(
    tmp_path: Path,
) -> None:
    objects = render(tmp_path)
    [deployment], [service] = objects["Deployment"], objects["Service"]
    assert env(deployment)["MOLTBOT_METRICS_ADDRESS"] == ":9800"
    assert "ports" not in container(deployment)  # podman's kube play would publish it on the host
    ports = {port["name"]: port for port in service["spec"]["ports"]}
    assert (ports["metrics"]["port"], ports["metrics"]["targetPort"]) == (9800, 9800)
    assert ports["gateway"]["port"] == 18789
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert (annotations["prometheus.io/scrape"], annotations["prometheus.io/port"]) == ("true", "9800")
    assert annotations["prometheus.io/path"] == "/metrics"


def claims_of(pod: dict[str, Any]) -> dict[str, str]:
    """A pod's volumes that are claims: {the volume's name: the claim's}."""
    volumes = pod["volumes"]
    return {
        v["name"]: v["persistentVolumeClaim"]["claimName"] for v in volumes if "persistentVolumeClaim" in v
    }


def test_the_backup_runs_the_gateway_s_image_beside_it_on_its_claims_as_uid_1000(tmp_path: Path) -> None:
    """The CronJob's pod: the Deployment's image (another release's CLI would run its bootstrap on
    the live state), its claims at its paths and the backups claim, on the gateway's node (the
    claims are ReadWriteOnce), at the restricted level, one run at a time."""
    objects = render(tmp_path, images=[{"name": "moltbot", "newName": "mirror/moltbot", "newTag": "9"}])
    [cron_job], [deployment] = objects["CronJob"], objects["Deployment"]
    pod, gateway = backup_pod(objects), container(deployment)
    [backup] = pod["containers"]
    assert backup["image"] == gateway["image"] == "mirror/moltbot:9"
    assert backup["args"][0] == "backup" and cron_job["spec"]["concurrencyPolicy"] == "Forbid"
    mounts = {mount["mountPath"]: mount["name"] for mount in backup["volumeMounts"]}
    claims, deployed = claims_of(pod), claims_of(deployment["spec"]["template"]["spec"])
    for mount in gateway["volumeMounts"]:
        if mount["name"] in deployed:
            assert claims[mounts[mount["mountPath"]]] == deployed[mount["name"]]
    assert claims[mounts[profile.BACKUP_DIR]] == "moltbot-backups"
    assert beside(pod).items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    security = pod["securityContext"]
    assert (security["runAsNonRoot"], security["runAsUser"], security["fsGroup"]) == (True, 1000, 1000)
    assert backup["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert backup["securityContext"]["readOnlyRootFilesystem"] is True and "/tmp" in mounts


def test_the_compose_backup_service_is_the_cron_job_on_the_compose_volumes(tmp_path: Path) -> None:
    """compose.backup.yml: the gateway's image, the same command (and a schedule of its own), the
    gateway's two volumes at their paths, and a backups volume where the CronJob mounts its claim."""
    gateway = yaml.safe_load((REPO / "compose.yml").read_text())["services"]["moltbot-gateway"]
    service = yaml.safe_load((REPO / "compose.backup.yml").read_text())["services"]["moltbot-backup"]
    [backup] = backup_pod(render(tmp_path))["containers"]
    assert service["image"] == gateway["image"]
    command = service["command"]
    every = command.index("--every")
    assert command[:every] + command[every + 2 :] == backup["args"]
    assert set(gateway["volumes"]) < set(service["volumes"])
    assert {volume.split(":")[1] for volume in service["volumes"]} == {
        mount["mountPath"] for mount in backup["volumeMounts"] if mount["mountPath"] != "/tmp"
    }
    assert service["depends_on"]["moltbot-gateway"]["condition"] == "service_healthy"
