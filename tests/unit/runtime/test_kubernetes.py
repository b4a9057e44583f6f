"""The Kubernetes manifests (deploy/kustomize): both overlays render with `kubectl kustomize`; every
built-in object validates against the Kubernetes schemas of a named version (kubernetes-validate)
and every custom resource against its operator's published CRD schema (deploy/kustomize/crds);
and what they declare follows from the sources it must follow: the callers that policy/ gives a
right on a service are exactly those its NetworkPolicy lets in, every pod runs the one image as
a non-root user on a read-only root filesystem, every api has native gRPC probes, the
PrometheusRule is deploy/prometheus/alerts.yml, the topology is what the processes declare."""

from __future__ import annotations

import inspect
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

import govmesh.grpcserver
from govmesh import config, messaging, probes
from scripts import kubernetes

ROOT = Path(__file__).resolve().parents[3]
KUSTOMIZE = ROOT / "deploy" / "kustomize"
CRDS = KUSTOMIZE / "crds"
#: The oldest Kubernetes the manifests are for: native gRPC probes are GA from 1.27, a
#: StatefulSet pod's apps.kubernetes.io/pod-index label from 1.28 (beta); 1.32 is this machine's
#: kubectl. Checked against the newest schemas kubernetes-validate ships too.
KUBERNETES_VERSIONS = ("1.32.0", "1.37.0")
OVERLAYS = ("dev", "prod")
IMAGES = {"dev": "localhost/govmesh:latest", "prod": "registry.example.invalid/govmesh/govmesh:0.1.0"}
RABBITMQ_NODES = {"dev": 1, "prod": 3}
WORKLOADS = ("Deployment", "StatefulSet", "Job")

Doc = dict[str, Any]


@cache
def rendered(overlay: str) -> tuple[Doc, ...]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is missing: `make install` installs Debian's kubernetes-client")
    if overlay == "dev":
        kubernetes.write_dev_keys()  # the dev overlay's throwaway keys (git ignores them)
    result = subprocess.run(
        [kubectl, "kustomize", str(KUSTOMIZE / overlay)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def of_kind(overlay: str, *kinds: str) -> list[Doc]:
    return [doc for doc in rendered(overlay) if doc["kind"] in kinds]


def named(overlay: str, kind: str, name: str) -> Doc:
    found = [doc for doc in of_kind(overlay, kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"{overlay}: no single {kind} {name}"
    return found[0]


def pod_specs(overlay: str) -> Iterator[tuple[str, Doc]]:
    for doc in of_kind(overlay, *WORKLOADS):
        yield f"{doc['kind']} {doc['metadata']['name']}", doc["spec"]["template"]["spec"]


def containers(spec: Doc) -> list[Doc]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def main_container(doc: Doc) -> Doc:
    [container] = [c for c in doc["spec"]["template"]["spec"]["containers"] if c["name"] == "govmesh"]
    return container


def environment(overlay: str) -> dict[str, str]:
    [configmap] = [d for d in of_kind(overlay, "ConfigMap") if d["metadata"]["name"].startswith("govmesh-environment")]
    return dict(configmap["data"])


def api_deployments(overlay: str) -> list[Doc]:
    return [d for d in of_kind(overlay, "Deployment") if d["metadata"]["name"].endswith("-api")]


# -- rendering and schemas -----------------------------------------------------------------------


def test_the_generated_files_are_what_their_sources_make() -> None:
    assert kubernetes.stale() == [], "run .venv/bin/python scripts/kubernetes.py"


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_built_in_objects_validate_against_the_kubernetes_schemas(overlay: str, version: str) -> None:
    built_in = [
        d
        for d in rendered(overlay)
        if "." not in d["apiVersion"].split("/")[0] or d["apiVersion"].split("/")[0].endswith(".k8s.io")
    ]
    assert len(built_in) > 40
    for doc in built_in:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{overlay}: {doc['kind']} {doc['metadata']['name']}: {error.message} at {list(error.path)}")


def _strict(schema: Any) -> Any:
    """The CRD's structural schema as the API server applies it with strict field validation: an
    unknown field is an error (where the schema does not keep unknown fields), null allowed only
    where nullable."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: _strict(value) for key, value in schema.items() if key != "properties"}
    if "properties" in schema:
        strict["properties"] = {name: _strict(value) for name, value in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            strict["additionalProperties"] = False
    if schema.get("nullable") and "type" in schema:
        strict["type"] = [schema["type"], "null"]
    return strict


@cache
def crd_schemas() -> dict[tuple[str, str], Doc]:
    schemas = {}
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text(encoding="utf-8"))
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = _strict(version["schema"]["openAPIV3Schema"])
            schema["properties"]["metadata"] = {"type": "object"}
            schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_validate_against_their_operators_crds(overlay: str) -> None:
    custom = [d for d in rendered(overlay) if (d["apiVersion"], d["kind"]) in crd_schemas()]
    kinds = {d["kind"] for d in custom}
    assert kinds == {
        "RabbitmqCluster",
        "Exchange",
        "Queue",
        "Binding",
        "Policy",
        "Cluster",
        "PrometheusRule",
        "ServiceMonitor",
    }
    for doc in custom:
        errors = sorted(
            jsonschema.Draft7Validator(crd_schemas()[(doc["apiVersion"], doc["kind"])]).iter_errors(doc), key=str
        )
        assert not errors, (
            f"{overlay}: {doc['kind']} {doc['metadata']['name']}: {errors[0].message} at {list(errors[0].path)}"
        )
    unknown = [d["kind"] for d in rendered(overlay) if "." in d["apiVersion"].split("/")[0]]
    assert all(k in kinds or k in ("NetworkPolicy", "HorizontalPodAutoscaler") for k in unknown)


def test_the_crd_check_catches_a_misspelt_field() -> None:
    cluster = dict(named("prod", "RabbitmqCluster", "govmesh-rabbitmq"))
    cluster["spec"] = {**cluster["spec"], "replica": 3}
    schema = crd_schemas()[("rabbitmq.com/v1beta1", "RabbitmqCluster")]
    assert list(jsonschema.Draft7Validator(schema).iter_errors(cluster))


# -- who may call whom ---------------------------------------------------------------------------


def expected_callers(policy: Doc) -> dict[str, set[str]]:
    """From the policy alone: a caller has a right on a service when one of its rights names a
    method of that service's package, or is "*"."""
    callers: dict[str, set[str]] = {service: set() for service in config.SERVICES}
    for caller, entry in policy["callers"].items():
        for right in entry.get("rights", []):
            for service in config.SERVICES:
                if (right == "*" or right.startswith(f"govmesh.{service}.")) and caller != service:
                    callers[service].add(caller)
    return callers


def admitted(network_policy: Doc, port: int) -> set[str]:
    """Who a NetworkPolicy lets in on ``port``: a service's api by its labels, another caller by
    the namespace label that names it."""
    found: set[str] = set()
    for rule in network_policy["spec"].get("ingress", []):
        assert [p["port"] for p in rule["ports"]] == [port]
        for peer in rule["from"]:
            if "podSelector" in peer:
                labels = peer["podSelector"]["matchLabels"]
                assert labels["app.kubernetes.io/component"] == "api" and "namespaceSelector" not in peer
                found.add(labels["app.kubernetes.io/name"])
            else:
                [expression] = peer["namespaceSelector"]["matchExpressions"]
                assert expression["key"] == "govmesh.io/caller" and expression["operator"] == "In"
                found |= set(expression["values"])
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_api_admits_exactly_the_callers_the_policy_names(overlay: str) -> None:
    [configmap] = [d for d in of_kind(overlay, "ConfigMap") if d["metadata"]["name"].startswith("govmesh-policy")]
    policy = yaml.safe_load(configmap["data"]["policy.yaml"])
    callers = expected_callers(policy)
    assert callers["identity"] >= {"records", "approvals", "health", "public_security"}
    assert ("demo-portal" in callers["crowd"]) == (overlay == "dev")
    for service in config.SERVICES:
        api = named(overlay, "Service", f"{service}-api")
        [port] = [p["targetPort"] for p in api["spec"]["ports"] if p["name"] == "grpc"]
        grpc_port = next(
            p["containerPort"]
            for p in main_container(named(overlay, "Deployment", f"{service}-api"))["ports"]
            if p["name"] == port
        )
        policy_doc = named(overlay, "NetworkPolicy", f"{service}-api-callers")
        assert policy_doc["spec"]["podSelector"]["matchLabels"] == api["spec"]["selector"]
        assert admitted(policy_doc, grpc_port) == callers[service], service


def grpc_clients_in_code() -> dict[str, set[str]]:
    """The services each service's api calls over gRPC, as its composition root builds them."""
    found = {}
    for service in config.SERVICES:
        source = (ROOT / "services" / service / "bootstrap.py").read_text(encoding="utf-8")
        found[service] = set(re.findall(r'(?:load_settings|config\.load)\("([a-z]+)"\)\.grpc_target', source))
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_grpc_call_the_code_makes_is_let_through_both_ways(overlay: str) -> None:
    calls = grpc_clients_in_code()
    assert calls["approvals"] == {"records", "identity"} and calls["identity"] == set()
    for caller, targets in calls.items():
        egress: set[str] = set()
        for doc in of_kind(overlay, "NetworkPolicy"):
            if doc["metadata"]["name"] == f"{caller}-api-calls":
                egress = {
                    rule["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
                    for rule in doc["spec"]["egress"]
                }
        assert targets <= egress, caller
        for target in targets:
            assert caller in admitted(
                named(overlay, "NetworkPolicy", f"{target}-api-callers"), kubernetes.grpc_port(target)
            )
            assert (
                environment(overlay)[f"{target.upper()}_GRPC_TARGET"] == f"{target}-api:{kubernetes.grpc_port(target)}"
            )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_process_is_under_the_default_deny_and_may_reach_the_broker_and_database(overlay: str) -> None:
    deny = named(overlay, "NetworkPolicy", "govmesh-default-deny")
    assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in deny["spec"]
    [expression] = deny["spec"]["podSelector"]["matchExpressions"]
    infrastructure = named(overlay, "NetworkPolicy", "govmesh-egress-infrastructure")
    ports = {p["port"] for rule in infrastructure["spec"]["egress"] for p in rule["ports"]}
    assert ports == {53, 5672, 5432}
    for where, _spec in pod_specs(overlay):
        kind, name = where.split()
        labels = named(overlay, kind, name)["spec"]["template"]["metadata"]["labels"]
        assert expression["key"] in labels, where


# -- the pods ------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_process_runs_the_one_image_with_its_command(overlay: str) -> None:
    commands = set()
    for where, spec in pod_specs(overlay):
        for container in containers(spec):
            assert container["image"] == IMAGES[overlay], where
        commands.add(" ".join(spec["containers"][0]["args"]))
    expected = {f"{kind} {service}" for service in config.SERVICES for kind in ("api", "worker")}
    assert commands == expected | {"ingest crowd", "migrate"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_runs_non_root_on_a_read_only_root_with_limits(overlay: str) -> None:
    for where, spec in pod_specs(overlay):
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0, where
        assert spec["automountServiceAccountToken"] is False, where
        volumes = {v["name"]: v for v in spec["volumes"]}
        for container in containers(spec):
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False and context["capabilities"]["drop"] == ["ALL"], where
            for mount in container["volumeMounts"]:
                if not mount.get("readOnly"):
                    assert "emptyDir" in volumes[mount["name"]], f"{where}: {mount['mountPath']} is writable"
            resources = container["resources"]
            assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}, where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_api_has_grpc_probes_on_its_port_and_drains_within_its_grace(overlay: str) -> None:
    drain = inspect.signature(govmesh.grpcserver.serve).parameters["grace_seconds"].default
    apis = api_deployments(overlay)
    assert len(apis) == len(config.SERVICES)
    for doc in apis:
        service = doc["metadata"]["name"].removesuffix("-api")
        container = main_container(doc)
        port = int(environment(overlay)[f"{service.upper()}_GRPC_PORT"])
        assert [p["containerPort"] for p in container["ports"] if p["name"] == "grpc"] == [port]
        for probe in ("startupProbe", "readinessProbe"):
            assert container[probe]["grpc"] == {"port": port}, f"{service} {probe}"
        # Alive is not ready: a database away must not get the process restarted.
        assert container["livenessProbe"]["grpc"] == {"port": port, "service": govmesh.grpcserver.LIVENESS}
        assert doc["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > drain
    for where, spec in pod_specs(overlay):
        if "Job" not in where:
            assert spec["terminationGracePeriodSeconds"] > drain, where
            assert (
                "httpGet" in spec["containers"][0]["livenessProbe"] or "grpc" in spec["containers"][0]["livenessProbe"]
            )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workers_and_ingest_are_ready_when_they_consume_and_restarted_only_when_stuck(overlay: str) -> None:
    others = [d for d in of_kind(overlay, "Deployment", "StatefulSet") if not d["metadata"]["name"].endswith("-api")]
    assert {d["metadata"]["name"].rsplit("-", 1)[1] for d in others} == {"worker", "ingest"}
    for doc in others:
        container, where = main_container(doc), doc["metadata"]["name"]
        # A rollout waits until the new pod consumes; readiness is /readyz, which says so.
        for probe in ("startupProbe", "readinessProbe"):
            assert container[probe]["httpGet"] == {"path": probes.READYZ, "port": "metrics"}, f"{where} {probe}"
        # Liveness fails only for a stuck main loop (never a broker or database away), and a stuck
        # process is restarted within two minutes of its last turn.
        liveness = container["livenessProbe"]
        assert liveness["httpGet"] == {"path": probes.LIVEZ, "port": "metrics"}, where
        assert probes.STALLED_AFTER + liveness["periodSeconds"] * liveness["failureThreshold"] <= 120, where
        assert liveness["timeoutSeconds"] < liveness["periodSeconds"], where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_processes_listen_where_their_services_and_monitors_look(overlay: str) -> None:
    env = environment(overlay)
    assert env["BIND_HOST"] == "0.0.0.0"
    for doc in of_kind(overlay, "Deployment", "StatefulSet"):
        service, kind = doc["metadata"]["name"].rsplit("-", 1)
        container = main_container(doc)
        metrics = int(env[f"{service.upper()}_{kind.upper()}_METRICS_PORT"])
        assert metrics == config.default_metrics_port(service, kind)
        assert [p["containerPort"] for p in container["ports"] if p["name"] == "metrics"] == [metrics]
        names = (f"{service}-{kind}", f"{service}-{kind}-metrics")
        [svc] = [s for s in of_kind(overlay, "Service") if s["metadata"]["name"] in names]
        assert svc["spec"]["selector"].items() <= doc["spec"]["template"]["metadata"]["labels"].items()
        assert svc["metadata"]["labels"]["govmesh_service"] == service
        assert svc["metadata"]["labels"]["govmesh.io/job"] == f"govmesh-{kind}"
        uris = messaging.broker_uris(next(e["value"] for e in container["env"] if e["name"] == "AMQP_URI"))
        assert (
            len(uris)
            == RABBITMQ_NODES[overlay]
            == named(overlay, "RabbitmqCluster", "govmesh-rabbitmq")["spec"]["replicas"]
        )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_variable_a_value_refers_to_is_defined_above_it(overlay: str) -> None:
    """The kubelet expands $(VAR) only from variables defined before it (an overlay's patch can
    reorder a list): AMQP_URI's credentials must come first."""
    env_file = dict(environment(overlay))
    for where, spec in pod_specs(overlay):
        for container in containers(spec):
            defined = set(env_file) if container.get("envFrom") else set()
            for variable in container.get("env", []):
                for name in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", variable.get("value", "")):
                    assert name in defined, f"{where}: {variable['name']} uses $({name}) before it is defined"
                defined.add(variable["name"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_secret_and_configmap_a_pod_needs_is_rendered_or_made_by_an_operator(overlay: str) -> None:
    made = {d["metadata"]["name"] for d in of_kind(overlay, "Secret", "ConfigMap")}
    by_operators = {"govmesh-rabbitmq-default-user", "govmesh-postgres-app"}
    # prod refers to the key Secrets by name; they are made from the operator's key directory.
    keys = {
        s.secret
        for s in (kubernetes.TOKEN_SIGNING, kubernetes.TOKEN_VERIFYING, kubernetes.PROOF_SIGNING, kubernetes.PSEUDONYM)
    }
    outside = by_operators | (keys if overlay == "prod" else set())
    for where, spec in pod_specs(overlay):
        wanted = {v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
        wanted |= {v["configMap"]["name"] for v in spec["volumes"] if "configMap" in v}
        for container in containers(spec):
            wanted |= {
                e["valueFrom"]["secretKeyRef"]["name"]
                for e in container.get("env", [])
                if "secretKeyRef" in e.get("valueFrom", {})
            }
            wanted |= {e["configMapRef"]["name"] for e in container.get("envFrom", [])}
        assert wanted <= made | outside, f"{where}: {sorted(wanted - made - outside)}"
    if overlay == "prod":
        assert not of_kind("prod", "Secret"), "prod holds no key material"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_health_reads_the_deployments_hospitals_from_their_configmap(overlay: str) -> None:
    """HEALTH_HOSPITALS_FILE names a file that health's api and worker mount from the ConfigMap
    holding services/health/hospitals.yaml (else the image's copy would be used, silently)."""
    path = Path(environment(overlay)["HEALTH_HOSPITALS_FILE"])
    [configmap] = [d for d in of_kind(overlay, "ConfigMap") if d["metadata"]["name"].startswith("govmesh-hospitals")]
    source = (ROOT / "services" / "health" / "hospitals.yaml").read_text(encoding="utf-8")
    assert configmap["data"] == {path.name: source}
    for name in ("health-api", "health-worker"):
        doc = named(overlay, "Deployment", name)
        [mount] = [m for m in main_container(doc)["volumeMounts"] if m["mountPath"] == str(path.parent)]
        [volume] = [v for v in doc["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
        assert volume["configMap"]["name"] == configmap["metadata"]["name"], name  # with kustomize's suffix


# -- monitoring ----------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_prometheus_rule_is_alerts_yml_and_the_monitors_its_jobs(overlay: str) -> None:
    alerts = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text(encoding="utf-8"))
    assert named(overlay, "PrometheusRule", "govmesh")["spec"]["groups"] == alerts["groups"]
    scrape = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    jobs = {job["job_name"] for job in scrape["scrape_configs"]}
    monitors = of_kind(overlay, "ServiceMonitor")
    assert {m["spec"]["selector"]["matchLabels"]["govmesh.io/job"] for m in monitors} == jobs
    assert {s["metadata"]["labels"].get("govmesh.io/job") for s in of_kind(overlay, "Service")} == jobs
    [dashboards] = [
        d for d in of_kind(overlay, "ConfigMap") if d["metadata"]["name"].startswith("govmesh-grafana-dashboards")
    ]
    assert set(dashboards["data"]) == {p.name for p in (ROOT / "deploy" / "grafana").glob("*.json")}
    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"


# -- RabbitMQ and PostgreSQL ---------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_topology_declares_every_consumed_queue_as_the_code_does(overlay: str) -> None:
    cluster = named(overlay, "RabbitmqCluster", "govmesh-rabbitmq")
    assert "rabbitmq_consistent_hash_exchange" in cluster["spec"]["rabbitmq"]["additionalPlugins"]
    queues = {q["spec"]["name"]: q["spec"] for q in of_kind(overlay, "Queue")}
    shards = int(environment(overlay)["CROWD_INGEST_SHARDS"])
    consumed = [q for _, q, _, _ in kubernetes.consumed_queues()] + [f"crowd.readings.shard.{n}" for n in range(shards)]
    assert "evt-approvals-case_submitted--approvals.on_case_submitted" in consumed
    assert set(queues) == set(consumed) | {f"{q}.dead-letter" for q in consumed}
    for name in consumed:
        spec = queues[name]
        assert spec["type"] == "quorum" and spec["durable"] is True
        assert spec["arguments"]["x-delivery-limit"] == messaging.DELIVERY_LIMIT
        assert spec["arguments"]["x-dead-letter-routing-key"] == name
        dlx = spec["arguments"]["x-dead-letter-exchange"]
        assert any(
            b["spec"]["source"] == dlx and b["spec"]["destination"] == f"{name}.dead-letter"
            for b in of_kind(overlay, "Binding")
        )
        assert spec["rabbitmqClusterReference"] == {"name": "govmesh-rabbitmq"}
    exchanges = {e["spec"]["name"]: e["spec"]["type"] for e in of_kind(overlay, "Exchange")}
    assert exchanges["crowd.readings.shards"] == "x-consistent-hash"
    assert {f"{s}.events" for s in config.SERVICES} <= exchanges.keys()


def test_the_rpc_policy_matches_namekos_queues_and_only_them() -> None:
    [rpc] = [p["spec"] for p in of_kind("prod", "Policy") if p["spec"]["name"] == "nameko-rpc-mirrored"]
    pattern = re.compile(rpc["pattern"])
    assert pattern.search("rpc-records") and pattern.search("rpc.reply-approvals-3f2a")
    assert not pattern.search("evt-approvals-case_submitted--approvals.on_case_submitted")
    assert not pattern.search("records.records.ingest")
    dead_lettering = [p["spec"] for p in of_kind("prod", "Policy") if p["spec"]["name"].endswith("-dead-lettering")]
    for queue in of_kind("prod", "Queue"):
        name = queue["spec"]["name"]
        matching = [p for p in dead_lettering if re.search(p["pattern"], name)]
        assert len(matching) == (0 if name.endswith(".dead-letter") else 1), name
        if matching:
            assert (
                matching[0]["definition"]["dead-letter-exchange"]
                == queue["spec"]["arguments"]["x-dead-letter-exchange"]
            )


@pytest.mark.parametrize(("overlay", "size"), [("dev", 1), ("prod", 3)])
def test_the_broker_and_database_clusters_have_their_size(overlay: str, size: int) -> None:
    assert named(overlay, "RabbitmqCluster", "govmesh-rabbitmq")["spec"]["replicas"] == size
    postgres = named(overlay, "Cluster", "govmesh-postgres")["spec"]
    assert postgres["instances"] == size
    assert ("synchronous" in postgres.get("postgresql", {})) == (size > 1)


# -- autoscaling, disruption budgets, the migration ----------------------------------------------


def test_prod_scales_and_protects_every_process_and_dev_runs_one_of_each() -> None:
    workloads = of_kind("prod", "Deployment", "StatefulSet")
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h["spec"] for h in of_kind("prod", "HorizontalPodAutoscaler")}
    pdbs = [p["spec"] for p in of_kind("prod", "PodDisruptionBudget")]
    assert len(workloads) == 11
    for doc in workloads:
        name, labels = doc["metadata"]["name"], doc["spec"]["template"]["metadata"]["labels"]
        hpa = hpas[name]
        assert hpa["minReplicas"] >= 2 and hpa["maxReplicas"] > hpa["minReplicas"]
        metric_types = {m["type"] for m in hpa["metrics"]}
        assert metric_types == ({"Resource"} if name.endswith("-api") else {"External"}), name
        if not name.endswith("-api"):
            names = {m["external"]["metric"]["name"] for m in hpa["metrics"]}
            assert names <= {"rabbitmq_queue_messages_ready", "govmesh_outbox_backlog"} and names, name
        [pdb] = [p for p in pdbs if p["selector"]["matchLabels"].items() <= labels.items()]
        assert pdb["maxUnavailable"] == 1
    assert hpas["crowd-ingest"]["maxReplicas"] <= int(environment("prod")["CROWD_INGEST_SHARDS"])
    assert not of_kind("dev", "HorizontalPodAutoscaler", "PodDisruptionBudget")
    assert {d["spec"]["replicas"] for d in of_kind("dev", "Deployment", "StatefulSet")} == {1}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_migrate_runs_as_a_job_and_every_process_waits_for_its_schema(overlay: str) -> None:
    job = named(overlay, "Job", "govmesh-migrate")
    assert main_container(job)["args"] == ["migrate"]
    for doc in of_kind(overlay, "Deployment", "StatefulSet"):
        service = doc["metadata"]["name"].rsplit("-", 1)[0]
        [wait] = [c for c in doc["spec"]["template"]["spec"]["initContainers"] if c["name"] == "wait-for-migrations"]
        assert wait["command"][:2] == ["python", "-c"] and wait["command"][-1] == service
        assert "readiness()" in wait["command"][2]
