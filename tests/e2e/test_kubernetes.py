"""The hardened Kubernetes overlay with every opt-in component, run for real: podman 4.3 plays the
very objects that `kubectl kustomize` renders of them (a Deployment, its claims and the config
seed's ConfigMap; podman has no use for the Service, the Ingress and the NetworkPolicy, and none for
a CronJob), with the image from the local Docker engine. The backup CronJob's pod template is then
played as a Pod beside the gateway: its backup, as the CronJob would make it.

Its pod must come up as uid 1000 on a read-only root filesystem with no capability, its claims as
podman volumes, its gateway answering `moltbot-init health`; after `podman kube down` and a second
`kube play`, the state (the generated token, the config) is found again. The test renders the
overlay through a kustomization of its own that only names things apart (a prefix) and points at
the session's image; `--network none` keeps the pod on loopback.

Run by pytest, as root, after scripts/ci-docker-setup and scripts/ci-podman-setup; needs `kubectl`
(kustomize) on PATH.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e import podman_harness as pm
from tests.e2e.harness import GATEWAY_DIR, REPO, STATE_DIR, TOKEN_FILE, WORKSPACE_DIR
from tests.e2e.test_container import MARKER_CONFIG, MARKER_MODEL

pytestmark = pytest.mark.e2e

HARDENED = REPO / "deploy" / "kubernetes" / "overlays" / "hardened"
COMPONENTS = REPO / "deploy" / "kubernetes" / "components"


def render(workdir: Path, prefix: str, image: str) -> list[dict[str, Any]]:
    """The hardened overlay, its names prefixed and its image the session's."""
    name, _, tag = image.rpartition(":")
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(HARDENED, workdir)],
        "components": [os.path.relpath(path, workdir) for path in sorted(COMPONENTS.iterdir())],
        "namePrefix": f"{prefix}-",
        "images": [{"name": "moltbot", "newName": name, "newTag": tag}],
    }
    (workdir / "kustomization.yaml").write_text(json.dumps(kustomization), encoding="utf-8")
    completed = subprocess.run(
        ["kubectl", "kustomize", str(workdir)], capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr
    return [doc for doc in yaml.safe_load_all(completed.stdout) if doc]


def play(path: Path, documents: list[dict[str, Any]]) -> None:
    path.write_text(yaml.safe_dump_all(documents), encoding="utf-8")
    pm.podman("kube", "play", "--network", "none", str(path), timeout=300, check=True)


def test_hardened_overlay_plays_answers_health_and_keeps_its_state_across_down_and_play(
    podman_image: str, tmp_path: Path
) -> None:
    prefix = pm.unique()
    documents = render(tmp_path, prefix, podman_image)
    claims = [doc["metadata"]["name"] for doc in documents if doc["kind"] == "PersistentVolumeClaim"]
    pod = f"{prefix}-moltbot-pod-0"  # podman names a Deployment's pod so
    container = f"{pod}-moltbot"
    manifest = tmp_path / "hardened.yaml"
    backup = f"{prefix}-backup"  # the CronJob's pod, and its container `<pod>-backup`
    try:
        play(manifest, documents)
        said = pm.wait_healthy(container)
        assert "gateway" in said, said

        # Hardened for real: uid 1000 from the start, nothing to gain, nothing writable but the
        # volumes and the two tmpfs.
        status = pm.process_status(container)
        assert status["Uid"].split() == ["1000"] * 4, status["Uid"]
        assert (int(status["CapEff"], 16), int(status["CapBnd"], 16), status["NoNewPrivs"]) == (0, 0, "1")
        assert pm.podman("exec", container, "touch", "/app/written").returncode != 0
        [report] = pm.events(container, "startup_report")
        phases = {phase["name"]: phase for phase in report["phases"]}
        assert phases["config"]["figures"]["started_as_root"] is False
        assert "ownership" not in phases and phases["privileges"]["figures"]["unwritable"] == []
        assert phases["credentials"]["figures"]["source"] == "generated"
        # The config seed's ConfigMap, mounted as a file: the first boot's config.
        assert phases["config_seed"]["figures"]["seeded"] is True
        mounted = pm.mounts(container)
        assert [mounted[path].get("Name") for path in (STATE_DIR, WORKSPACE_DIR)] == [
            f"{prefix}-moltbot-state",
            f"{prefix}-moltbot-workspace",
        ]
        created = backed_up(tmp_path, documents, backup)
        assert created["secret_copied"] is True and set(created["assets"]) >= {"state", "workspace"}

        token = pm.podman("exec", container, "cat", TOKEN_FILE, check=True).stdout
        config = f"printf '%s' '{MARKER_CONFIG.strip()}' > {GATEWAY_DIR}/openclaw.json"
        pm.podman("exec", container, "sh", "-c", config, check=True)
        pm.save_logs(container, "kube-play-first")
        pm.podman("kube", "down", str(manifest), timeout=300, check=True)
        assert pm.podman("container", "exists", container).returncode == 1
        assert all(pm.podman("volume", "exists", claim).returncode == 0 for claim in claims)

        # podman 4.3 refuses to play a claim whose volume exists; `kubectl apply` would leave it
        # be. The second play is the Deployment alone, on the volumes the first one made.
        play(manifest, [doc for doc in documents if doc["kind"] in ("Deployment", "ConfigMap")])
        pm.wait_healthy(container)
        assert pm.podman("exec", container, "cat", TOKEN_FILE, check=True).stdout == token
        kept = pm.podman("exec", container, "cat", f"{GATEWAY_DIR}/openclaw.json", check=True).stdout
        assert kept == MARKER_CONFIG.strip()
        [report] = pm.events(container, "startup_report")
        credentials = next(phase for phase in report["phases"] if phase["name"] == "credentials")
        assert credentials["figures"]["source"] == "file", credentials
        assert report["phases"][-1]["figures"]["seeded"] is False  # the config is the gateway's now
        output = [line.text for line in pm.lines(container) if line.json() is None]
        assert any(f"agent model: {MARKER_MODEL}" in line for line in output)
    finally:
        if pm.podman("container", "exists", container).returncode == 0:
            pm.save_logs(container, "kube-play")
        pm.podman("pod", "rm", "--force", "--ignore", backup, timeout=120)
        pm.podman("kube", "down", str(manifest), timeout=300)
        pm.remove((container,), tuple(claims))


def backed_up(workdir: Path, documents: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """The backup CronJob's pod template played as a Pod beside the running gateway (podman runs no
    CronJob), on the same claims: its `backup_created` line, once it exited 0."""
    [cron_job] = [doc for doc in documents if doc["kind"] == "CronJob"]
    spec = cron_job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    play(
        workdir / "backup.yaml",
        [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}],
    )
    container = f"{name}-backup"
    waited = pm.podman("wait", container, timeout=600, check=True)
    pm.save_logs(container, "kube-play-backup")
    assert waited.stdout.strip() == "0", pm.podman("logs", container).stderr
    [created] = pm.events(container, "backup_created")
    return created
