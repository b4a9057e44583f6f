"""Records: the public data platform: department feeds indexed by subject, signed proofs on
demand, the access audit trail and the citizen's data tracker."""
