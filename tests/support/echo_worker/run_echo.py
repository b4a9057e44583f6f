"""Runs the echo test worker as its own process, patched by eventlet before anything else."""

import warnings

warnings.filterwarnings("ignore", message=r"(?s).*Eventlet is deprecated")
import eventlet  # noqa: E402

eventlet.monkey_patch()

from nameko.cli.run import run  # noqa: E402

from govmesh import config, logs, tracing  # noqa: E402
from govmesh.worker import SETTINGS_KEY, assert_no_grpc  # noqa: E402
from tests.support.echo_worker.echo import EchoWorker, log  # noqa: E402

settings = config.load("identity")
logs.configure_logging("echotest", "worker", "DEBUG")
tracing.configure_tracing("echotest", "console", otlp_protocol="http/protobuf")
assert_no_grpc()
log.info("echo worker starting")
run([EchoWorker], {"AMQP_URI": settings.amqp_uri, SETTINGS_KEY: settings})
