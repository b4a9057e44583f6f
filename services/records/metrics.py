"""Records' business figures, shared by the api and the worker (no gRPC here)."""

from __future__ import annotations

import datetime

from prometheus_client import Counter, Gauge, Histogram

from services.records.domain.access_log import Entry, TreeHead
from services.records.domain.feed import PublishSummary

PROOFS = Counter(
    "govmesh_records_proofs_total",
    "GetProof answers by proof type, caller and outcome (issued, refused).",
    ["proof_type", "caller", "outcome"],
)
PAPER_AVOIDED = Counter(
    "govmesh_records_paper_copies_avoided_total",
    "Each issued proof stands for one paper copy a citizen no longer carries from office to office.",
)
RECORDS_INGESTED = Counter(
    "govmesh_records_ingested_total", "Department records received, by channel and outcome.", ["channel", "outcome"]
)
ACCESS_LOG_SIZE = Gauge("govmesh_records_access_log_size", "Leaves in the access log's latest signed tree head.")
ACCESS_ENTRIES_SEALED = Counter(
    "govmesh_records_access_entries_sealed_total", "Access entries the sequencer sealed into the log."
)
ACCESS_SEAL_DELAY = Histogram(
    "govmesh_records_access_seal_delay_seconds",
    "From a read of personal data to its entry being in a signed tree head.",
    buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0),
)


def observe_seal(head: TreeHead, entries: list[Entry]) -> None:
    ACCESS_LOG_SIZE.set(head.tree_size)
    ACCESS_ENTRIES_SEALED.inc(len(entries))
    for entry in entries:
        ACCESS_SEAL_DELAY.observe(max(0.0, (head.timestamp - entry.accessed_at) / datetime.timedelta(seconds=1)))


def count_ingest(summary: PublishSummary, channel: str) -> None:
    for outcome, count in (
        ("stored", summary.stored),
        ("duplicate", summary.duplicates),
        ("rejected", summary.rejected),
    ):
        if count:
            RECORDS_INGESTED.labels(channel, outcome).inc(count)
