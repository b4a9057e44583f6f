"""Crowd: zones with capacity, sensor readings, occupancy, the three-level response with
hysteresis, history and forecast.

This package's top module imports nothing: `govmesh` reads ENVIRONMENT from it for its help
in every process kind, before a worker's eventlet patches the standard library."""

ENVIRONMENT = """\
  CROWD_INGEST_SHARDS         shard queues of the readings stream, fixed per deployment [8]
                              (GOVMESH_INSTANCE of GOVMESH_INSTANCES ingest processes consumes
                              shard % GOVMESH_INSTANCES == GOVMESH_INSTANCE first, the rest as
                              standby)
"""
