"""Records' domain: the catalogue of departments and record types (catalogue.py), proof types and
their claims (proofs.py), a department feed's records as they are taken in (feed.py) and the
audit trail's hash chain (audit.py). Plain Python: no framework, no I/O, no clock."""
