"""Generate the Kubernetes manifests' derived files (deploy/kustomize/*/generated/) from their one
source of truth each, so nothing is kept twice by hand:

* the workloads (a Deployment per api and worker, crowd's ingest StatefulSet, a Service per api
  and a metrics Service per worker and ingest, the `govmesh migrate` Job) from govmesh.config's
  services, ports and environment;
* the NetworkPolicies from the rights policy (policy/dev.yaml; the prod overlay's policy is the
  same without the development-only demo portal): who may call each api;
* the RabbitMQ topology (messaging-topology-operator Exchanges, quorum Queues, Bindings, Policies)
  from what the processes themselves declare (govmesh.messaging, govmesh.worker, crowd's ingest),
  recorded by running their declaring functions against a channel that only takes notes;
* the PrometheusRule from deploy/prometheus/alerts.yml, the ServiceMonitors from the jobs of
  deploy/prometheus/prometheus.yml;
* copies of policy/dev.yaml, services/approvals/case_types/*.yaml, services/health/hospitals.yaml
  and deploy/grafana/*.json, because kustomize reads files only below a kustomization's own
  directory (its load restrictor);
* the prod overlay's HorizontalPodAutoscalers and PodDisruptionBudgets, and the dev overlay's patches.

    .venv/bin/python scripts/kubernetes.py           writes deploy/kustomize/*/generated/
    .venv/bin/python scripts/kubernetes.py --check   exits 1 if a file is not what it would write
    .venv/bin/python scripts/kubernetes.py --dev-keys  makes the dev overlay's throwaway keys

Why the manifests are shaped this way: docs/decisions/runtime-kubernetes-manifests.md.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: the repository's packages
    sys.path.insert(0, str(ROOT))

from govmesh import config, keys, messaging  # noqa: E402
from govmesh.grpcserver import LIVENESS  # noqa: E402
from govmesh.probes import LIVEZ, READYZ  # noqa: E402

KUSTOMIZE = ROOT / "deploy" / "kustomize"
BASE = KUSTOMIZE / "base" / "generated"
DEV = KUSTOMIZE / "dev" / "generated"
PROD = KUSTOMIZE / "prod" / "generated"
REGENERATE = ".venv/bin/python scripts/kubernetes.py"

Doc = dict[str, Any]

#: The one image (deploy/image/Containerfile); overlays pin its tag with `images:`.
IMAGE = "govmesh"
CONTAINER = "govmesh"
RABBITMQ = "govmesh-rabbitmq"  # the RabbitmqCluster (base/rabbitmq.yaml)
POSTGRES = "govmesh-postgres"  # the CloudNativePG Cluster (base/postgres.yaml)
PART_OF = {"app.kubernetes.io/part-of": "govmesh"}
#: Every govmesh process's pod carries it (and no operator's pod does): the NetworkPolicies'
#: default deny selects on it.
PROCESS_LABEL = "govmesh.io/process"
#: The namespace label that names a caller of the policy outside the mesh (a department's
#: gateway, the portal, the city brain): its pods may call the apis that caller has rights on.
CALLER_LABEL = "govmesh.io/caller"
#: Where Prometheus runs (the label every namespace carries by its name).
MONITORING_NAMESPACE = "monitoring"
#: The shard queues of crowd's readings (CROWD_INGEST_SHARDS), fixed per deployment.
INGEST_SHARDS = 8

# -- the process kinds and their sizes ---------------------------------------------------------
#
# Requests and limits come from the measured figures, not from guesses:
# * memory: every process's resident set in the 10-minute soak of make chaos
#   (chaos/results/20261206T125120Z.json, soak.samples): apis 106-110 MiB, records api up to
#   148 MiB (its trend the steepest, 274 MiB/h over the soak's last third), workers 98-104 MiB,
#   crowd ingest 75 MiB; an api process holding 1,000 watchers went from 95 to 193 MB
#   (bench/results/20261206T041536Z.json, "1,000 watchers of one api process").
# * CPU: docs/sizing.md from bench/results/20261206T041536Z.json: records api ~2.7 ms per proof
#   (300 proofs/s is ~0.8 core), approvals worker 26.5 ms and approvals api 10.5 ms per case
#   (20 cases/s: ~0.5 and ~0.2 core), crowd ingest 14,217 readings/s on one core; a Python
#   process is bound to about one core by its interpreter lock, so no limit above 1 core helps.
# Requests are what a process uses at its usual load, limits what it may burst to.


@dataclass(frozen=True)
class Size:
    cpu_request: str
    memory_request: str
    cpu_limit: str
    memory_limit: str

    def resources(self) -> Doc:
        return {
            "requests": {"cpu": self.cpu_request, "memory": self.memory_request},
            "limits": {"cpu": self.cpu_limit, "memory": self.memory_limit},
        }


SIZES = {
    "api": Size("250m", "192Mi", "1", "384Mi"),
    # records' api signs every proof (~2.7 ms each) and grew fastest in the soak.
    "records-api": Size("500m", "256Mi", "1", "512Mi"),
    "worker": Size("200m", "160Mi", "1", "320Mi"),
    # approvals' saga (26.5 ms a case) and records' sequencer and proofs RPC are the busy workers.
    "approvals-worker": Size("500m", "160Mi", "1", "320Mi"),
    "records-worker": Size("500m", "160Mi", "1", "320Mi"),
    "ingest": Size("500m", "128Mi", "1", "256Mi"),
    "migrate": Size("100m", "128Mi", "1", "256Mi"),
}
#: The dev overlay: one small replica of everything.
DEV_SIZE = Size("50m", "128Mi", "500m", "256Mi")

#: How long a rolling update waits for a pod to stop: an api drains in-flight calls for 10 s
#: (govmesh/grpcserver.py, grace_seconds), a worker lets its running handlers finish (a proof
#: waits for records up to APPROVALS_PROOF_TIMEOUT_SECONDS, 5 s), ingest applies or leaves
#: unacknowledged the batch in hand. 30 s leaves room above each.
TERMINATION_GRACE_SECONDS = 30


@dataclass(frozen=True)
class Process:
    service: str
    kind: str  # api | worker | ingest

    @property
    def name(self) -> str:
        return f"{self.service}-{self.kind}"

    @property
    def labels(self) -> dict[str, str]:
        return {
            "app.kubernetes.io/name": self.service,
            "app.kubernetes.io/component": self.kind,
            PROCESS_LABEL: self.name,
        }

    @property
    def selector(self) -> dict[str, str]:
        return {"app.kubernetes.io/name": self.service, "app.kubernetes.io/component": self.kind}

    @property
    def metrics_port(self) -> int:
        return config.default_metrics_port(self.service, self.kind)

    @property
    def size(self) -> Size:
        return SIZES.get(self.name, SIZES[self.kind])

    @property
    def workload_kind(self) -> str:
        # Ingest processes split the shards by their ordinal (GOVMESH_INSTANCE), which only a
        # StatefulSet gives a pod (the apps.kubernetes.io/pod-index label).
        return "StatefulSet" if self.kind == "ingest" else "Deployment"


def grpc_port(service: str) -> int:
    return 50051 + config.SERVICES.index(service)


def processes() -> list[Process]:
    found = []
    for service in config.SERVICES:
        found += [Process(service, "api"), Process(service, "worker")]
        if (ROOT / "services" / service / "ingest.py").exists():
            found.append(Process(service, "ingest"))
    return found


# -- keys ----------------------------------------------------------------------------------------
#
# A key ring is `<name>.ring.json` beside a directory `<name>/` of `<key_id>.pem` and
# `<key_id>.pub.pem` (govmesh/keys.py), but a Secret's volume is one flat directory. So each
# ring's Secret holds its ring file and key files flat, is mounted on a directory of its own, and
# an init container links the key directory's names to it: `<name>` -> the mount,
# `<name>.ring.json`, `<name>.pem`, `<name>.pub.pem` -> the files of those names in it (a key kept
# the old way, one file, works the same; a name the Secret does not hold is a dangling link that
# the process reads as absent). Links resolve through the Secret's own atomic symlinks, so a ring
# the operator updates in the Secret reaches the running processes (they re-read it) with no restart.
KEY_DIR = "/var/run/govmesh/keys"
SECRETS_DIR = "/var/run/secrets/govmesh"


@dataclass(frozen=True)
class KeySecret:
    secret: str  # the Secret's name
    ring: str  # the key directory's name for it (keys.RINGS value, or the pseudonym key's)
    files: tuple[str, ...]  # names linked from the key directory beside the ring directory


TOKEN_SIGNING = KeySecret(
    "govmesh-token-signing", keys.RINGS["tokens"], ("ring.json", "pem", "pub.pem")
)  # private halves: for services that mint their own tokens
TOKEN_VERIFYING = KeySecret(
    "govmesh-token-verifying", keys.RINGS["tokens"], ("ring.json", "pub.pem")
)  # public halves only: for services that only verify
PROOF_SIGNING = KeySecret("govmesh-proof-signing", keys.RINGS["proofs"], ("ring.json", "pem", "pub.pem"))
PSEUDONYM = KeySecret("govmesh-identity-pseudonym", "identity-pseudonym", ("key",))

#: Which key Secrets each service's processes mount: services that call others mint their own
#: tokens (ServiceCredentials in their bootstrap.py), records signs proofs and tree heads,
#: identity keeps the pseudonym key (services/identity/bootstrap.py).
SERVICE_KEYS = {
    "identity": (TOKEN_VERIFYING, PSEUDONYM),
    "records": (TOKEN_SIGNING, PROOF_SIGNING),
    "approvals": (TOKEN_SIGNING,),
    "health": (TOKEN_SIGNING,),
    "crowd": (TOKEN_VERIFYING,),
}


def key_links(secrets: Iterable[KeySecret]) -> str:
    lines = ["set -eu"]
    for one in secrets:
        mount = f"{SECRETS_DIR}/{one.secret}"
        if one.files == ("key",):
            lines.append(f"ln -sfn {mount}/{one.ring}.key {KEY_DIR}/{one.ring}.key")
            continue
        lines.append(f"ln -sfn {mount} {KEY_DIR}/{one.ring}")
        lines += [f"ln -sfn {mount}/{one.ring}.{suffix} {KEY_DIR}/{one.ring}.{suffix}" for suffix in one.files]
    return "\n".join(lines) + "\n"


# -- the workloads -------------------------------------------------------------------------------

#: Waits until the service's schema is at the head this image's code knows (the same check as an
#: api's readiness, govmesh.db.Database.readiness), so no process starts before `govmesh migrate`
#: (the Job) has migrated its schema.
WAIT_FOR_MIGRATIONS = """\
import sys, time
from govmesh import config
from govmesh.db import service_database
settings = config.load(sys.argv[1])
db = service_database(settings.service, settings.database_url)
while (reason := db.readiness()) is not None:
    print(f"waiting for govmesh migrate: {reason}", flush=True)
    time.sleep(2)
"""


def shared_environment() -> dict[str, str]:
    """The settings every process reads (govmesh/config.py, services/*/__init__.py ENVIRONMENT),
    as the ConfigMap govmesh-environment: every port explicit (a GOVMESH_INSTANCE would shift a
    default one), every service reached through its api's Service."""
    env = {
        "BIND_HOST": "0.0.0.0",  # noqa: S104 - pods listen on their own address
        "GOVMESH_POLICY": "/etc/govmesh/policy/policy.yaml",
        "GOVMESH_KEY_DIR": KEY_DIR,
        "APPROVALS_CASE_TYPES_DIR": "/etc/govmesh/case-types",
        "HEALTH_HOSPITALS_FILE": "/etc/govmesh/hospitals/hospitals.yaml",
        "CROWD_INGEST_SHARDS": str(INGEST_SHARDS),
        "LOG_LEVEL": "INFO",
        "OTEL_TRACES_EXPORTER": "none",
    }
    for service in config.SERVICES:
        prefix = service.upper()
        env[f"{prefix}_GRPC_PORT"] = str(grpc_port(service))
        env[f"{prefix}_GRPC_TARGET"] = f"{service}-api:{grpc_port(service)}"
        for kind in ("api", "worker", "ingest"):
            env[f"{prefix}_{kind.upper()}_METRICS_PORT"] = str(config.default_metrics_port(service, kind))
    return dict(sorted(env.items()))


def amqp_uri(nodes: int) -> str:
    """Every node of the RabbitmqCluster by its own name (its headless Service `<name>-nodes`), so
    a process whose node dies connects to the next (govmesh.messaging.broker_uris, kombu)."""
    return ";".join(
        f"amqp://$(RABBITMQ_USERNAME):$(RABBITMQ_PASSWORD)@{RABBITMQ}-server-{n}.{RABBITMQ}-nodes:5672/"
        for n in range(nodes)
    )


def connection_env(nodes: int = 3) -> list[Doc]:
    """The broker's and the database's addresses with their credentials, from the Secrets the two
    operators make: the RabbitmqCluster's default user, the CNPG Cluster's application user
    (its `uri` is postgresql://...; govmesh.db reads it with psycopg 3)."""
    return [
        {
            "name": "RABBITMQ_USERNAME",
            "valueFrom": {"secretKeyRef": {"name": f"{RABBITMQ}-default-user", "key": "username"}},
        },
        {
            "name": "RABBITMQ_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": f"{RABBITMQ}-default-user", "key": "password"}},
        },
        {"name": "AMQP_URI", "value": amqp_uri(nodes)},
        {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": f"{POSTGRES}-app", "key": "uri"}}},
    ]


SECURITY_CONTEXT = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
}
POD_SECURITY_CONTEXT = {
    # The image's user (deploy/image/Containerfile: useradd --uid 10001).
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "fsGroup": 10001,
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def volumes(service: str, policy: bool = True) -> tuple[list[Doc], list[Doc]]:
    """(volumes, the main container's mounts): /tmp the one writable path (the image's root
    filesystem is read-only; with the database in PostgreSQL and keys from Secrets nothing
    writes var/), the key directory, the policy, (approvals) the case types and (health) the
    deployment's hospitals."""
    vols: list[Doc] = [
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
        {"name": "keys", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
    ]
    mounts: list[Doc] = [
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - the pod's own emptyDir
        {"name": "keys", "mountPath": KEY_DIR, "readOnly": True},
    ]
    for one in SERVICE_KEYS[service]:
        vols.append({"name": one.secret, "secret": {"secretName": one.secret, "defaultMode": 0o440}})
        mounts.append({"name": one.secret, "mountPath": f"{SECRETS_DIR}/{one.secret}", "readOnly": True})
    if policy:
        vols.append({"name": "policy", "configMap": {"name": "govmesh-policy"}})
        mounts.append({"name": "policy", "mountPath": "/etc/govmesh/policy", "readOnly": True})
    if service == "approvals":
        vols.append({"name": "case-types", "configMap": {"name": "govmesh-case-types"}})
        mounts.append({"name": "case-types", "mountPath": "/etc/govmesh/case-types", "readOnly": True})
    if service == "health":
        vols.append({"name": "hospitals", "configMap": {"name": "govmesh-hospitals"}})
        mounts.append({"name": "hospitals", "mountPath": "/etc/govmesh/hospitals", "readOnly": True})
    return vols, mounts


def init_containers(service: str, mounts: list[Doc]) -> list[Doc]:
    secret_mounts = [m for m in mounts if m["mountPath"].startswith(SECRETS_DIR)]
    small = Size("10m", "32Mi", "100m", "64Mi").resources()
    return [
        {
            "name": "keys",
            "image": IMAGE,
            "command": ["/bin/sh", "-c", key_links(SERVICE_KEYS[service])],
            "volumeMounts": [{"name": "keys", "mountPath": KEY_DIR}, *secret_mounts],
            "resources": small,
            "securityContext": SECURITY_CONTEXT,
        },
        {
            "name": "wait-for-migrations",
            "image": IMAGE,
            "command": ["python", "-c", WAIT_FOR_MIGRATIONS, service],
            "envFrom": [{"configMapRef": {"name": "govmesh-environment"}}],
            "env": [e for e in connection_env() if e["name"] == "DATABASE_URL"],
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108
            "resources": SIZES["migrate"].resources(),
            "securityContext": SECURITY_CONTEXT,
        },
    ]


def probes(process: Process) -> Doc:
    if process.kind == "api":
        # Native gRPC probes on grpc.health.v1. Readiness and startup ask for "" (SERVING only
        # while the database answers and is migrated: the pod leaves its Service at once when it
        # does not); liveness asks for govmesh.liveness (grpcserver.LIVENESS), SERVING while the
        # process answers at all, so a database away (the process reconnects by itself) never
        # restarts it, and a process that no longer answers is restarted within 30 s. The startup
        # probe covers the wait for records' catalogue (approvals) and for the broker,
        # GOVMESH_STARTUP_WAIT_SECONDS (120 s) and more.
        grpc = {"port": grpc_port(process.service)}
        alive = {**grpc, "service": LIVENESS}
        return {
            "startupProbe": {"grpc": grpc, "periodSeconds": 5, "failureThreshold": 36, "timeoutSeconds": 2},
            "readinessProbe": {"grpc": grpc, "periodSeconds": 5, "failureThreshold": 2, "timeoutSeconds": 2},
            "livenessProbe": {"grpc": alive, "periodSeconds": 10, "failureThreshold": 3, "timeoutSeconds": 5},
        }
    # Workers and ingest serve no gRPC (a worker must never load grpcio): /readyz and /livez on
    # their metrics port (govmesh.probes), answered from an OS thread of their own. Readiness and
    # startup: 200 once the process consumes its queues (ingest: its shards, or standing by) and
    # its database answers and is migrated, so a rollout waits for the new pods to consume.
    # Liveness: 503 only once the main loop (the worker's eventlet hub, ingest's consume loop) has
    # not turned for probes.STALLED_AFTER (60 s), never for a broker or database away, which the
    # process waits out by itself: a stuck process is restarted within 90 s.
    ready = {"path": READYZ, "port": "metrics"}
    alive = {"path": LIVEZ, "port": "metrics"}
    return {
        "startupProbe": {"httpGet": ready, "periodSeconds": 5, "failureThreshold": 36, "timeoutSeconds": 2},
        "readinessProbe": {"httpGet": ready, "periodSeconds": 10, "failureThreshold": 2, "timeoutSeconds": 2},
        "livenessProbe": {"httpGet": alive, "periodSeconds": 10, "failureThreshold": 3, "timeoutSeconds": 5},
    }


def workload(process: Process) -> Doc:
    vols, mounts = volumes(process.service)
    ports = [{"name": "metrics", "containerPort": process.metrics_port, "protocol": "TCP"}]
    if process.kind == "api":
        ports.insert(0, {"name": "grpc", "containerPort": grpc_port(process.service), "protocol": "TCP"})
    env = connection_env()
    if process.kind == "ingest":
        # Which share of the shards this process consumes first (services/crowd/ingest.py); the
        # count is the most the HPA runs, so a process's share stays its own as replicas change.
        env += [
            {
                "name": "GOVMESH_INSTANCE",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}},
            },
            {"name": "GOVMESH_INSTANCES", "value": str(INGEST_SHARDS)},
        ]
    container = {
        "name": CONTAINER,
        "image": IMAGE,
        "args": [process.kind, process.service],
        "ports": ports,
        "envFrom": [{"configMapRef": {"name": "govmesh-environment"}}],
        "env": env,
        "volumeMounts": mounts,
        "resources": process.size.resources(),
        "securityContext": SECURITY_CONTEXT,
        **probes(process),
    }
    pod = {
        "metadata": {"labels": process.labels},
        "spec": {
            "serviceAccountName": "govmesh",
            "automountServiceAccountToken": False,
            "securityContext": POD_SECURITY_CONTEXT,
            "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
            "initContainers": init_containers(process.service, mounts),
            "containers": [container],
            "volumes": vols,
            "topologySpreadConstraints": [
                {
                    "maxSkew": 1,
                    "topologyKey": "kubernetes.io/hostname",
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": process.selector},
                }
            ],
        },
    }
    spec: Doc = {"replicas": 2, "selector": {"matchLabels": process.selector}, "template": pod}
    if process.workload_kind == "Deployment":
        # A new pod must be ready before an old one goes: never fewer serving than asked.
        spec["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    else:
        spec["serviceName"] = f"{process.name}-metrics"
        spec["podManagementPolicy"] = "Parallel"  # no ordering between shards' consumers
    return {
        "apiVersion": "apps/v1",
        "kind": process.workload_kind,
        "metadata": {"name": process.name, "labels": {**PART_OF, **process.labels}},
        "spec": spec,
    }


def service(process: Process) -> Doc:
    """An api's Service (gRPC and metrics), or a worker's or ingest's headless one (metrics only,
    for the ServiceMonitors). `govmesh.io/job` names the Prometheus job as deploy/prometheus has
    it, `govmesh_service` the service label the alerts and dashboards group by."""
    ports = [{"name": "metrics", "port": process.metrics_port, "targetPort": "metrics", "protocol": "TCP"}]
    spec: Doc = {"selector": process.selector, "ports": ports}
    if process.kind == "api":
        ports.insert(
            0,
            {
                "name": "grpc",
                "port": grpc_port(process.service),
                "targetPort": "grpc",
                "protocol": "TCP",
                "appProtocol": "grpc",
            },
        )
        name = process.name
    else:
        spec["clusterIP"] = "None"
        name = f"{process.name}-metrics"
    labels = {
        **PART_OF,
        **process.selector,
        "govmesh.io/job": f"govmesh-{process.kind}",
        "govmesh_service": process.service,
    }
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": labels}, "spec": spec}


def migrate_job() -> Doc:
    """`govmesh migrate`: every service's schema to the head this image knows. Kustomize and
    kubectl apply have no hooks, so the ordering is the pods': each one's wait-for-migrations
    init container holds its process until its schema is at its code's head, and a Deployment's
    rolling update (maxUnavailable 0) keeps the old pods serving meanwhile. A Job's pod template
    cannot change: ttlSecondsAfterFinished removes it 10 minutes after it finished, and a release
    applied sooner deletes it first (docs/runbook.md's deploy step; the README)."""
    vols = [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}]
    labels = {"app.kubernetes.io/name": "govmesh", "app.kubernetes.io/component": "migrate", PROCESS_LABEL: "migrate"}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "govmesh-migrate", "labels": {**PART_OF, **labels}},
        "spec": {
            "backoffLimit": 6,  # the database may still be starting: retried with backoff
            "ttlSecondsAfterFinished": 600,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "OnFailure",
                    "serviceAccountName": "govmesh",
                    "automountServiceAccountToken": False,
                    "securityContext": POD_SECURITY_CONTEXT,
                    "containers": [
                        {
                            "name": CONTAINER,
                            "image": IMAGE,
                            "args": ["migrate"],
                            "envFrom": [{"configMapRef": {"name": "govmesh-environment"}}],
                            "env": [e for e in connection_env() if e["name"] == "DATABASE_URL"],
                            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108
                            "resources": SIZES["migrate"].resources(),
                            "securityContext": SECURITY_CONTEXT,
                        }
                    ],
                    "volumes": vols,
                },
            },
        },
    }


def workloads() -> list[Doc]:
    docs: list[Doc] = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "govmesh", "labels": dict(PART_OF)},
            # No process talks to the Kubernetes API.
            "automountServiceAccountToken": False,
        },
        migrate_job(),
    ]
    for process in processes():
        docs += [workload(process), service(process)]
    return docs


# -- who calls whom: the NetworkPolicies ---------------------------------------------------------


def callers_of(policy: Doc) -> dict[str, set[str]]:
    """For each service, the policy's callers with a right on one of its methods ("*": all)."""
    found: dict[str, set[str]] = {service: set() for service in config.SERVICES}
    for caller, entry in (policy.get("callers") or {}).items():
        for right in entry.get("rights") or []:
            if right == "*":
                targets = list(config.SERVICES)
            else:
                match = re.match(r"govmesh\.([a-z_]+)\.v[0-9]+\.", right)
                targets = [match.group(1)] if match else []
            for target in targets:
                if target in found and target != caller:
                    found[target].add(caller)
    return found


def network_policies(policy: Doc) -> list[Doc]:
    """Default deny for every govmesh process, then what each needs: its api's gRPC port from the
    callers the policy gives a right on it (a service of the mesh: its api pods, the only process
    kind that calls over gRPC, since a worker must never load grpcio and reaches other services
    over the broker; any other caller: pods in namespaces labelled govmesh.io/caller=<caller id>),
    metrics from Prometheus's namespace, and out: DNS, RabbitMQ, PostgreSQL and the apis it calls."""
    callers = callers_of(policy)
    docs: list[Doc] = [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "govmesh-default-deny", "labels": dict(PART_OF)},
            "spec": {
                "podSelector": {"matchExpressions": [{"key": PROCESS_LABEL, "operator": "Exists"}]},
                "policyTypes": ["Ingress", "Egress"],
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "govmesh-egress-infrastructure", "labels": dict(PART_OF)},
            "spec": {
                "podSelector": {"matchExpressions": [{"key": PROCESS_LABEL, "operator": "Exists"}]},
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                    },
                    {
                        "to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": RABBITMQ}}}],
                        "ports": [{"protocol": "TCP", "port": 5672}],
                    },
                    {
                        "to": [{"podSelector": {"matchLabels": {"cnpg.io/cluster": POSTGRES}}}],
                        "ports": [{"protocol": "TCP", "port": 5432}],
                    },
                ],
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "govmesh-metrics-from-prometheus", "labels": dict(PART_OF)},
            "spec": {
                "podSelector": {"matchExpressions": [{"key": PROCESS_LABEL, "operator": "Exists"}]},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [
                            {
                                "namespaceSelector": {
                                    "matchLabels": {"kubernetes.io/metadata.name": MONITORING_NAMESPACE}
                                }
                            }
                        ],
                        "ports": [{"protocol": "TCP", "port": "metrics"}],
                    }
                ],
            },
        },
    ]
    for target in config.SERVICES:
        mesh = sorted(c for c in callers[target] if c in config.SERVICES)
        outside = sorted(c for c in callers[target] if c not in config.SERVICES)
        peers: list[Doc] = [
            {"podSelector": {"matchLabels": {"app.kubernetes.io/name": caller, "app.kubernetes.io/component": "api"}}}
            for caller in mesh
        ]
        if outside:
            peers.append(
                {
                    "namespaceSelector": {
                        "matchExpressions": [{"key": CALLER_LABEL, "operator": "In", "values": outside}]
                    }
                }
            )
        spec: Doc = {
            "podSelector": {"matchLabels": Process(target, "api").selector},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": peers, "ports": [{"protocol": "TCP", "port": grpc_port(target)}]}] if peers else [],
        }
        docs.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": f"{target}-api-callers", "labels": dict(PART_OF)},
                "spec": spec,
            }
        )
        called = sorted(s for s in config.SERVICES if target in callers[s])
        if called:
            docs.append(
                {
                    "apiVersion": "networking.k8s.io/v1",
                    "kind": "NetworkPolicy",
                    "metadata": {"name": f"{target}-api-calls", "labels": dict(PART_OF)},
                    "spec": {
                        "podSelector": {"matchLabels": Process(target, "api").selector},
                        "policyTypes": ["Egress"],
                        "egress": [
                            {
                                "to": [{"podSelector": {"matchLabels": Process(s, "api").selector}}],
                                "ports": [{"protocol": "TCP", "port": grpc_port(s)}],
                            }
                            for s in called
                        ],
                    },
                }
            )
    return docs


def prod_policy(policy: Doc) -> Doc:
    """The shipped policy without its development-only caller (the all-rights demo portal)."""
    prod = copy.deepcopy(policy)
    prod["callers"] = {k: v for k, v in policy["callers"].items() if "*" not in (v.get("rights") or [])}
    return prod


# -- the RabbitMQ topology -----------------------------------------------------------------------


@dataclass
class TopologyNotes:
    """A channel (and its connection) that takes notes of what is declared instead of declaring it."""

    exchanges: dict[str, Doc] = field(default_factory=dict)
    queues: dict[str, Doc] = field(default_factory=dict)
    bindings: list[tuple[str, str, str, str]] = field(default_factory=list)  # source, dest, type, key

    @property
    def connection(self) -> TopologyNotes:
        return self

    def channel(self) -> TopologyNotes:
        return self

    def exchange_declare(
        self, exchange: str, type: str, durable: bool = False, auto_delete: bool = True, **_: Any
    ) -> None:
        self.exchanges[exchange] = {"type": type, "durable": durable, "autoDelete": auto_delete}

    def queue_declare(
        self,
        queue: str,
        durable: bool = False,
        auto_delete: bool = True,
        arguments: Doc | None = None,
        passive: bool = False,
        **_: Any,
    ) -> Any:
        if passive:
            # crowd's ingest asks whether shard queues beyond its count exist: none here.
            import amqp

            raise amqp.exceptions.NotFound("no such queue")
        self.queues[queue] = {"durable": durable, "autoDelete": auto_delete, "arguments": dict(arguments or {})}
        return None

    def queue_bind(self, queue: str, exchange: str, routing_key: str = "", **_: Any) -> None:
        self.bindings.append((exchange, queue, "queue", routing_key))

    def exchange_bind(self, destination: str, source: str, routing_key: str = "", **_: Any) -> None:
        self.bindings.append((source, destination, "exchange", routing_key))

    def close(self) -> None:
        pass


_HANDLER = re.compile(r"@(event_handler|queue_handler)\(([^)]*)\)[^\n]*\n\s+def (\w+)")


def consumed_queues() -> Iterator[tuple[str, str, str, str]]:
    """(service, queue, exchange, routing key) of every worker's event and queue handler, named as
    govmesh.worker names them: nameko's `evt-<source>-<event>--<service>.<method>`, and
    `<service>.<exchange>` for a queue handler."""
    for service in config.SERVICES:
        source = (ROOT / "services" / service / "worker.py").read_text(encoding="utf-8")
        constants = dict(re.findall(r'^([A-Z_]+) = "([^"]*)"', source, re.MULTILINE))
        for decorator, arguments, method in _HANDLER.findall(source):
            values = [constants.get(a.strip(), a.strip().strip("\"'")) for a in arguments.split(",")]
            if decorator == "event_handler":
                origin, event = values[:2]
                yield service, f"evt-{origin}-{event}--{service}.{method}", messaging.events_exchange(origin), event
            else:
                exchange, routing_key = [*values, "#"][:2]
                yield service, f"{service}.{exchange}", exchange, routing_key


def declared_topology() -> TopologyNotes:
    """What the processes declare at start, by running the runtime's own declaring functions."""
    from services.crowd import ingest

    notes = TopologyNotes()
    for service in config.SERVICES:
        messaging.declare_service_exchanges(notes, service)
    for service, queue, exchange, routing_key in consumed_queues():
        notes.exchange_declare(exchange, "topic", durable=True, auto_delete=False)
        messaging.declare_consumer_queue(notes, service, queue, [(exchange, routing_key)])
    ingest.declare_topology(notes, INGEST_SHARDS)
    return notes


def k8s_name(kind: str, name: str) -> str:
    slug = re.sub(r"[^a-z0-9.-]+", "-", name.lower()).strip("-.")
    return f"{kind}-{slug}"[:253]


def topology() -> list[Doc]:
    notes = declared_topology()
    ref = {"rabbitmqClusterReference": {"name": RABBITMQ}, "vhost": "/"}
    docs: list[Doc] = []
    for name, e in sorted(notes.exchanges.items()):
        docs.append(
            {
                "apiVersion": "rabbitmq.com/v1beta1",
                "kind": "Exchange",
                "metadata": {"name": k8s_name("exchange", name), "labels": dict(PART_OF)},
                "spec": {
                    "name": name,
                    "type": e["type"],
                    "durable": e["durable"],
                    "autoDelete": e["autoDelete"],
                    **ref,
                },
            }
        )
    for name, q in sorted(notes.queues.items()):
        arguments = {k: v for k, v in sorted(q["arguments"].items()) if k != "x-queue-type"}
        spec: Doc = {
            "name": name,
            "type": q["arguments"]["x-queue-type"],
            "durable": q["durable"],
            "autoDelete": q["autoDelete"],
        }
        if arguments:
            spec["arguments"] = arguments
        docs.append(
            {
                "apiVersion": "rabbitmq.com/v1beta1",
                "kind": "Queue",
                "metadata": {"name": k8s_name("queue", name), "labels": dict(PART_OF)},
                "spec": {**spec, **ref},
            }
        )
    for source, destination, destination_type, routing_key in sorted(set(notes.bindings)):
        docs.append(
            {
                "apiVersion": "rabbitmq.com/v1beta1",
                "kind": "Binding",
                "metadata": {
                    "name": k8s_name("binding", f"{source}.{destination}.{routing_key.replace('#', 'all')}"),
                    "labels": dict(PART_OF),
                },
                "spec": {
                    "source": source,
                    "destination": destination,
                    "destinationType": destination_type,
                    "routingKey": routing_key,
                    **ref,
                },
            }
        )
    docs += topology_policies(notes, ref)
    return docs


#: nameko's RPC queues: a service's requests (rpc-<service>) and a caller's replies
#: (rpc.reply-<service>-<uuid>); classic queues that nameko declares itself (tests/chaos/infra.py).
NAMEKO_RPC_QUEUES = r"^rpc[-.]"


def topology_policies(notes: TopologyNotes, ref: Doc) -> list[Doc]:
    docs = [
        {
            "apiVersion": "rabbitmq.com/v1beta1",
            "kind": "Policy",
            "metadata": {"name": "policy-nameko-rpc-mirrored", "labels": dict(PART_OF)},
            "spec": {
                # nameko 2 declares classic RPC queues; a reply queue on a node that died leaves
                # its caller unable to declare it again elsewhere unless it is mirrored. Classic
                # mirroring exists in RabbitMQ 3.x only (base/rabbitmq.yaml pins 3.13).
                "name": "nameko-rpc-mirrored",
                "pattern": NAMEKO_RPC_QUEUES,
                "applyTo": "queues",
                "priority": 1,
                "definition": {"ha-mode": "all", "ha-sync-mode": "automatic"},
                **ref,
            },
        }
    ]
    for service in config.SERVICES:
        queues = sorted(
            name
            for name, q in notes.queues.items()
            if q["arguments"].get("x-dead-letter-exchange") == messaging.dead_letter_exchange(service)
        )
        if not queues:
            continue
        pattern = "^(" + "|".join(re.escape(q) for q in queues) + ")$"
        docs.append(
            {
                "apiVersion": "rabbitmq.com/v1beta1",
                "kind": "Policy",
                "metadata": {"name": f"policy-{service}-dead-lettering", "labels": dict(PART_OF)},
                "spec": {
                    # The queues' own arguments name their dead-letter exchange, routing key and
                    # delivery limit (govmesh.messaging.declare_consumer_queue) and win over a
                    # policy; this adds at-least-once dead-lettering (a dead letter is kept until
                    # its dead-letter queue confirms it, not dropped if that queue's leader is
                    # away), which needs overflow reject-publish, and repeats the exchange and
                    # limit for a queue declared without arguments.
                    "name": f"{service}-dead-lettering",
                    "pattern": pattern,
                    "applyTo": "quorum_queues",
                    "priority": 2,
                    "definition": {
                        "dead-letter-exchange": messaging.dead_letter_exchange(service),
                        "delivery-limit": messaging.DELIVERY_LIMIT,
                        "dead-letter-strategy": "at-least-once",
                        "overflow": "reject-publish",
                    },
                    **ref,
                },
            }
        )
    return docs


# -- monitoring ----------------------------------------------------------------------------------


def prometheus_rule() -> Doc:
    alerts = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text(encoding="utf-8"))
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "govmesh", "labels": {**PART_OF, "prometheus": "govmesh"}},
        "spec": {"groups": alerts["groups"]},
    }


def scrape_jobs() -> list[str]:
    scrape = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    return [job["job_name"] for job in scrape["scrape_configs"]]


def service_monitors() -> list[Doc]:
    """One per job of deploy/prometheus/prometheus.yml, so `job` and `govmesh_service` are what the
    alerts and dashboards expect (jobLabel and targetLabels from the Services' labels)."""
    return [
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": {"name": job, "labels": {**PART_OF, "prometheus": "govmesh"}},
            "spec": {
                "jobLabel": "govmesh.io/job",
                "targetLabels": ["govmesh_service"],
                "selector": {"matchLabels": {"govmesh.io/job": job}},
                "endpoints": [{"port": "metrics", "interval": "15s", "path": "/metrics"}],
            },
        }
        for job in scrape_jobs()
    ]


# -- the prod overlay: autoscaling and disruption budgets ----------------------------------------

#: Replicas the HPAs keep between, from docs/sizing.md's province peak: approvals the first
#: bottleneck (3 workers, 2 apis), records api 2-3 (600 proofs/s at ~300 each), crowd ingest 2
#: at full speed with room for 4 (8 shards: more than 8 consume nothing).
MAX_REPLICAS = {
    "records-api": 6,
    "approvals-api": 6,
    "approvals-worker": 8,
    "records-worker": 8,
    "crowd-ingest": INGEST_SHARDS,
}


def queues_of(process: Process, notes: TopologyNotes) -> list[str]:
    """The queues a process consumes: ingest its shards, a worker its handlers' queues and, for a
    service serving worker RPC (a nameko @rpc), `rpc-<service>`."""
    if process.kind == "ingest":
        return sorted(q for q in notes.queues if q.startswith("crowd.readings.shard."))
    queues = sorted(q for s, q, _, _ in consumed_queues() if s == process.service)
    worker = (ROOT / "services" / process.service / "worker.py").read_text(encoding="utf-8")
    if re.search(r"^\s+@rpc\b", worker, re.MULTILINE):
        queues.append(f"rpc-{process.service}")
    return queues


def autoscaler(process: Process, notes: TopologyNotes) -> Doc:
    """An api on CPU; a worker or ingest on the messages waiting in its queues (RabbitMQ's
    rabbitmq_queue_messages_ready per queue, with prometheus.return_per_object_metrics on) and a
    worker also on its outbox backlog (govmesh_outbox_backlog, which every worker of a service
    reports alike: the adapter's rule takes the max, see the decision record), both as External
    metrics through prometheus-adapter. AverageValue divides by the replicas: 'this much waiting
    per process'. The HPA takes the largest count any metric asks for."""
    metrics: list[Doc]
    if process.kind == "api":
        metrics = [
            {
                "type": "Resource",
                "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
            }
        ]
    else:
        per_process = "5000" if process.kind == "ingest" else "100"
        metrics = (
            [
                {
                    "type": "External",
                    "external": {
                        "metric": {
                            "name": "rabbitmq_queue_messages_ready",
                            "selector": {
                                "matchExpressions": [
                                    {"key": "queue", "operator": "In", "values": queues_of(process, notes)}
                                ]
                            },
                        },
                        "target": {"type": "AverageValue", "averageValue": per_process},
                    },
                }
            ]
            if queues_of(process, notes)
            else []
        )
        if process.kind == "worker":
            metrics.append(
                {
                    "type": "External",
                    "external": {
                        "metric": {
                            "name": "govmesh_outbox_backlog",
                            "selector": {"matchLabels": {"service": process.service}},
                        },
                        "target": {"type": "AverageValue", "averageValue": "500"},
                    },
                }
            )
    api_version = "apps/v1"
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": process.name, "labels": dict(PART_OF)},
        "spec": {
            "scaleTargetRef": {"apiVersion": api_version, "kind": process.workload_kind, "name": process.name},
            "minReplicas": 2,
            "maxReplicas": MAX_REPLICAS.get(process.name, 4),
            "metrics": metrics,
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
        },
    }


def disruption_budget(process: Process) -> Doc:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": process.name, "labels": dict(PART_OF)},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": process.selector}},
    }


# -- the dev overlay's patches -------------------------------------------------------------------


def dev_patches() -> list[Doc]:
    """One replica of everything, small, on the one RabbitMQ node of the dev overlay."""
    patches = []
    for process in processes():
        patches.append(
            {
                "apiVersion": "apps/v1",
                "kind": process.workload_kind,
                "metadata": {"name": process.name},
                "spec": {
                    "replicas": 1,
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    "name": CONTAINER,
                                    # The credentials first, as in the base: a strategic merge
                                    # puts the patch's entries before the others, and $(VAR)
                                    # is expanded only from variables defined above it.
                                    "env": [e for e in connection_env(1) if e["name"] != "DATABASE_URL"],
                                    "resources": DEV_SIZE.resources(),
                                }
                            ]
                        }
                    },
                },
            }
        )
    return patches


# -- writing -------------------------------------------------------------------------------------

HEADER = f"# Generated by scripts/kubernetes.py from {{source}}: edit that, then run {REGENERATE}.\n"


def dump(docs: Iterable[Doc], source: str) -> str:
    body = "---\n".join(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=120) for doc in docs)
    return HEADER.format(source=source) + body


def outputs() -> dict[Path, str]:
    policy_text = (ROOT / "policy" / "dev.yaml").read_text(encoding="utf-8")
    policy = yaml.safe_load(policy_text)
    notes = declared_topology()
    files: dict[Path, str] = {
        BASE / "workloads.yaml": dump(workloads(), "govmesh/config.py and this script"),
        BASE / "environment.env": "".join(f"{k}={v}\n" for k, v in shared_environment().items()),
        BASE / "network-policies.yaml": dump(network_policies(policy), "policy/dev.yaml"),
        BASE / "rabbitmq-topology.yaml": dump(
            topology(), "govmesh/messaging.py, services/*/worker.py and services/crowd/ingest.py"
        ),
        BASE / "prometheus-rule.yaml": dump([prometheus_rule()], "deploy/prometheus/alerts.yml"),
        BASE / "service-monitors.yaml": dump(service_monitors(), "deploy/prometheus/prometheus.yml"),
        BASE / "policy.yaml": policy_text,
        BASE / "hospitals.yaml": (ROOT / "services" / "health" / "hospitals.yaml").read_text(encoding="utf-8"),
        PROD / "policy.yaml": HEADER.format(source="policy/dev.yaml, without its all-rights development caller")
        + yaml.safe_dump(prod_policy(policy), sort_keys=False, allow_unicode=True, width=120),
        PROD / "network-policies.yaml": dump(
            [d for d in network_policies(prod_policy(policy)) if d["metadata"]["name"].endswith("-api-callers")],
            "policy/dev.yaml, without its all-rights development caller",
        ),
        PROD / "autoscaling.yaml": dump(
            [autoscaler(p, notes) for p in processes()] + [disruption_budget(p) for p in processes()],
            "docs/sizing.md and the processes' queues",
        ),
        DEV / "patches.yaml": dump(dev_patches(), "this script"),
    }
    for path in sorted((ROOT / "services" / "approvals" / "case_types").glob("*.yaml")):
        files[BASE / "case-types" / path.name] = path.read_text(encoding="utf-8")
    for path in sorted((ROOT / "deploy" / "grafana").glob("*.json")):
        files[KUSTOMIZE / "base" / "grafana" / "generated" / path.name] = path.read_text(encoding="utf-8")
    return files


def stale() -> list[str]:
    """The generated files that differ from what would be written (or should not be there)."""
    wanted = outputs()
    problems = []
    for path, text in wanted.items():
        old = path.read_text(encoding="utf-8") if path.exists() else ""
        if old != text:
            diff = difflib.unified_diff(old.splitlines(), text.splitlines(), str(path), "generated", lineterm="", n=1)
            problems.append("\n".join(list(diff)[:20]))
    for directory in {BASE, DEV, PROD, BASE / "case-types", KUSTOMIZE / "base" / "grafana" / "generated"}:
        problems += [f"{p}: not generated any more" for p in directory.glob("*") if p.is_file() and p not in wanted]
    return problems


DEV_KEYS = KUSTOMIZE / "dev" / "keys"


def write_dev_keys(directory: Path = DEV_KEYS) -> list[Path]:
    """The dev overlay's throwaway keys (development only, never committed): one file each, the
    way a key directory keeps a single key (govmesh/keys.py), made once and kept."""
    tokens = keys.signing_key(directory, keys.RINGS["tokens"])
    keys.signing_key(directory, keys.RINGS["proofs"])
    keys.secret(directory, PSEUDONYM.ring)
    public = directory / f"{keys.RINGS['tokens']}.pub.pem"
    if not public.exists():
        public.write_bytes(keys.public_pem(tokens.public_key()))
    return sorted(directory.iterdir())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if a generated file is out of date")
    parser.add_argument(
        "--dev-keys", action="store_true", help=f"make the dev overlay's throwaway keys in {DEV_KEYS} if missing"
    )
    args = parser.parse_args(argv)
    if args.dev_keys:
        for path in write_dev_keys():
            print(f"    {path.relative_to(ROOT)}")
        return 0
    if args.check:
        problems = stale()
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print(f"deploy/kustomize is out of date: run {REGENERATE}", file=sys.stderr)
            return 1
        print("    deploy/kustomize's generated files match their sources")
        return 0
    for path, text in outputs().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for problem in stale():  # files no longer generated
        if problem.endswith("not generated any more"):
            Path(problem.split(":", 1)[0]).unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
