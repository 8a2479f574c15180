"""deploy/kubernetes, validated offline: strict schemas, plus what the schemas cannot see.

kubernetes-validate checks every object (base and each overlay, rendered here
the way kustomize renders them: namespace set, JSON6902 patches applied) against
the Kubernetes OpenAPI schemas in strict mode, so a misspelt field fails. Then:
selectors match pod labels, every HPA and PDB points at something that exists,
probe and container ports are the service table's, every SYN_* variable is one
the services read, and each container's settings equal its compose service's.
"""

from __future__ import annotations

import copy
import importlib
import json
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from services.runtime.settings import Settings
from synesthesia.services import GATEWAY, SERVICES, UPSTREAMS

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
VERSION = "1.33.0"  # the oldest release this is checked against; native gRPC probes are GA since 1.27
WORKLOADS = ("Deployment", "StatefulSet")


def _pointer(path: str) -> list:
    return [part.replace("~1", "/").replace("~0", "~") for part in path.lstrip("/").split("/")]


def apply_json_patch(document: dict, operations: list[dict]) -> dict:
    """RFC 6902 add/replace/remove, the subset kustomize overlays here use."""
    document = copy.deepcopy(document)
    for op in operations:
        *parents, last = _pointer(op["path"])
        node = document
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if op["op"] == "add" and isinstance(node, list):
            node.insert(len(node) if last == "-" else int(last), op["value"])
        elif op["op"] in ("add", "replace"):
            if op["op"] == "replace":
                assert (int(last) < len(node)) if isinstance(node, list) else last in node, op["path"]
            node[int(last) if isinstance(node, list) else last] = op["value"]
        elif op["op"] == "remove":
            del node[int(last) if isinstance(node, list) else last]
        else:
            raise AssertionError(f"unsupported patch op {op['op']}")
    return document


def render(directory: Path) -> list[dict]:
    """kustomize build, for what these kustomizations use: resources, namespace, images, JSON6902 patches."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    objects: list[dict] = []
    for resource in kustomization.get("resources", []):
        path = directory / resource
        if path.is_dir():
            objects += render(path)
        else:
            objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for patch in kustomization.get("patches", []):
        target = patch["target"]
        matched = [o for o in objects if o["kind"] == target["kind"] and o["metadata"]["name"] == target["name"]]
        assert matched, f"{directory}: patch target {target} matches nothing"
        for obj in matched:
            objects[objects.index(obj)] = apply_json_patch(obj, yaml.safe_load(patch["patch"]))
    namespace = kustomization.get("namespace")
    for obj in objects:
        if namespace and obj["kind"] != "Namespace":
            obj["metadata"]["namespace"] = namespace
    for image in kustomization.get("images", []):
        for obj in objects:
            for container in pod_spec(obj).get("containers", []) if obj["kind"] in WORKLOADS else []:
                name, _, _ = container["image"].partition(":")
                if name == image["name"]:
                    container["image"] = f"{image.get('newName', name)}:{image.get('newTag', 'latest')}"
    return objects


def pod_spec(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]


def by_kind(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


VARIANTS = {"base": KUBERNETES / "base", "tls": KUBERNETES / "overlays" / "tls",
            "external-postgres": KUBERNETES / "overlays" / "external-postgres"}


@pytest.fixture(scope="module", params=list(VARIANTS))
def objects(request) -> list[dict]:
    return render(VARIANTS[request.param])


@pytest.fixture(scope="module")
def base() -> list[dict]:
    return render(VARIANTS["base"])


def test_every_object_passes_strict_schema_validation(objects):
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {str(err.message)[:400]} at {list(err.path)}")


def test_a_workload_per_service_stateless_ones_as_deployments(base):
    deployments, statefulsets = by_kind(base, "Deployment"), by_kind(base, "StatefulSet")
    assert set(deployments) | set(statefulsets) == set(SERVICES)
    assert set(statefulsets) == {"embedding"}
    claim = statefulsets["embedding"]["spec"]["volumeClaimTemplates"][0]
    mounts = pod_spec(statefulsets["embedding"])["containers"][0]["volumeMounts"]
    assert {"name": claim["metadata"]["name"], "mountPath": "/data/index"} in mounts


def test_selectors_match_pod_labels_and_services_select_pods(objects):
    workloads = [o for o in objects if o["kind"] in WORKLOADS]
    for workload in workloads:
        selector = workload["spec"]["selector"]["matchLabels"]
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), workload["metadata"]["name"]
    for service in by_kind(objects, "Service").values():
        chosen = [w for w in workloads if service["spec"]["selector"].items()
                  <= w["spec"]["template"]["metadata"]["labels"].items()]
        assert [w["metadata"]["name"] for w in chosen] == [service["metadata"]["name"]]


def test_model_services_are_headless_so_the_gateway_balances_over_pods(base):
    services = by_kind(base, "Service")
    for upstream in UPSTREAMS:
        assert services[upstream.name]["spec"]["clusterIP"] == "None", upstream.name
    gateway_env = {e["name"]: e.get("value") for e in pod_spec(by_kind(base, "Deployment")["gateway"])["containers"][0]["env"]}
    for upstream in UPSTREAMS:  # dns:/// resolves a headless name to every ready pod: round-robin over them
        assert gateway_env[upstream.target_variable] == f"dns:///{upstream.name}:{upstream.port}"
    assert by_kind(base, "StatefulSet")["embedding"]["spec"]["serviceName"] == "embedding"


def test_hpa_and_pdb_targets_exist_and_cover_the_deployments(objects):
    deployments = by_kind(objects, "Deployment")
    hpas, pdbs = by_kind(objects, "HorizontalPodAutoscaler"), by_kind(objects, "PodDisruptionBudget")
    for hpa in hpas.values():
        ref = hpa["spec"]["scaleTargetRef"]
        assert ref["kind"] == "Deployment" and ref["name"] in deployments, ref
        assert hpa["spec"]["minReplicas"] <= deployments[ref["name"]]["spec"]["replicas"] <= hpa["spec"]["maxReplicas"]
    for pdb in pdbs.values():
        selected = [d for d in deployments.values() if pdb["spec"]["selector"]["matchLabels"].items()
                    <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert len(selected) == 1, pdb["metadata"]["name"]
        assert pdb["spec"]["minAvailable"] < selected[0]["spec"]["replicas"]  # a drain can proceed
    assert set(hpas) == set(pdbs) == set(deployments)


def test_ports_and_native_grpc_probes_are_the_service_table(base):
    for obj in base:
        if obj["kind"] not in WORKLOADS:
            continue
        service = SERVICES[obj["metadata"]["name"]]
        container = pod_spec(obj)["containers"][0]
        assert container["command"] == ["python", "-m", service.module, "--port", str(service.port)]
        assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
            "grpc": service.port, "metrics": service.metrics_port} | ({"http": service.http_port} if service.http_port
                                                                      else {})
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["SYN_METRICS_PORT"] == str(service.metrics_port)
        for probe in ("startupProbe", "readinessProbe"):
            assert container[probe]["grpc"] == {"port": service.port, "service": service.grpc_service}, probe
        liveness = container["livenessProbe"]
        # The gateway is NOT_SERVING while an upstream is down: liveness must not restart it for that.
        assert liveness == {**liveness, "tcpSocket": {"port": service.port}} if service is GATEWAY else \
            liveness["grpc"] == {"port": service.port}
    for svc in by_kind(base, "Service").values():
        service = SERVICES[svc["metadata"]["name"]]
        assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == {
            "grpc": service.port, "metrics": service.metrics_port} | ({"http": service.http_port} if service.http_port
                                                                      else {})


def test_model_pods_request_a_gpu_and_every_pod_resources(base):
    for obj in base:
        if obj["kind"] not in WORKLOADS:
            continue
        resources = pod_spec(obj)["containers"][0]["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]), obj["metadata"]["name"]
        gpus = (resources["requests"].get("nvidia.com/gpu"), resources["limits"].get("nvidia.com/gpu"))
        assert gpus == ((None, None) if obj["metadata"]["name"] == GATEWAY.name else (1, 1)), obj["metadata"]["name"]
        assert pod_spec(obj)["securityContext"]["runAsNonRoot"] is True


def test_only_the_gateway_is_reachable_from_outside(base):
    policies = by_kind(base, "NetworkPolicy")
    deny = policies["default-deny-ingress"]["spec"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"] and "ingress" not in deny
    open_to_all = [p for p in policies.values() for rule in p["spec"].get("ingress", []) if "from" not in rule]
    assert [p["metadata"]["name"] for p in open_to_all] == ["gateway-from-anywhere"]
    assert open_to_all[0]["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == GATEWAY.name
    models = policies["models-from-gateway"]["spec"]
    assert set(models["podSelector"]["matchExpressions"][0]["values"]) == {s.name for s in UPSTREAMS}
    assert models["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "gateway"


def test_token_tls_and_database_url_come_from_secrets(objects):
    embedding = {e["name"]: e for e in pod_spec(by_kind(objects, "StatefulSet")["embedding"])["containers"][0]["env"]}
    if "SYN_EMBEDDING_STORE" in embedding:  # the external-postgres overlay: the URL carries a password
        assert embedding["SYN_EMBEDDING_STORE"]["valueFrom"]["secretKeyRef"]["name"] == "synesthesia-postgres"
    for workload in [o for o in objects if o["kind"] in WORKLOADS]:  # one token: callers' and the gateway's hops
        env = {e["name"]: e for e in pod_spec(workload)["containers"][0]["env"]}
        assert env["SYN_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "synesthesia-auth"
    gateway = pod_spec(by_kind(objects, "Deployment")["gateway"])
    env = {e["name"]: e for e in gateway["containers"][0]["env"]}
    if "SYN_TLS_CERT_FILE" in env:  # the tls overlay
        volume = next(v for v in gateway["volumes"] if v["name"] == "tls")
        assert volume["secret"]["secretName"] == "synesthesia-tls"
        mount = next(m for m in gateway["containers"][0]["volumeMounts"] if m["name"] == "tls")
        assert env["SYN_TLS_CERT_FILE"]["value"].startswith(mount["mountPath"] + "/")
        assert env["SYN_TLS_KEY_FILE"]["value"].startswith(mount["mountPath"] + "/")


def variables_the_services_read() -> set[str]:
    """SYN_* names the code reads: every typed settings class (read_settings(cls, PREFIX) -> PREFIX + FIELD),
    settings.env("...") calls and literal SYN_ names left in services/ and models/."""
    names = {f"SYN_{f.name.upper()}" for f in fields(Settings) if not f.name.startswith("_")}
    for path in [*(ROOT / "services").rglob("*.py"), *(ROOT / "models").rglob("*.py")]:
        text = path.read_text()
        names |= {f"SYN_{n}" for n in re.findall(r"\benv\(\s*\"([A-Z0-9_]+)\"", text)}
        names |= set(re.findall(r"\"(SYN_[A-Z0-9_]+)\"", text))
        module = None
        for cls_name, prefix in re.findall(r"class (\w+)\b.*?read_settings\(cls, \"(SYN_[A-Z0-9_]*)\"\)", text, re.S):
            module = module or importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))
            names |= {prefix + f.name.upper() for f in fields(getattr(module, cls_name))}
    return {name for name in names if not name.endswith("_")}  # a prefix alone is no variable


def container_environment(objects: list[dict], name: str) -> dict[str, str]:
    settings = by_kind(objects, "ConfigMap")["synesthesia-settings"]["data"]
    workload = {**by_kind(objects, "Deployment"), **by_kind(objects, "StatefulSet")}[name]
    container = pod_spec(workload)["containers"][0]
    assert container["envFrom"] == [{"configMapRef": {"name": "synesthesia-settings"}}]
    return {**settings, **{e["name"]: e.get("value") for e in container["env"]}}


def test_every_syn_variable_is_read_by_the_services(objects):
    known = variables_the_services_read()
    for name in SERVICES:
        unknown = set(container_environment(objects, name)) - known
        assert not unknown, f"{name}: no service reads {sorted(unknown)}"


def test_settings_are_the_compose_settings(base):
    compose = subprocess.run([str(Path(sys.executable).parent / "docker-compose"), "-f", "compose.yaml", "config",
                              "--format", "json"], cwd=ROOT, capture_output=True, text=True, check=True)
    services = json.loads(compose.stdout)["services"]
    known = variables_the_services_read()
    for name in SERVICES:
        kubernetes = {k: v for k, v in container_environment(base, name).items() if v is not None}
        assert kubernetes == services[name]["environment"], name
        assert set(services[name]["environment"]) <= known, name
