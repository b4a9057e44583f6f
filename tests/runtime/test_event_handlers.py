"""Event consumption as every service's worker does it: a real nameko worker process (eventlet),
a real RabbitMQ, and a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest

from govmesh.db import Database, service_database
from govmesh.logs import mask_identifiers
from tests.support.mesh import ROOT, Process, ServiceEnv, consumers, dead_letters, wait_for

QUEUE = "evt-identity-subject_registered--echotest.on_subject_registered"


def delete_queues(amqp_uri: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    channel = connection.channel()
    for queue in (QUEUE, f"{QUEUE}.dead-letter"):
        channel.queue_delete(queue)
    connection.close()


class EchoProcess(Process):
    def start(self) -> Process:
        self.args = ["-m", "tests.support.echo_worker.run_echo"]
        import subprocess

        log = self.log_path.open("ab")
        self.popen = subprocess.Popen([sys.executable, *self.args], env=self.env, stdout=log, stderr=log)
        return self


@pytest.fixture
def echo(database_url: str, tmp_path: Path, amqp_uri: str) -> Iterator[tuple[EchoProcess, Database]]:
    delete_queues(amqp_uri)
    env = ServiceEnv("identity", database_url, tmp_path, amqp_uri)
    env.migrate()
    process = EchoProcess([], env.env, tmp_path / "echo.log")
    process.start()
    process.wait_for_log("starting services: echotest")
    wait_for(lambda: consumers(amqp_uri, QUEUE) > 0)  # bound and consuming: events published now arrive
    db = service_database("identity", env.database_url("identity"))
    yield process, db
    process.stop()
    db.dispose()
    delete_queues(amqp_uri)
    assert mask_identifiers(process.logs()) == process.logs()


def publish(
    amqp_uri: str, subject: str, event_id: str, traceparent: str | None = None, body: bytes | None = None
) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    channel = connection.channel()
    channel.confirm_delivery()
    headers = {
        "ce-id": event_id,
        "ce-type": "govmesh.identity.v1.SubjectRegistered",
        "ce-source": "govmesh/identity",
        "ce-subject": subject,
        "ce-time": "2026-11-27T00:00:00.000Z",
    }
    if traceparent:
        headers["traceparent"] = traceparent
    channel.basic_publish(
        "identity.events",
        "subject_registered",
        body or json.dumps({"subjectId": subject, "kind": "SUBJECT_KIND_RESIDENT"}),
        pika.BasicProperties(content_type="application/json", delivery_mode=2, headers=headers),
    )
    connection.close()


def effects(db: Database, subject: str) -> int:
    import sqlalchemy as sa

    from services.identity import store

    with db.read() as session:
        return int(
            session.execute(
                sa.select(sa.func.count()).select_from(store.outbox).where(store.outbox.c.subject == subject)
            ).scalar_one()
        )


def test_a_redelivered_event_has_no_second_effect(echo: tuple[EchoProcess, Database], amqp_uri: str) -> None:
    process, db = echo
    subject = f"sub_{uuid.uuid4().hex}"
    event_id = str(uuid.uuid4())
    publish(amqp_uri, subject, event_id)
    publish(amqp_uri, subject, event_id)  # the outbox relay may publish twice: same ce-id
    wait_for(lambda: process.logs().count(f"applying {subject}") == 2)  # both deliveries handled
    time.sleep(0.5)  # let the second transaction finish
    assert effects(db, subject) == 1
    other = f"sub_{uuid.uuid4().hex}"
    publish(amqp_uri, other, str(uuid.uuid4()))  # a new event id is a new effect
    wait_for(lambda: effects(db, other) == 1)


def test_a_poison_event_is_dead_lettered_and_does_not_block_the_queue(
    echo: tuple[EchoProcess, Database], amqp_uri: str
) -> None:
    process, db = echo
    poison = f"sub_poison{uuid.uuid4().hex}"
    publish(amqp_uri, poison, str(uuid.uuid4()))
    healthy = f"sub_{uuid.uuid4().hex}"
    publish(amqp_uri, healthy, str(uuid.uuid4()))
    wait_for(lambda: effects(db, healthy) == 1)

    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    channel = connection.channel()
    dead = None
    deadline = time.monotonic() + 15
    while dead is None and time.monotonic() < deadline:
        method, properties, body = channel.basic_get(f"{QUEUE}.dead-letter", auto_ack=True)
        if method is not None:
            dead = (properties, body)
        else:
            connection.sleep(0.1)
    connection.close()
    assert dead is not None, "the poison event never reached the dead-letter queue"
    assert json.loads(dead[1])["subjectId"] == poison
    assert process.logs().count("event handler on_subject_registered failed") == 4  # 1 + delivery limit 3
    assert effects(db, poison) == 0


def test_an_event_that_met_the_database_away_is_held_and_handled_once_it_is_back(
    echo: tuple[EchoProcess, Database], amqp_uri: str
) -> None:
    process, db = echo
    subject = f"sub_dbaway{uuid.uuid4().hex}"
    publish(amqp_uri, subject, str(uuid.uuid4()))
    # Four failures, one more than the queue's delivery limit: a requeue each time would have
    # dead-lettered it; held and tried again in place, it is applied once.
    wait_for(lambda: effects(db, subject) == 1, timeout=20)
    assert process.logs().count("database away: the message is held") == 4
    assert "Traceback" not in process.logs() and "OperationalError" in process.logs()  # said, in one line
    assert dead_letters(amqp_uri, QUEUE, lambda letter: subject.encode() in letter[2], count=0) == []


def test_a_refused_event_is_dead_lettered_at_once_saying_why(echo: tuple[EchoProcess, Database], amqp_uri: str) -> None:
    process, db = echo
    refused, event_id = f"sub_refused{uuid.uuid4().hex}", str(uuid.uuid4())
    publish(amqp_uri, refused, event_id)
    garbled = f"sub_{uuid.uuid4().hex}"
    publish(amqp_uri, garbled, str(uuid.uuid4()), body=f"<{garbled}>".encode())
    healthy = f"sub_{uuid.uuid4().hex}"
    publish(amqp_uri, healthy, str(uuid.uuid4()))
    wait_for(lambda: effects(db, healthy) == 1)  # neither stopped the handler

    ours = (refused, garbled)
    letters = dead_letters(amqp_uri, QUEUE, lambda letter: letter[1].headers.get("ce-subject") in ours, count=2)
    by_subject = {letter[1].headers["ce-subject"]: letter for letter in letters}
    assert len(letters) == 2 and set(by_subject) == set(ours)  # at once, and each exactly once
    headers = by_subject[refused][1].headers
    assert headers["ce-id"] == event_id and json.loads(by_subject[refused][2])["subjectId"] == refused
    assert (headers["x-govmesh-refusal-code"], headers["x-govmesh-refusal-field"]) == ("INVALID_ARGUMENT", "subject_id")
    # An expected refusal is one WARNING line each, never an ERROR with a traceback.
    logged = process.logs()
    assert logged.count("message dead-lettered") == 2
    assert '"level": "ERROR"' not in logged and "Traceback" not in logged
    assert headers["x-govmesh-refusal-message"] == "subject_id: is refused by this handler"
    assert headers["x-govmesh-original-exchange"] == "identity.events"
    assert headers["x-govmesh-original-routing-key"] == "subject_registered"
    assert process.logs().count("message dead-lettered: subject_id") == 1
    assert by_subject[garbled][2] == f"<{garbled}>".encode()
    assert by_subject[garbled][1].headers["x-govmesh-refusal-field"] == "body"
    assert effects(db, refused) == effects(db, garbled) == 0


def test_the_handler_continues_the_publishers_trace(echo: tuple[EchoProcess, Database], amqp_uri: str) -> None:
    process, db = echo
    trace_id = uuid.uuid4().hex
    subject = f"sub_{uuid.uuid4().hex}"
    publish(amqp_uri, subject, str(uuid.uuid4()), traceparent=f"00-{trace_id}-{'ab' * 8}-01")
    wait_for(lambda: effects(db, subject) == 1)
    wait_for(lambda: '"kind": "SpanKind.CONSUMER"' in process.logs())
    logs = process.logs()
    applying = next(json.loads(line) for line in logs.splitlines() if f"applying {subject}" in line)
    assert applying["trace_id"] == trace_id  # the handler's log line is in the publisher's trace
    assert f'"trace_id": "0x{trace_id}"' in logs  # and so is its exported CONSUMER span


def test_the_sequencer_lets_a_workers_other_green_threads_run_while_it_seals(database_url: str, tmp_path: Path) -> None:
    """Sealing 5,000 entries is a step of CPU (a hash and a tree update each) on the worker's event
    loop: without a yield, no other handler of the process ran until it ended."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.green_seal", database_url, str(tmp_path), "5000"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    sealed, turns = re.fullmatch(r"sealed (\d+) turns (\d+)\n", done.stdout).groups()  # type: ignore[union-attr]
    assert int(sealed) == 5000
    assert int(turns) >= 5000 // 250  # at least once every 250 entries
