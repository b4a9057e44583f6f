"""Records' business figures, shared by the api and the worker (no gRPC here)."""

from __future__ import annotations

from prometheus_client import Counter

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


def count_ingest(summary: PublishSummary, channel: str) -> None:
    for outcome, count in (
        ("stored", summary.stored),
        ("duplicate", summary.duplicates),
        ("rejected", summary.rejected),
    ):
        if count:
            RECORDS_INGESTED.labels(channel, outcome).inc(count)
