"""Approvals' domain: case types (casetypes), the rules' condition language (rules), what a
submission must satisfy (submission) and the saga that decides a case (saga). Plain Python: the
case is the contract's document (govmesh.approvals.v1.Case), as the service stores and shows it."""
