"""Records' sequencer sealing a backlog in a green process, as its worker runs it, with another
green thread counting its own turns meanwhile. Prints how many entries were sealed and how many
turns the other green thread had during the step: a step that never yields gives it none.

    python -m tests.support.green_seal DATABASE_URL KEY_DIR ENTRIES"""

import sys

from govmesh.green import patch_worker_process

patch_worker_process()

import datetime  # noqa: E402
from pathlib import Path  # noqa: E402

import eventlet  # noqa: E402

from govmesh import keys  # noqa: E402
from govmesh.auth import Policy  # noqa: E402
from govmesh.db import service_database  # noqa: E402
from services.records import signing, store  # noqa: E402
from services.records.app import RecordsApp  # noqa: E402
from tests.support.mesh import ROOT  # noqa: E402

url, key_dir, count = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
db = service_database("records", url)
db.migrate()
app = RecordsApp(db, signing.Signer(keys.KeyRing(key_dir, "proofs")), Policy.load(ROOT / "policy" / "dev.yaml"))
app.seal()  # the empty log's first head, and the keys published: the step measured seals entries only
moment = datetime.datetime.now(datetime.UTC)
entry = {
    "accessed_at": moment,
    "caller_id": "housing",
    "caller_name": "住房和城乡建设厅",
    "subject_id": "s-1",
    "subject_masked_identifier": "330106********1234",
    "proof_type": "property_title",
    "purpose_kind": "case_id",
    "purpose_note": "",
    "outcome": "granted",
}
with db.engine.begin() as connection:
    connection.execute(
        store.access_entries.insert(),
        [
            {**entry, "purpose_value": f"case-{n}", "proof_id": f"00000000-0000-0000-0000-{n:012d}"}
            for n in range(count)
        ],
    )
turns = 0


def other_work() -> None:
    global turns
    while True:
        eventlet.sleep(0)
        turns += 1


eventlet.spawn_n(other_work)
eventlet.sleep(0)
before = turns
step = app.seal(limit=count)
print(f"sealed {0 if step is None else len(step.entries)} turns {turns - before}", flush=True)
