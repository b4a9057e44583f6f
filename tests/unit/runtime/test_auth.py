"""Policy loading and bearer tokens, without a server."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from govmesh import auth
from govmesh.config import ROOT


@pytest.fixture
def policy() -> auth.Policy:
    return auth.Policy.load(ROOT / "policy" / "dev.yaml")


@pytest.fixture
def issuer(policy: auth.Policy, tmp_path: Path) -> auth.TokenIssuer:
    return auth.TokenIssuer.from_key_dir(policy, tmp_path)


@pytest.fixture
def verifier(policy: auth.Policy, tmp_path: Path) -> auth.TokenVerifier:
    return auth.TokenVerifier.from_key_dir(policy, tmp_path)


def test_dev_policy_has_the_demo_portal_and_one_caller_per_department(policy: auth.Policy) -> None:
    assert policy.callers["demo-portal"].may_call("/govmesh.records.v1.RecordsService/GetProof")
    departments = [c for c in policy.callers if c != "demo-portal"]
    assert len(departments) >= 25
    assert policy.callers["statistics"].may_call("/govmesh.identity.v1.IdentityService/ValidateIdentifier")
    assert not policy.callers["statistics"].may_call("/govmesh.identity.v1.IdentityService/ResolveSubject")
    assert policy.callers["public_security"].may_call("/govmesh.identity.v1.IdentityService/RegisterSubject")
    assert not policy.callers["public_security"].may_call("/govmesh.crowd.v1.CrowdService/UpsertZone")


def test_whoever_may_register_a_subject_may_register_a_batch_and_no_one_else(policy: auth.Policy) -> None:
    one, batch = (f"/govmesh.identity.v1.IdentityService/{m}" for m in ("RegisterSubject", "RegisterSubjects"))
    may_register = {c.caller_id for c in policy.callers.values() if c.may_call(one)}
    assert {"records", "demo-portal"} <= may_register
    assert {c.caller_id for c in policy.callers.values() if c.may_call(batch)} == may_register


def test_token_round_trip_and_rights(issuer: auth.TokenIssuer, verifier: auth.TokenVerifier) -> None:
    token = issuer.issue("taxation")
    caller = verifier.authorize(f"Bearer {token}", "/govmesh.identity.v1.IdentityService/ResolveSubject")
    assert caller.caller_id == "taxation"
    with pytest.raises(auth.PermissionDenied, match=r"taxation.*RegisterSubject"):
        verifier.authorize(f"Bearer {token}", "/govmesh.identity.v1.IdentityService/RegisterSubject")


@pytest.mark.parametrize(
    ("header", "reason"),
    [(None, "missing"), ("", "missing"), ("Token abc", "Bearer"), ("Bearer ", "Bearer"), ("Bearer x.y.z", "invalid")],
)
def test_malformed_authorization_is_unauthenticated(
    verifier: auth.TokenVerifier, header: str | None, reason: str
) -> None:
    with pytest.raises(auth.Unauthenticated, match=reason):
        verifier.caller(header)


def test_expired_token_is_refused_even_after_it_was_accepted(
    issuer: auth.TokenIssuer, verifier: auth.TokenVerifier
) -> None:
    token = issuer.issue("demo-portal", ttl_seconds=1)
    assert verifier.caller(f"Bearer {token}").caller_id == "demo-portal"  # now cached
    time.sleep(1.1)
    with pytest.raises(auth.Unauthenticated, match="expired"):
        verifier.caller(f"Bearer {token}")


def test_token_signed_with_another_key_is_refused(policy: auth.Policy, tmp_path: Path) -> None:
    stranger = auth.TokenIssuer.from_key_dir(policy, tmp_path / "other")
    verifier = auth.TokenVerifier.from_key_dir(policy, tmp_path / "ours")
    with pytest.raises(auth.Unauthenticated, match="not among the token keys"):
        verifier.caller(f"Bearer {stranger.issue('demo-portal')}")


def test_issuing_for_an_unknown_caller_names_the_known_ones(issuer: auth.TokenIssuer) -> None:
    with pytest.raises(auth.PolicyError, match=r"'nobody' is not in the policy; known callers: .*demo-portal"):
        issuer.issue("nobody")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("callers: [", "not valid YAML"),
        ("issuer: x\n", "'callers' mapping"),
        ("issuer: ''\ncallers: {}\n", "'issuer'"),
        ("issuer: x\ncallers:\n  Bad_Id: {rights: []}\n", "caller 'Bad_Id'"),
        ("issuer: x\ncallers:\n  a-b: {rights: [everything]}\n", "right 'everything'"),
        ("issuer: x\ncallers:\n  a-b: {rights: '*'}\n", "'rights' must be a list"),
        ("issuer: x\ntoken_ttl_minutes: 0\ncallers: {}\n", "token_ttl_minutes"),
        ("issuer: x\ncallers:\n  a-b: {rights: [], hospitals: H330100001}\n", "'hospitals'"),
    ],
)
def test_bad_policy_files_name_the_file_and_the_entry(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(auth.PolicyError) as error:
        auth.Policy.load(path)
    assert str(path) in str(error.value) and message in str(error.value)


def test_concurrent_key_creation_yields_one_key(tmp_path: Path, policy: auth.Policy) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        issuers = list(pool.map(lambda _: auth.TokenIssuer.from_key_dir(policy, tmp_path), range(16)))
    token = issuers[0].issue("demo-portal")
    for other in issuers[1:]:
        assert auth.TokenVerifier(policy, other.ring).caller(f"Bearer {token}").caller_id == "demo-portal"


def test_a_service_given_only_the_public_key_verifies_but_cannot_mint(policy: auth.Policy, tmp_path: Path) -> None:
    from govmesh import keys

    issuer = auth.TokenIssuer.from_key_dir(policy, tmp_path / "issuer")
    service_dir = tmp_path / "service"
    service_dir.mkdir()
    (service_dir / "token-signing.pub.pem").write_bytes(keys.public_pem(issuer.ring.signer().public))
    verifier = auth.TokenVerifier.from_key_dir(policy, service_dir)
    assert verifier.caller(f"Bearer {issuer.issue('taxation')}").caller_id == "taxation"
    assert not (service_dir / "token-signing.pem").exists()  # no private key was made for it
    stranger = auth.TokenIssuer.from_key_dir(policy, tmp_path / "stranger")
    with pytest.raises(auth.Unauthenticated):
        verifier.caller(f"Bearer {stranger.issue('taxation')}")
