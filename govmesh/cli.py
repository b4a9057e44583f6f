"""The `govmesh` command: every process of the mesh and the operator's tools.

  govmesh api SERVICE        run a service's gRPC api process
  govmesh worker SERVICE     run a service's nameko worker process (events, timers, outbox relay)
  govmesh ingest crowd       run crowd's readings consumer (batched, per-zone order)
  govmesh migrate [SERVICE]  apply database migrations (all services when none is named)
  govmesh dev-token CALLER   print a bearer token for a caller of the policy
  govmesh trace TRACE_ID     a trace as a tree, from the files of OTEL_TRACES_EXPORTER=file
  govmesh demo               the seed's stories told by the running mesh, with its figures
  govmesh SERVICE TOOL       a service's own tools (services/<service>/tools: seeders, simulators)

The worker path imports nothing but the standard library before eventlet patches it: grpcio
must never be loaded in a patched process (docs/architecture.md, Process model). Services are found
by name through config.SERVICES, never imported here: the command line reads each service's
ENVIRONMENT and `tools` package (both import only the standard library) and runs its api,
worker and ingest modules.
"""

from __future__ import annotations

import argparse
import faulthandler
import importlib
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, cast

from govmesh import config
from govmesh.errors import StartupError

log = logging.getLogger("govmesh")


def _settings(service: str) -> config.Settings:
    try:
        return config.load(service)
    except config.ConfigError as exc:
        raise SystemExit(f"govmesh: {exc}") from None


def _start_process(service: str, process: str) -> config.Settings:
    from govmesh import logs, tracing

    settings = _settings(service)
    # `kill -USR1 <pid>` prints every thread's stack to the log: how a process that will not stop
    # (or not answer) shows where it waits, without a debugger on a production node.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    # One of several processes of a kind says which ("api.2"), as honcho names it.
    named = process if settings.instances == 1 else f"{process}.{settings.instance}"
    logs.configure_logging(service, named, settings.log_level)
    # Readiness checks read the migration state every few seconds; only `migrate` narrates it.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # OTLP over gRPC would load grpcio, which cannot live in an eventlet worker: workers use HTTP.
    protocol = "http/protobuf" if process == "worker" else None
    file = settings.traces_file(process)
    try:
        tracing.configure_tracing(
            f"govmesh-{service}-{process}", settings.traces_exporter, otlp_protocol=protocol, file=file
        )
    except OSError as exc:
        raise SystemExit(f"govmesh: OTEL_TRACES_FILE_DIR: cannot write {str(file)!r}: {exc.strerror}") from None
    return settings


def cmd_api(args: argparse.Namespace) -> int:
    from govmesh import auth, grpcserver, metrics
    from govmesh.db import service_database

    settings = _start_process(args.service, "api")
    policy = auth.Policy.load(settings.policy_path)
    db = service_database(settings.service, settings.database_url)
    try:
        definition = importlib.import_module(f"services.{settings.service}.api").build(settings, db)
    except StartupError as exc:
        log.critical("cannot start: %s", exc)
        print(f"govmesh api {settings.service}: cannot start: {exc}", file=sys.stderr)
        return 2
    metrics.serve(settings.bind_host, settings.api_metrics_port)
    bind = f"{settings.bind_host}:{settings.grpc_port}"
    verifier = auth.TokenVerifier.from_key_dir(policy, settings.key_dir)
    grpcserver.serve(definition, db, verifier, bind, share_port=settings.shares_grpc_port)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from govmesh.green import patch_worker_process

    patch_worker_process()
    from govmesh import worker

    settings = _start_process(args.service, "worker")
    try:
        worker.run(settings)
    except StartupError as exc:
        log.critical("cannot start: %s", exc)
        print(f"govmesh worker {settings.service}: cannot start: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    settings = _start_process(args.service, "ingest")
    try:
        importlib.import_module(f"services.{settings.service}.ingest").run(settings)
    except StartupError as exc:
        log.critical("cannot start: %s", exc)
        print(f"govmesh ingest {settings.service}: cannot start: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from govmesh import logs
    from govmesh.db import service_database

    logs.configure_logging("govmesh", "migrate", "INFO")
    for service in args.services or [s for s in config.SERVICES if _has_migrations(s)]:
        settings = _settings(service)
        db = service_database(service, settings.database_url)
        db.migrate()
        db.dispose()
        log.info("%s: database migrated", service, extra={"database": db.url.render_as_string(hide_password=True)})
    return 0


def _has_migrations(service: str) -> bool:
    return (config.ROOT / "services" / service / "migrations" / "env.py").exists()


def _has_module(service: str, module: str) -> bool:
    return (config.ROOT / "services" / service / f"{module}.py").exists()


def cmd_dev_token(args: argparse.Namespace) -> int:
    from govmesh import auth

    settings = _settings("identity")
    try:
        policy = auth.Policy.load(settings.policy_path)
        issuer = auth.TokenIssuer.from_key_dir(policy, settings.key_dir)
        ttl = None if args.ttl_minutes is None else args.ttl_minutes * 60
        print(issuer.issue(args.caller, ttl_seconds=ttl))
    except auth.PolicyError as exc:
        print(f"govmesh dev-token: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    """`govmesh keys ACTION RING`: the lifecycle of the proofs and tokens signing keys
    (docs/runbook.md, "Rotate the signing keys")."""
    from govmesh import auth, clock, keys

    settings = _settings("identity")
    key_dir = args.key_dir or settings.key_dir
    try:
        if args.action == "list":
            now = clock.now()
            ring = keys.KeyRing(key_dir, args.ring, create=False, recheck_seconds=0)
            for key in sorted(ring.keys().values(), key=lambda k: k.active_from):
                fields = key.as_json()
                fields["status"] = key.status_at(now)
                fields["signs_now"] = "yes" if key.signs_at(now) else "no"
                fields["private_half_here"] = "yes" if key.private is not None else "no"
                print("  ".join(f"{name}={value or '-'}" for name, value in fields.items()))
            return 0
        if args.action == "revoke":
            key = keys.revoke(key_dir, args.ring, args.key_id)
            print(f"{args.ring}: {key.key_id} revoked: nothing it signed is accepted any more")
            if not any(k.signs_at(clock.now()) for k in keys.KeyRing(key_dir, args.ring, create=False).keys().values()):
                print(f"{args.ring}: no key signs now; rotate one in: govmesh keys rotate {args.ring}", file=sys.stderr)
            return 0
        grace = args.grace_seconds
        if grace is None:
            # A token signed just before its key stopped lives this long: it must stay accepted.
            grace = auth.Policy.load(settings.policy_path).token_ttl_seconds if args.ring == "tokens" else 0
        if args.action == "rotate":
            key = keys.rotate(key_dir, args.ring, args.after_seconds, grace)
            print(f"{args.ring}: {key.key_id} signs from {key.active_from.isoformat()}; the key signing now stops then")
        else:
            key = keys.retire(key_dir, args.ring, args.key_id, grace)
            accepted = f"; what it signed is accepted until {key.accept_until.isoformat()}" if key.accept_until else ""
            print(f"{args.ring}: {key.key_id} retired, signs nothing from {key.active_until}{accepted}")
    except keys.KeyRingError as exc:
        print(f"govmesh keys {args.action}: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_dlq(args: argparse.Namespace) -> int:
    """`govmesh dlq ACTION --service S`: a service's dead letters (docs/runbook.md, "Dead letters")."""
    import json
    import os

    from govmesh import dead_letters, logs

    logs.configure_logging("govmesh", "dlq", "INFO")
    settings = _settings(args.service)
    api = os.environ.get("GOVMESH_RABBITMQ_API")
    try:
        found = dead_letters.queues(settings.amqp_uri, args.service, api)
        if args.action == "list":
            for queue, messages in found.items():
                print(f"{messages:>8}  {queue}")
            return 0
        chosen = [args.queue] if args.queue else [queue for queue, messages in found.items() if messages]
        unknown = set(chosen) - set(found)
        if unknown:
            known = ", ".join(found) or "none"
            raise dead_letters.DeadLetterError(
                f"queue {sorted(unknown)[0]!r} is not a dead-letter queue of {args.service}; its queues: {known}"
            )
        if args.action in ("replay", "drop") and not (args.ids or args.all):
            raise dead_letters.DeadLetterError(f"name the messages to {args.action} (--id ID ...) or say --all")
        ids = set(args.ids) if getattr(args, "ids", None) else None
        for queue in chosen:
            if args.action == "show":
                letters = dead_letters.show(settings.amqp_uri, queue, args.limit)
            elif args.action == "replay":
                letters = dead_letters.replay(settings.amqp_uri, queue, ids)
            else:
                letters = dead_letters.drop(settings.amqp_uri, queue, args.reason or "", ids)
            for letter in letters:
                if args.json:
                    print(json.dumps(letter.as_json(), ensure_ascii=False))
                else:
                    print(
                        f"{queue}  {letter.message_id}  {letter.event_type or '-'}  {letter.code}"
                        f"{'  ' + letter.field if letter.field else ''}  x{letter.times}  {letter.reason}"
                    )
            if args.action != "show":
                done = "replayed" if args.action == "replay" else "dropped"
                print(f"{queue}: {len(letters)} {done}", file=sys.stderr)
    except dead_letters.DeadLetterError as exc:
        print(f"govmesh dlq {args.action}: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_events_tail(args: argparse.Namespace) -> int:
    """`govmesh events tail`: every event of the chosen services as it is published."""
    import json

    from govmesh import event_tail, messaging

    settings = _settings("identity")
    services = args.services or list(config.SERVICES)

    def ready() -> None:
        watched = ", ".join(messaging.events_exchange(s) for s in services)
        print(f"tailing {watched} ({', '.join(args.types or []) or 'every event'}); Ctrl-C stops", file=sys.stderr)
        sys.stderr.flush()

    def show(event: event_tail.SeenEvent) -> None:
        print(json.dumps(event.as_json(), ensure_ascii=False) if args.json else event.line(), flush=True)

    try:
        event_tail.tail(settings.amqp_uri, services, args.types or [], show, args.count, args.seconds, ready)
    except KeyboardInterrupt:
        pass
    except messaging.BrokerUnavailable as exc:
        print(f"govmesh events tail: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_trace(args: argparse.Namespace) -> int:
    """`govmesh trace TRACE_ID`: one trace from the span files, as a tree or as JSON."""
    import json

    from govmesh import trace_files

    problem = trace_files.trace_id_problem(args.trace_id)
    if problem is not None:
        print(f"govmesh trace: TRACE_ID: {args.trace_id!r} {problem}", file=sys.stderr)
        return 2
    try:
        directory = args.dir or config.traces_file_dir()
        found = trace_files.find_trace(directory, args.trace_id)
    except (config.ConfigError, trace_files.TraceFileError) as exc:
        print(f"govmesh trace: {exc}", file=sys.stderr)
        return 2
    if found is None:
        print(f"govmesh trace: no span of trace {args.trace_id.strip().lower()} in {directory}", file=sys.stderr)
        return 1
    print(json.dumps(found.as_json(), ensure_ascii=False, indent=2) if args.json else trace_files.render(found))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from govmesh import demo

    return demo.main(args)


def _service_environment(service: str) -> str:
    """The variables a service reads beyond the shared ones (its package's ENVIRONMENT)."""
    return str(getattr(importlib.import_module(f"services.{service}"), "ENVIRONMENT", ""))


def environment_doc() -> str:
    """Every variable any process reads: the runtime's, then each service's own."""
    sections = [config.ENVIRONMENT_DOC]
    sections += [doc for doc in map(_service_environment, config.SERVICES) if doc]
    return "".join(sections)


def _service_tools(service: str) -> ModuleType | None:
    """services.<service>.tools, where a service has tools (seeders, simulators)."""
    name = f"services.{service}.tools"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        return None


def _run_tool(service: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        result: int = args.run(_settings(service), args)
        return result

    return run


def _add_service_tools(command: Callable[[str, str], argparse.ArgumentParser], epilog: str) -> None:
    """`govmesh <service> TOOL` for each service with a tools package."""
    for service in config.SERVICES:
        tools = _service_tools(service)
        if tools is None:
            continue
        summary = (tools.__doc__ or f"Tools of the {service} service.").split("\n\n", 1)[0].replace("\n", " ")
        service_command = command(service, summary)
        tool_parsers = service_command.add_subparsers(dest="tool", required=True, metavar="TOOL")
        tools.register(tool_parsers)
        for tool in tool_parsers.choices.values():
            tool.epilog, tool.formatter_class = epilog, argparse.RawDescriptionHelpFormatter
        service_command.set_defaults(func=_run_tool(service))


def parser() -> argparse.ArgumentParser:
    epilog = environment_doc()
    top = argparse.ArgumentParser(
        prog="govmesh",
        description="govmesh: an event-driven microservices mesh for a provincial digital government.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_: str, parent: Any = commands) -> argparse.ArgumentParser:
        return cast(
            argparse.ArgumentParser,
            parent.add_parser(
                name, help=help_, description=help_, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
            ),
        )

    api = command("api", "Run a service's gRPC api process (health, reflection, auth, metrics, tracing).")
    api.add_argument("service", choices=config.SERVICES)
    api.set_defaults(func=cmd_api)

    worker = command("worker", "Run a service's worker process: event handlers, timers and the outbox relay.")
    worker.add_argument("service", choices=config.SERVICES)
    worker.set_defaults(func=cmd_worker)

    ingest = command(
        "ingest",
        "Run a service's high-rate ingestion process (services/<service>/ingest.py): crowd's sensor readings "
        "from the broker, applied in batches in per-zone order.",
    )
    ingest.add_argument("service", choices=[s for s in config.SERVICES if _has_module(s, "ingest")])
    ingest.set_defaults(func=cmd_ingest)

    migrate = command("migrate", "Apply database migrations (idempotent).")
    migrate.add_argument("services", nargs="*", metavar="SERVICE", help="one of " + ", ".join(config.SERVICES))
    migrate.set_defaults(func=cmd_migrate)

    token = command("dev-token", "Print a bearer token for CALLER, signed with the development key.")
    token.add_argument("caller", help="a caller id of the policy file, e.g. demo-portal")
    token.add_argument("--ttl-minutes", type=int, default=None, help="lifetime (default: the policy's)")
    token.set_defaults(func=cmd_dev_token)

    keys_command = command(
        "keys",
        "The signing keys' lifecycle: proofs (records signs proofs and tree heads) and tokens (bearer tokens). "
        "Processes pick a change up within seconds, without a restart.",
    )
    actions = keys_command.add_subparsers(dest="action", required=True, metavar="ACTION")
    rings = ["proofs", "tokens"]
    listed = command("list", "Every key of the ring, its status now and whether it signs now.", actions)
    rotate = command(
        "rotate",
        "Add a new key that signs from --after-seconds on; the key signing now stops then and retires.",
        actions,
    )
    retire = command(
        "retire", "Stop a key signing now and delete its private half; what it signed stays valid.", actions
    )
    revoke = command("revoke", "Revoke a key (it leaked): nothing it signed is accepted any more.", actions)
    for sub in (listed, rotate, retire, revoke):
        sub.add_argument("ring", choices=rings)
        sub.add_argument("--key-dir", type=Path, default=None, help="the key directory (default: GOVMESH_KEY_DIR)")
        sub.set_defaults(func=cmd_keys)
    for sub in (retire, revoke):
        sub.add_argument("key_id", help="the key's id, as `govmesh keys list` shows it")
    for sub in (rotate, retire):
        sub.add_argument(
            "--grace-seconds",
            type=float,
            default=None,
            help="tokens: how long what the old key signed stays accepted after it stops (default: the policy's "
            "token lifetime)",
        )
    rotate.add_argument(
        "--after-seconds",
        type=float,
        default=120.0,
        help="when the new key starts signing: time enough for every process to read it first (default 120)",
    )

    events = command("events", "The services' events, as an integrator receives them.")
    event_actions = events.add_subparsers(dest="action", required=True, metavar="ACTION")
    tail = command(
        "tail",
        "Print every event as it is published (type, subject, time, trace id, body; identifiers masked), "
        "from a queue of its own that goes when it stops.",
        event_actions,
    )
    tail.add_argument("--service", dest="services", action="append", choices=config.SERVICES, help="repeatable")
    tail.add_argument("--type", dest="types", action="append", help="an event type's routing key (repeatable)")
    tail.add_argument("--json", action="store_true", help="one JSON object an event")
    tail.add_argument("--count", type=int, default=None, help="stop after this many events")
    tail.add_argument("--seconds", type=float, default=None, help="stop after this long")
    tail.set_defaults(func=cmd_events_tail)

    trace_command = command(
        "trace",
        "Print one trace as a tree (each span's process, name, duration and offset from the trace's start) "
        "from the span files that processes write with OTEL_TRACES_EXPORTER=file.",
    )
    trace_command.add_argument("trace_id", metavar="TRACE_ID", help="32 hexadecimal digits, as log lines carry it")
    trace_command.add_argument(
        "--dir", type=Path, default=None, help="the directory of span files (default: OTEL_TRACES_FILE_DIR)"
    )
    trace_command.add_argument("--json", action="store_true", help="the tree as one JSON document")
    trace_command.set_defaults(func=cmd_trace)

    dlq = command(
        "dlq",
        "A service's dead letters: list its dead-letter queues, show why each message was refused, replay "
        "them where they came from once the cause is mended, or drop them with a reason that is logged.",
    )
    dlq_actions = dlq.add_subparsers(dest="action", required=True, metavar="ACTION")
    dlq_list = command("list", "Each dead-letter queue of the service and how many messages it holds.", dlq_actions)
    dlq_show = command("show", "The messages, left where they are: why refused, from where, how often.", dlq_actions)
    dlq_replay = command("replay", "Publish messages again where they came from, then take them off.", dlq_actions)
    dlq_drop = command("drop", "Delete messages; each is logged with the --reason given.", dlq_actions)
    for sub in (dlq_list, dlq_show, dlq_replay, dlq_drop):
        sub.add_argument("--service", required=True, choices=config.SERVICES)
        sub.set_defaults(func=cmd_dlq)
    for sub in (dlq_show, dlq_replay, dlq_drop):
        sub.add_argument("--queue", help="one dead-letter queue (default: every one of the service's that holds any)")
        sub.add_argument("--json", action="store_true", help="one JSON object a message")
    dlq_show.add_argument("--limit", type=int, default=100, help="messages shown a queue (default 100)")
    for sub in (dlq_replay, dlq_drop):
        sub.add_argument("--id", dest="ids", action="append", help="a message's id, as show prints it (repeatable)")
        sub.add_argument("--all", action="store_true", help="every message of the queue(s)")
    dlq_drop.add_argument("--reason", required=True, help="why the messages are dropped: logged with each")

    demo = command(
        "demo",
        "Tell the seed's stories (Zhejiang, 2019) with the running mesh's own figures beside the seed's, in "
        "Chinese and English: one ID number opens every service; a ride-hailing driver's permit and a "
        "second-hand housing transfer decided; a patient treated first who pays later, and the scheme's default "
        "rate; the West Lake music fountain through an evening's surge; the citizen's data tracker, every entry "
        "proven. Needs the mesh running (`make run`); a client of its public interfaces only, with fresh "
        "synthetic people each run. Each story is one trace and lists the events it caused.",
    )
    demo.add_argument(
        "--stories",
        default="",
        metavar="S,S",
        help="the stories to tell, comma-separated (default all): one_id, ride_hailing, housing, medical_credit, "
        "fountain, tracker (one_id always runs: the others need its person)",
    )
    demo.add_argument(
        "--patients", type=int, default=20, metavar="N", help="the simulated population of medical credit (default 20)"
    )
    demo.add_argument(
        "--fountain-days",
        type=int,
        default=0,
        metavar="D",
        help="also replay D days of the fountain's sensors with `govmesh crowd simulate` and count its barrier days "
        "(365: a year, as the seed counts; 30 days take about 11 s on 2 cores; default 0: only the evening)",
    )
    demo.add_argument(
        "--json", action="store_true", help="one JSON document: each story's lines, figures, trace and events"
    )
    demo.set_defaults(func=cmd_demo)

    _add_service_tools(command, epilog)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
