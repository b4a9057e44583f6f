"""Health's pure rules and models: the credit policy (credit), the insurance share (insurance),
the life of a bill (billing), the double-entry ledger (ledger), and the account, visit, charge,
bill and payment the use cases load and save (model). No framework, no I/O, no contract."""
