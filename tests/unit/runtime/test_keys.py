"""Key rings: rotation, retirement and revocation of the proofs and tokens signing keys, as the
`govmesh keys` tool does them and as running processes (which re-read the ring) see them."""

from __future__ import annotations

import datetime
import json
import shutil
import time
from pathlib import Path

import jwt
import pytest

from govmesh import auth, keys
from govmesh.config import ROOT

NOW = datetime.datetime(2026, 12, 6, 8, 0, tzinfo=datetime.UTC)
MINUTE = datetime.timedelta(minutes=1)


@pytest.fixture
def policy() -> auth.Policy:
    return auth.Policy.load(ROOT / "policy" / "dev.yaml")


def ring(key_dir: Path, name: str = "tokens") -> keys.KeyRing:
    return keys.KeyRing(key_dir, name, recheck_seconds=0)


def test_a_rotation_hands_signing_over_at_the_time_it_names(tmp_path: Path) -> None:
    running = ring(tmp_path, "proofs")  # a process already running on the key made on first use
    first = running.signer(NOW)
    new = keys.rotate(tmp_path, "proofs", after_seconds=120, grace_seconds=0, now=NOW)

    assert new.key_id != first.key_id and new.active_from == NOW + 2 * MINUTE
    assert running.signer(NOW + MINUTE).key_id == first.key_id  # not yet: every process reads it first
    assert running.signer(NOW + 2 * MINUTE).key_id == new.key_id
    old = running.get(first.key_id)
    assert old is not None and old.active_until == NOW + 2 * MINUTE
    assert old.status_at(NOW + MINUTE) == keys.ACTIVE and old.status_at(NOW + 3 * MINUTE) == keys.RETIRED
    # The single file the key was kept in became the ring's: nothing signs with a stray copy.
    assert not (tmp_path / "records-proof-signing.pem").exists()
    written = json.loads((tmp_path / "records-proof-signing.ring.json").read_text())
    assert [k["key_id"] for k in written["keys"]] == [first.key_id, new.key_id]


def test_retire_deletes_the_private_half_and_refuses_to_leave_nothing_that_signs(tmp_path: Path) -> None:
    only = ring(tmp_path, "proofs").signer(NOW)
    with pytest.raises(keys.KeyRingError, match=f"{only.key_id} is the only key .* rotate in its successor first"):
        keys.retire(tmp_path, "proofs", only.key_id, grace_seconds=0, now=NOW)
    keys.rotate(tmp_path, "proofs", after_seconds=0, grace_seconds=0, now=NOW)
    retired = keys.retire(tmp_path, "proofs", only.key_id, grace_seconds=0, now=NOW + MINUTE)
    assert retired.status == keys.RETIRED and retired.active_until == NOW  # it had stopped at the switch
    assert not (tmp_path / "records-proof-signing" / f"{only.key_id}.pem").exists()
    assert (tmp_path / "records-proof-signing" / f"{only.key_id}.pub.pem").exists()  # still verifies
    with pytest.raises(keys.KeyRingError, match="has no key 'ed25519-nope'; its keys: "):
        keys.retire(tmp_path, "proofs", "ed25519-nope", grace_seconds=0)


def test_a_ring_file_that_cannot_be_read_names_itself(tmp_path: Path) -> None:
    (tmp_path / "token-signing.ring.json").write_text('{"keys": [{"key_id": "x", "status": "sleeping"}]}')
    with pytest.raises(keys.KeyRingError, match=r"token-signing.ring.json: key 'x' has status 'sleeping'"):
        ring(tmp_path)


def test_tokens_of_the_old_key_are_accepted_through_the_grace_period_then_refused(
    tmp_path: Path, policy: auth.Policy
) -> None:
    issuer = auth.TokenIssuer(policy, ring(tmp_path))
    verifier = auth.TokenVerifier(policy, ring(tmp_path))
    before = issuer.issue("demo-portal")
    assert verifier.caller(f"Bearer {before}").caller_id == "demo-portal"  # and now cached

    keys.rotate(tmp_path, "tokens", after_seconds=0, grace_seconds=1.5)
    after = issuer.issue("demo-portal")
    assert jwt.get_unverified_header(after)["kid"] != jwt.get_unverified_header(before)["kid"]
    assert verifier.caller(f"Bearer {after}").caller_id == "demo-portal"
    assert verifier.caller(f"Bearer {before}").caller_id == "demo-portal"  # within its grace
    time.sleep(1.6)
    with pytest.raises(auth.Unauthenticated, match="retired; its grace period ended at"):
        verifier.caller(f"Bearer {before}")
    assert verifier.caller(f"Bearer {after}").caller_id == "demo-portal"


def test_a_revoked_key_is_refused_at_once_even_for_a_token_already_accepted(
    tmp_path: Path, policy: auth.Policy
) -> None:
    issuer = auth.TokenIssuer(policy, ring(tmp_path))
    verifier = auth.TokenVerifier(policy, ring(tmp_path))
    leaked = issuer.issue("demo-portal")
    assert verifier.caller(f"Bearer {leaked}").caller_id == "demo-portal"
    keys.rotate(tmp_path, "tokens", after_seconds=0, grace_seconds=3600)
    keys.revoke(tmp_path, "tokens", jwt.get_unverified_header(leaked)["kid"])
    with pytest.raises(auth.Unauthenticated, match="which was revoked"):
        verifier.caller(f"Bearer {leaked}")
    assert verifier.caller(f"Bearer {issuer.issue('demo-portal')}").caller_id == "demo-portal"


def test_a_token_minted_before_keys_had_ids_still_verifies(tmp_path: Path, policy: auth.Policy) -> None:
    key = ring(tmp_path).signer()
    assert key.private is not None
    claims = {"iss": policy.issuer, "aud": auth.AUDIENCE, "sub": "taxation", "iat": int(time.time())}
    old_style = jwt.encode({**claims, "exp": claims["iat"] + 60}, key.private, algorithm="EdDSA")
    keys.rotate(tmp_path, "tokens", after_seconds=0, grace_seconds=60)
    assert auth.TokenVerifier(policy, ring(tmp_path)).caller(f"Bearer {old_style}").caller_id == "taxation"


def test_a_deployment_given_only_public_halves_verifies_but_cannot_sign(tmp_path: Path, policy: auth.Policy) -> None:
    issuer_dir, service_dir = tmp_path / "issuer", tmp_path / "service"
    issuer = auth.TokenIssuer(policy, ring(issuer_dir))
    keys.rotate(issuer_dir, "tokens", after_seconds=0, grace_seconds=60)
    # What an operator ships to a verifying service: the ring and the public halves, nothing else.
    service_dir.mkdir()
    shutil.copy(issuer_dir / "token-signing.ring.json", service_dir)

    # Not a glob: a key id is hex, so a private half may end in "b.pem" as every public half does.
    def private_halves(_: str, names: list[str]) -> list[str]:
        return [name for name in names if name.endswith(".pem") and not name.endswith(".pub.pem")]

    shutil.copytree(issuer_dir / "token-signing", service_dir / "token-signing", ignore=private_halves)
    shipped = [path.name for path in (service_dir / "token-signing").iterdir()]
    assert shipped and not private_halves("", shipped)
    verifier = auth.TokenVerifier(policy, ring(service_dir))
    assert verifier.caller(f"Bearer {issuer.issue('taxation')}").caller_id == "taxation"
    with pytest.raises(keys.KeyRingError, match="has no key that signs"):
        ring(service_dir).signer()
