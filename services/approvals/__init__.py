"""Approvals: case types, the multi-department saga, working-day deadlines, decisions with
explanations, human review.

This package's top module imports nothing: `govmesh` reads ENVIRONMENT from it for its help
in every process kind, before a worker's eventlet patches the standard library."""

ENVIRONMENT = """\
  APPROVALS_CASE_TYPES_DIR    the case type files [services/approvals/case_types]
  APPROVALS_PROOF_TIMEOUT_SECONDS   how long the worker waits for records per proof [5]
  APPROVALS_RETRY_SECONDS     first retry delay of a proof; doubles per attempt, at most 5 min [2]
  APPROVALS_STALL_SECONDS     when the timer drives a case nobody is working on [30]
"""
