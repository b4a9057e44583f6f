"""The `govmesh` command: every process of the mesh and the operator's tools.

  govmesh api SERVICE        run a service's gRPC api process
  govmesh worker SERVICE     run a service's nameko worker process (events, timers, outbox relay)
  govmesh ingest crowd       run crowd's readings consumer (batched, per-zone order)
  govmesh migrate [SERVICE]  apply database migrations (all services when none is named)
  govmesh dev-token CALLER   print a bearer token for a caller of the policy

The worker path imports nothing but the standard library before eventlet patches it: grpcio
must never be loaded in a patched process (ARCHITECTURE.md, Process model).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

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
    logs.configure_logging(service, process, settings.log_level)
    # Readiness checks read the migration state every few seconds; only `migrate` narrates it.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # OTLP over gRPC would load grpcio, which cannot live in an eventlet worker: workers use HTTP.
    protocol = "http/protobuf" if process == "worker" else None
    tracing.configure_tracing(f"govmesh-{service}-{process}", settings.traces_exporter, otlp_protocol=protocol)
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
    grpcserver.serve(definition, db, auth.TokenVerifier.from_key_dir(policy, settings.key_dir), bind)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    import warnings

    # Known and accepted (ARCHITECTURE.md): nameko needs eventlet, kept behind govmesh.worker.
    warnings.filterwarnings("ignore", message=r"(?s).*Eventlet is deprecated")
    import eventlet

    eventlet.monkey_patch()
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


def cmd_records_seed(args: argparse.Namespace) -> int:
    from services.records import seed

    return seed.main(_settings("records"), args)


def cmd_health_simulate(args: argparse.Namespace) -> int:
    from services.health import simulate

    return simulate.main(_settings("health"), args)


def cmd_crowd_simulate(args: argparse.Namespace) -> int:
    from services.crowd import simulate

    return simulate.main(_settings("crowd"), args)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="govmesh",
        description="govmesh: an event-driven microservices mesh for a provincial digital government.",
        epilog=config.ENVIRONMENT_DOC,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name,
            help=help_,
            description=help_,
            epilog=config.ENVIRONMENT_DOC,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    api = command("api", "Run a service's gRPC api process (health, reflection, auth, metrics, tracing).")
    api.add_argument("service", choices=config.SERVICES)
    api.set_defaults(func=cmd_api)

    worker = command("worker", "Run a service's worker process: event handlers, timers and the outbox relay.")
    worker.add_argument("service", choices=config.SERVICES)
    worker.set_defaults(func=cmd_worker)

    ingest = command(
        "ingest",
        "Run a service's high-rate ingestion process: crowd's sensor readings from the broker, applied in "
        "batches in per-zone order.",
    )
    ingest.add_argument("service", choices=["crowd"])
    ingest.set_defaults(func=cmd_ingest)

    migrate = command("migrate", "Apply database migrations (idempotent).")
    migrate.add_argument("services", nargs="*", metavar="SERVICE", help="one of " + ", ".join(config.SERVICES))
    migrate.set_defaults(func=cmd_migrate)

    token = command("dev-token", "Print a bearer token for CALLER, signed with the development key.")
    token.add_argument("caller", help="a caller id of the policy file, e.g. demo-portal")
    token.add_argument("--ttl-minutes", type=int, default=None, help="lifetime (default: the policy's)")
    token.set_defaults(func=cmd_dev_token)
    records = command("records", "Tools of the records service (the public data platform).")
    records_tools = records.add_subparsers(dest="tool", required=True, metavar="TOOL")
    seed = records_tools.add_parser(
        "seed",
        help="Load a deterministic synthetic population through the real department feeds (needs `make run`).",
        description="Generate residents and enterprises with valid identifiers and the records of every "
        "department at realistic rates, and publish them department by department over PublishRecords, "
        "as each department's own caller. Idempotent: a second run stores nothing new.",
        epilog=config.ENVIRONMENT_DOC,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    seed.add_argument("--subjects", type=int, default=1000, help="how many residents and enterprises (default 1000)")
    seed.add_argument("--seed", type=int, default=2019, help="the population's seed: same seed, same people")
    seed.add_argument("--quiet", action="store_true", help="no progress bar")
    seed.set_defaults(func=cmd_records_seed)
    health = command("health", "Tools of the health service (medical credit: treat first, pay later).")
    health_tools = health.add_subparsers(dest="tool", required=True, metavar="TOOL")
    simulate = health_tools.add_parser(
        "simulate",
        help="Run a population of patients through the real health service for D days (needs `make run` "
        "with GOVMESH_CLOCK_OFFSET_FILE set).",
        description="Publish city credit scores and insurance enrolments for N synthetic residents to records "
        "(as demo-portal), enrol them in medical credit, and run D simulated days of outpatient visits and "
        "admissions, charges, bills and payments (almost all on time, a few late, a very few never: defaults, "
        "some repaid later) through health's gRPC api; then let the clock run until every bill is paid or "
        "defaulted, and print the scheme's figures (health's GetStats) in the seed's terms.\n\n"
        "Time: the simulator moves the services' clock forward one day at a time by writing the offset file "
        "named by GOVMESH_CLOCK_OFFSET_FILE. The mesh must have been started with the same variable set, e.g.\n"
        "  GOVMESH_CLOCK_OFFSET_FILE=$PWD/var/clock-offset make run\n"
        "  GOVMESH_CLOCK_OFFSET_FILE=$PWD/var/clock-offset govmesh health simulate --patients 200 --days 30\n"
        "Without it the command refuses to run. The clock only moves forward: never point it at production.",
        epilog=config.ENVIRONMENT_DOC,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    simulate.add_argument("--patients", type=int, required=True, metavar="N", help="how many residents")
    simulate.add_argument("--days", type=int, required=True, metavar="D", help="how many days of visits")
    simulate.add_argument("--seed", type=int, default=2019, help="the population's seed: same seed, same people")
    simulate.add_argument(
        "--default-share",
        type=float,
        default=0.004,
        metavar="FRACTION",
        help="share of bills never paid in time, i.e. defaults (default 0.004; half are repaid later)",
    )
    simulate.add_argument("--quiet", action="store_true", help="no progress bar")
    simulate.set_defaults(func=cmd_health_simulate)
    crowd = command("crowd", "Tools of the crowd service (the city brain's crowd levels at West Lake).")
    crowd_tools = crowd.add_subparsers(dest="tool", required=True, metavar="TOOL")
    crowd_simulate = crowd_tools.add_parser(
        "simulate",
        help="Replay D days of the Hubin music fountain's sensors through the real crowd service (needs `make run`).",
        description="Create a zone of its own (sim_<zone>_<YYYYMMDDHHMMSS>, configured like --zone if the crowd "
        "service has it, else as the West Lake music fountain), publish D days of modelled sensor readings (seven "
        "gate counters, two cameras and a phone-signal estimate every 5 minutes, with silences, re-sends and "
        "late readings) to the broker exchange crowd.readings as the sensors' gateway, wait until the crowd "
        "service has applied them, and print its history of the window (barrier days, time at each level, the "
        "peak) beside the model's truth, a fixed calendar policy and the seed's figures (365 -> 36 barrier "
        "days).\n\n"
        "Time: the window is the D days ending yesterday (Asia/Shanghai), or D days from --start; the service "
        "goes by the readings' own observation times, so no clock offset is needed and a past year replays as "
        "fast as the mesh ingests it.",
        epilog=config.ENVIRONMENT_DOC,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    crowd_simulate.add_argument("--zone", default="hubin", help="the zone whose configuration to copy (default hubin)")
    crowd_simulate.add_argument(
        "--days", type=int, default=365, metavar="D", help="how many days (default 365, at most 400)"
    )
    crowd_simulate.add_argument(
        "--start", default=None, metavar="YYYY-MM-DD", help="the first day (default: D days before today)"
    )
    crowd_simulate.add_argument("--seed", type=int, default=2019, help="the model's seed: same seed, same crowds")
    crowd_simulate.add_argument("--quiet", action="store_true", help="no progress bars")
    crowd_simulate.set_defaults(func=cmd_crowd_simulate)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
