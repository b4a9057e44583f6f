"""The people and enterprises of the seed's province the tests talk about, with valid
identifiers (tests/unit/identity checks they stay valid), and helpers to make more."""

from __future__ import annotations

import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

XU_WEI = "330106198507154313"  # the Hangzhou ride-hailing driver (Xihu district)
LUO_FANG = "33018319720303242X"  # the Fuyang patient
ZHUJI_RESIDENT = "330681199001011237"  # a resident of Zhuji, where housing transfers take an hour
LEGACY_15 = "330106900307123"  # a legacy 15-digit number ...
LEGACY_15_AS_18 = "330106199003071236"  # ... and its 18-character form
ENTERPRISE = "91330106MA27XL0E9W"  # an enterprise registered in Hangzhou's Xihu district
RAW_IDS = [XU_WEI, LUO_FANG, ZHUJI_RESIDENT, LEGACY_15, LEGACY_15_AS_18, ENTERPRISE]


def resident_id(body17: str) -> str:
    """`body17` with its ISO 7064 MOD 11-2 check character."""
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    return body17 + "10X98765432"[sum(int(c) * w for c, w in zip(body17, weights, strict=True)) % 11]


def with_wrong_check(identifier: str) -> str:
    return identifier[:-1] + ("0" if identifier[-1] != "0" else "1")


def wait_serving(target: str, service: str, timeout: float = 30) -> None:
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise AssertionError(f"{target} did not become SERVING in {timeout}s")
