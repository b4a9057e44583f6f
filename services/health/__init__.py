"""Health: medical credit: enrolment and limits, visits and charges, the insurance share,
deferred bills, settlement and defaults.

This package's top module imports nothing: `govmesh` reads ENVIRONMENT from it for its help
in every process kind, before a worker's eventlet patches the standard library."""

ENVIRONMENT = """\
  HEALTH_HOSPITALS_FILE       the deployment's hospitals, code: name [services/health/hospitals.yaml]
"""
