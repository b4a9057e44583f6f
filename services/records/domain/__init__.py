"""Records' domain: the catalogue of departments and record types (catalogue.py), proof types and
their claims (proofs.py), a department feed's records as they are taken in (feed.py) and the
access log's RFC 9162 tree (access_log.py). Plain Python: no framework, no I/O, no clock."""
