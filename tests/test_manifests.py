"""The deployment files under `deploy/` and `compose.hardened.yml`, checked without running them:
every Kustomize directory renders with `kubectl kustomize` and each object it renders passes the
schema of the Kubernetes releases still supported (strict: an unknown field is an error), and what
the files' comments promise holds (the hardening, the five capabilities the init's root steps need,
a stop budget that outlasts the init's own, the podman unit and its Quadlet twin saying the same).

Run as any user; needs `kubectl` on PATH (it carries kustomize) and the `kubernetes-validate`
package (the `test` extras): missing, they fail the test, never skip it.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate import utils as schemas

from tests.e2e.podman_harness import ROOT_STEP_CAPABILITIES, Unit, flags

REPO = Path(__file__).resolve().parents[1]
KUBERNETES = REPO / "deploy" / "kubernetes"
# The base and the overlays; the opt-in components are rendered on top of them (test_kustomize_components).
KUSTOMIZATIONS = sorted(
    path.parent for path in KUBERNETES.rglob("kustomization.yaml") if "components" not in path.parts
)
PODMAN = REPO / "deploy" / "podman"
# The Kubernetes minors still supported upstream: the three newest the package has schemas for.
VERSIONS = sorted(set(schemas.all_versions()), key=lambda v: tuple(map(int, v.split("."))))[-3:]


@cache
def rendered(directory: Path) -> tuple[dict[str, Any], ...]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is not on PATH: it renders the Kustomize directories (`kubectl kustomize`)"
    completed = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, f"kubectl kustomize {directory} failed:\n{completed.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(completed.stdout) if doc)


def overlay(name: str) -> dict[str, Any]:
    """The Deployment an overlay renders."""
    [deployment] = [doc for doc in rendered(KUBERNETES / "overlays" / name) if doc["kind"] == "Deployment"]
    return deployment


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    [only] = deployment["spec"]["template"]["spec"]["containers"]
    return only


def env(deployment: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container(deployment)["env"]}


# -- Kubernetes ------------------------------------------------------------------------------------


def test_there_are_a_base_and_the_two_overlays() -> None:
    names = [str(path.relative_to(KUBERNETES)) for path in KUSTOMIZATIONS]
    assert names == ["base", "overlays/hardened", "overlays/repair"]


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda path: str(path.relative_to(KUBERNETES)))
@pytest.mark.parametrize("version", VERSIONS)
def test_renders_and_every_object_passes_the_schema(directory: Path, version: str) -> None:
    objects = rendered(directory)
    kinds = sorted(doc["kind"] for doc in objects)
    assert kinds == ["Deployment", "PersistentVolumeClaim", "PersistentVolumeClaim", "Service"]
    for doc in objects:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} fails Kubernetes {version}: {error}")


def test_one_pod_at_a_time_with_a_stable_host_name_and_room_to_stop() -> None:
    deployment = overlay("hardened")
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert pod["hostname"] == "moltbot" and pod["enableServiceLinks"] is False
    assert pod["terminationGracePeriodSeconds"] > float(env(deployment)["MOLTBOT_STOP_TIMEOUT"])
    assert "ports" not in container(deployment)  # podman's kube play would publish them on the host
    assert container(deployment)["resources"]["limits"]["memory"]  # the init sizes the heap from it


def test_probes_ask_the_init_and_readiness_ignores_channels() -> None:
    probes = {
        kind: container(overlay("hardened"))[f"{kind}Probe"]["exec"]["command"]
        for kind in ("startup", "readiness", "liveness")
    }
    init = "/usr/local/bin/moltbot-init"
    assert probes == {
        "startup": [init, "health", "--startup"],
        "readiness": [init, "health", "--startup"],
        "liveness": [init, "health"],
    }


def test_the_token_comes_from_a_secret_only_when_there_is_one() -> None:
    reference = env(overlay("hardened"))["MOLTBOT_GATEWAY_TOKEN"]["secretKeyRef"]
    assert reference == {"name": "moltbot-gateway-token", "key": "token", "optional": True}


def test_hardened_runs_as_1000_with_nothing_writable_but_its_volumes_and_two_scratch_dirs() -> None:
    deployment = overlay("hardened")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "fsGroup": 1000,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container(deployment)["securityContext"] == {
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: volumes[mount["name"]] for mount in container(deployment)["volumeMounts"]}
    sources = {
        path: volume["emptyDir"].get("medium", "disk")
        if "emptyDir" in volume
        else volume["persistentVolumeClaim"]["claimName"]
        for path, volume in mounts.items()
    }
    assert sources == {
        "/tmp": "disk",  # the gateway's file log: see test_kustomize_components
        "/run/moltbot": "Memory",
        "/var/lib/moltbot": "moltbot-state",
        "/home/node/clawd": "moltbot-workspace",
    }
    assert "MOLTBOT_AFTER_REPAIR" not in env(deployment)


def test_the_migration_overlay_of_deploy_readme_renders_and_mounts_the_old_claim_read_only(
    tmp_path: Path,
) -> None:
    """deploy/README.md's overlay for an old state on a claim of its own, where it says to put it."""
    text = (REPO / "deploy" / "README.md").read_text()
    marker = "<!-- tests/test_manifests.py renders and validates this overlay -->\n```yaml\n"
    assert marker in text
    snippet = text.split(marker, 1)[1].split("```", 1)[0]
    copy = tmp_path / "kubernetes"
    shutil.copytree(KUBERNETES, copy)
    (copy / "overlays" / "migrate-openclaw").mkdir()
    (copy / "overlays" / "migrate-openclaw" / "kustomization.yaml").write_text(snippet)
    objects = rendered(copy / "overlays" / "migrate-openclaw")
    for doc in objects:
        assert doc["metadata"]["namespace"] == "openclaw"
        kubernetes_validate.validate(doc, VERSIONS[-1], strict=True)
    [deployment] = [doc for doc in objects if doc["kind"] == "Deployment"]
    mounts = {mount["name"]: mount for mount in container(deployment)["volumeMounts"]}
    assert mounts["legacy"] == {"name": "legacy", "mountPath": "/home/node/.openclaw", "readOnly": True}
    volumes = {volume["name"]: volume for volume in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["legacy"]["persistentVolumeClaim"] == {"claimName": "openclaw-home-pvc", "readOnly": True}
    assert container(deployment)["securityContext"] == container(overlay("repair"))["securityContext"]


def test_repair_is_hardened_but_root_with_the_capabilities_of_the_root_steps_alone() -> None:
    hardened, repair = overlay("hardened"), overlay("repair")
    pod = repair["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == 0 and pod["securityContext"]["runAsNonRoot"] is False
    security = container(repair)["securityContext"]
    assert security["capabilities"]["drop"] == ["ALL"]
    assert set(security["capabilities"]["add"]) == ROOT_STEP_CAPABILITIES
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert pod["volumes"] == hardened["spec"]["template"]["spec"]["volumes"]
    assert "hardened" in env(repair)["MOLTBOT_AFTER_REPAIR"]


@pytest.mark.parametrize("version", VERSIONS)
def test_the_rollback_job_passes_the_schema_and_mounts_the_deployment_s_claims(version: str) -> None:
    [job] = list(yaml.safe_load_all((KUBERNETES / "jobs" / "rollback.yaml").read_text()))
    kubernetes_validate.validate(job, version, strict=True)
    [deployment] = [doc for doc in rendered(KUBERNETES / "base") if doc["kind"] == "Deployment"]
    pod, deployed = job["spec"]["template"]["spec"], deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["args"] == ["rollback"] and pod["restartPolicy"] == "Never"
    assert pod["volumes"] == deployed["volumes"]
    assert pod["containers"][0]["volumeMounts"] == deployed["containers"][0]["volumeMounts"]


@pytest.mark.parametrize("version", VERSIONS)
def test_the_restore_job_passes_the_schema_and_mounts_the_claims_of_the_deployment_and_the_backups(
    version: str,
) -> None:
    """As uid 1000 (a namespace that enforces `restricted` runs it), on the Deployment's claims at
    their paths, with the backups claim read-only where the CronJob writes it."""
    [job] = list(yaml.safe_load_all((KUBERNETES / "jobs" / "restore.yaml").read_text()))
    kubernetes_validate.validate(job, version, strict=True)
    [deployment] = [doc for doc in rendered(KUBERNETES / "base") if doc["kind"] == "Deployment"]
    pod, deployed = job["spec"]["template"]["spec"], deployment["spec"]["template"]["spec"]
    [restore] = pod["containers"]
    assert restore["args"][0] == "restore" and pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True and restore["securityContext"]["capabilities"] == {
        "drop": ["ALL"]
    }
    mounts = {mount["mountPath"]: mount for mount in restore["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    for mount in deployed["containers"][0]["volumeMounts"]:
        assert volumes[mounts[mount["mountPath"]]["name"]] in deployed["volumes"]
    backups = mounts["/var/backups/moltbot"]
    assert backups["readOnly"] is True
    assert volumes[backups["name"]]["persistentVolumeClaim"]["claimName"] == "moltbot-backups"


# -- podman ----------------------------------------------------------------------------------------


SERVICE, QUADLET = Unit(PODMAN / "moltbot.service"), Unit(PODMAN / "moltbot.container")


def exec_start() -> list[str]:
    """The podman command line of moltbot.service, its specifiers as written."""
    return SERVICE.command("ExecStart", {letter: f"%{letter}" for letter in "nNt%"})


def test_the_unit_notifies_and_stops_after_the_init() -> None:
    service = SERVICE["Service"]
    assert (service["Type"], service["NotifyAccess"]) == ("notify", "all")
    given = flags(exec_start()[2:-1])  # after `podman run`, before the image
    assert given["--sdnotify"] == ["container"]
    stop_timeout = int(given["--stop-timeout"][0])
    init_stop = dict(value.split("=", 1) for value in given["--env"])["MOLTBOT_STOP_TIMEOUT"]
    assert float(init_stop) < stop_timeout < int(service["TimeoutStopSec"])
    assert f"-t {stop_timeout}" in service["ExecStop"]


def test_the_unit_and_the_quadlet_run_the_same_container() -> None:
    given = flags(exec_start()[2:-1])
    quadlet = QUADLET["Container"]
    capabilities = set(given["--cap-add"][0].split(","))
    assert capabilities == set(quadlet["AddCapability"].split()) == ROOT_STEP_CAPABILITIES
    assert given["--cap-drop"] == ["all"] and quadlet["DropCapability"] == "all"
    assert "--read-only" in given and quadlet["ReadOnly"] == "true"
    assert given["--security-opt"] == ["no-new-privileges"] and quadlet["NoNewPrivileges"] == "true"
    assert quadlet["Notify"] == "true"
    assert set(given["--env"]) == set(quadlet["Environment"].split())
    assert given["--publish"] == [quadlet["PublishPort"]]
    # The unit names its container, host and volumes after itself (%N); the Quadlet spells moltbot.
    assert given["--name"] == given["--hostname"] == ["%N"] and quadlet["ContainerName"] == "moltbot"
    volumes = [value.replace("%N", "moltbot") for value in given["--volume"]]
    assert volumes == QUADLET.repeated("Volume")
    extra = flags(shlex.split(quadlet["PodmanArgs"]))
    assert extra == {"--hostname": ["moltbot"], "--stop-timeout": given["--stop-timeout"]}
    assert exec_start()[-1] == quadlet["Image"]
    for key in ("TimeoutStartSec", "TimeoutStopSec", "Restart", "RestartPreventExitStatus"):
        assert SERVICE["Service"][key] == QUADLET["Service"][key], key


# -- Docker ----------------------------------------------------------------------------------------


def test_the_hardened_compose_override_adds_only_the_capabilities_of_the_root_steps() -> None:
    service = yaml.safe_load((REPO / "compose.hardened.yml").read_text())["services"]["moltbot-gateway"]
    assert service["read_only"] is True
    assert {entry.split(":", 1)[0] for entry in service["tmpfs"]} == {"/tmp", "/run/moltbot"}
    assert service["cap_drop"] == ["ALL"] and set(service["cap_add"]) == ROOT_STEP_CAPABILITIES
    assert service["security_opt"] == ["no-new-privileges:true"]


def test_the_default_compose_rotates_its_log_reaches_the_host_and_passes_umask_and_tz() -> None:
    text = (REPO / "compose.yml").read_text()
    service = yaml.safe_load(text)["services"]["moltbot-gateway"]
    assert service["logging"] == {"driver": "json-file", "options": {"max-size": "10m", "max-file": "5"}}
    assert service["extra_hosts"] == ["host.docker.internal:host-gateway"]
    assert {"UMASK", "TZ"} <= service["environment"].keys()
    # The legacy bind mount, as a comment: read-only, and relabelled for SELinux hosts.
    assert "# - ${HOME}/.clawdbot:/home/node/.clawdbot:ro\n" in text
    assert "# - ${HOME}/.clawdbot:/home/node/.clawdbot:ro,z\n" in text
