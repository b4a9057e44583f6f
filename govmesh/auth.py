"""Callers, rights and bearer tokens.

A token is a JWT signed with Ed25519 (EdDSA): it names the caller (`sub`), the issuer, the
audience "govmesh" and an expiry. Services verify with the public half of the signing key, so a
service that can check tokens cannot mint them. Rights come from one policy file (policy/dev.yaml
in development), loaded and validated at start with errors that name the file and the caller.
"""

from __future__ import annotations

import datetime
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import yaml

from govmesh import keys

AUDIENCE = "govmesh"
_RIGHT = re.compile(r"^(\*|[a-z][a-z0-9_.]*\.[A-Z][A-Za-z0-9]*/(\*|[A-Z][A-Za-z0-9]*))$")


class PolicyError(ValueError):
    """The policy file is unusable; the message names the file and the entry."""


class Unauthenticated(Exception):
    """No token, or one that is not valid: gRPC UNAUTHENTICATED."""


class PermissionDenied(Exception):
    """A known caller without the right for this method: gRPC PERMISSION_DENIED."""


@dataclass(frozen=True)
class Caller:
    caller_id: str
    name: str
    rights: frozenset[str]
    # Department codes whose records this caller may publish ("*": any).
    publishes: frozenset[str] = frozenset()
    # Proof type -> purposes it may be read for: "case" (any case id), "legal_basis:<name>", or
    # "*" (any purpose). The proof type "*" stands for every proof type.
    proofs: tuple[tuple[str, frozenset[str]], ...] = ()
    # Hospital codes this caller acts for in medical credit ("*": any): the visits it opens,
    # charges and closes, the bills it reads.
    hospitals: frozenset[str] = frozenset()

    def acts_for_hospital(self, hospital_id: str) -> bool:
        return "*" in self.hospitals or hospital_id in self.hospitals

    def may_publish(self, department_code: str) -> bool:
        return "*" in self.publishes or department_code in self.publishes

    def may_read_proof(self, proof_type: str, purpose_kind: str, purpose_value: str) -> bool:
        """`purpose_kind` is "case_id" or "legal_basis"."""
        wanted = "case" if purpose_kind == "case_id" else f"legal_basis:{purpose_value}"
        for granted_type, purposes in self.proofs:
            if granted_type in ("*", proof_type) and ("*" in purposes or wanted in purposes):
                return True
        return False

    def proof_types_named(self) -> set[str]:
        return {proof_type for proof_type, _ in self.proofs if proof_type != "*"}

    def check_may_call(self, full_method: str) -> None:
        """PermissionDenied, naming the caller and the method, unless the caller may call it."""
        if not self.may_call(full_method):
            raise PermissionDenied(f"caller {self.caller_id!r} has no right to {full_method.lstrip('/')}")

    def may_call(self, full_method: str) -> bool:
        """`full_method` as gRPC gives it: "/govmesh.identity.v1.IdentityService/ResolveSubject"."""
        method = full_method.lstrip("/")
        service = method.split("/", 1)[0]
        return "*" in self.rights or method in self.rights or f"{service}/*" in self.rights


@dataclass(frozen=True)
class Policy:
    issuer: str
    token_ttl_seconds: int
    callers: dict[str, Caller]

    @classmethod
    def load(cls, path: Path) -> Policy:
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise PolicyError(f"{path}: cannot read the policy file: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise PolicyError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(document, dict) or not isinstance(document.get("callers"), dict):
            raise PolicyError(f"{path}: needs a mapping with a 'callers' mapping")
        issuer = document.get("issuer")
        if not isinstance(issuer, str) or not issuer:
            raise PolicyError(f"{path}: 'issuer' must be a non-empty string")
        ttl = document.get("token_ttl_minutes", 60)
        if not isinstance(ttl, int) or not 1 <= ttl <= 24 * 60:
            raise PolicyError(f"{path}: 'token_ttl_minutes' must be a whole number from 1 to 1440")
        callers: dict[str, Caller] = {}
        for caller_id, entry in document["callers"].items():
            where = f"{path}: caller {caller_id!r}"
            if not isinstance(caller_id, str) or not re.fullmatch(r"[a-z][a-z0-9_-]{1,62}", caller_id):
                raise PolicyError(f"{where}: ids are lower-case letters, digits, '_' and '-'")
            if not isinstance(entry, dict):
                raise PolicyError(f"{where}: must be a mapping with 'name' and 'rights'")
            rights = entry.get("rights")
            if not isinstance(rights, list) or not all(isinstance(r, str) for r in rights):
                raise PolicyError(f"{where}: 'rights' must be a list of strings")
            for right in rights:
                if not _RIGHT.match(right):
                    raise PolicyError(
                        f"{where}: right {right!r} is not '*', 'package.Service/*' or 'package.Service/Method'"
                    )
            callers[caller_id] = Caller(
                caller_id,
                str(entry.get("name", caller_id)),
                frozenset(rights),
                publishes=frozenset(_strings(entry.get("publishes", []), f"{where}: 'publishes'")),
                proofs=_proof_rights(entry.get("proofs", {}), where),
                hospitals=frozenset(_strings(entry.get("hospitals", []), f"{where}: 'hospitals'")),
            )
        return cls(issuer=issuer, token_ttl_seconds=ttl * 60, callers=callers)


def _strings(value: object, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise PolicyError(f"{where} must be a list of non-empty strings")
    return value


def _proof_rights(value: object, where: str) -> tuple[tuple[str, frozenset[str]], ...]:
    if not isinstance(value, dict):
        raise PolicyError(f"{where}: 'proofs' must map proof types to lists of purposes")
    rights = []
    for proof_type, purposes in sorted(value.items()):
        for purpose in _strings(purposes, f"{where}: proofs.{proof_type}"):
            if purpose not in ("*", "case") and not re.fullmatch(r"legal_basis:[a-z][a-z0-9_]*", purpose):
                raise PolicyError(
                    f"{where}: proofs.{proof_type}: purpose {purpose!r} is not '*', 'case' or 'legal_basis:<name>'"
                )
        rights.append((str(proof_type), frozenset(purposes)))
    return tuple(rights)


class TokenIssuer:
    """Mints tokens with the tokens ring's signing key of the moment, named in the JWT's ``kid``."""

    def __init__(self, policy: Policy, ring: keys.KeyRing) -> None:
        self.policy = policy
        self.ring = ring

    @classmethod
    def from_key_dir(cls, policy: Policy, key_dir: Path) -> TokenIssuer:
        return cls(policy, keys.KeyRing(key_dir, "tokens"))

    def issue(self, caller_id: str, ttl_seconds: int | None = None, now: float | None = None) -> str:
        if caller_id not in self.policy.callers:
            known = ", ".join(sorted(self.policy.callers))
            raise PolicyError(f"caller {caller_id!r} is not in the policy; known callers: {known}")
        moment = time.time() if now is None else now
        issued = int(moment)
        key = self.ring.signer(datetime.datetime.fromtimestamp(moment, datetime.UTC))
        assert key.private is not None  # a key signs only where its private half is
        claims = {
            "iss": self.policy.issuer,
            "aud": AUDIENCE,
            "sub": caller_id,
            "iat": issued,
            "exp": issued + (self.policy.token_ttl_seconds if ttl_seconds is None else ttl_seconds),
            "jti": str(uuid.uuid4()),
        }
        return jwt.encode(claims, key.private, algorithm="EdDSA", headers={"kid": key.key_id})


class TokenVerifier:
    # A caller sends the same token on every call until it expires; checking its signature once
    # and remembering the answer takes the Ed25519 verification off the hot path.
    CACHE_SIZE = 4096
    #: How far a token's iat may lie after its key stopped signing (clocks of issuers drift).
    CLOCK_SKEW_SECONDS = 60

    def __init__(self, policy: Policy, ring: keys.KeyRing) -> None:
        self.policy = policy
        self.ring = ring
        self._verified: dict[str, tuple[Caller, float]] = {}
        self._ring_version = ring.version

    @classmethod
    def from_key_dir(cls, policy: Policy, key_dir: Path) -> TokenVerifier:
        return cls(policy, keys.KeyRing(key_dir, "tokens"))

    def caller(self, authorization: str | None) -> Caller:
        if not authorization:
            raise Unauthenticated("missing 'authorization: Bearer <token>' metadata")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("authorization metadata must be 'Bearer <token>'")
        self.ring.keys()  # re-read the ring if due: a key revoked must not stay trusted in the cache
        if self.ring.version != self._ring_version:
            self._verified.clear()
            self._ring_version = self.ring.version
        known = self._verified.get(token)
        if known is not None and known[1] > time.time():
            return known[0]
        caller, expires = self._verify(token)
        if len(self._verified) >= self.CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = (caller, expires)
        return caller

    def _verify(self, token: str) -> tuple[Caller, float]:
        """The caller a token names and until when it is accepted."""
        try:
            key_id = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from None
        ring = self.ring.keys()
        if key_id is not None and key_id not in ring:
            raise Unauthenticated(f"token signed with key {key_id!r}, which is not among the token keys")
        # A token minted before keys had names (no kid) is tried against every key.
        candidates = [ring[key_id]] if key_id is not None else list(ring.values())
        claims, key = self._decode(token, candidates)
        now = datetime.datetime.now(datetime.UTC)
        if key.status_at(now) == keys.REVOKED:
            raise Unauthenticated(f"token signed with key {key.key_id}, which was revoked")
        accepted_until = float(claims["exp"])
        if key.active_until is not None:
            # A key that stops (or stopped) signing: what it signed is accepted until its grace ends,
            # and the cache must not remember the token past that either.
            stopped = key.active_until.timestamp()
            grace_end = key.accept_until.timestamp() if key.accept_until else stopped + self.policy.token_ttl_seconds
            if claims["iat"] > stopped + self.CLOCK_SKEW_SECONDS:
                raise Unauthenticated(f"token issued after its key {key.key_id} stopped signing")
            if now.timestamp() >= grace_end:
                raise Unauthenticated(
                    f"token signed with key {key.key_id}, retired; its grace period ended at "
                    f"{datetime.datetime.fromtimestamp(grace_end, datetime.UTC).isoformat()}"
                )
            accepted_until = min(accepted_until, grace_end)
        caller = self.policy.callers.get(claims["sub"])
        if caller is None:
            raise Unauthenticated(f"token names caller {claims['sub']!r}, which the policy does not know")
        return caller, accepted_until

    def _decode(self, token: str, candidates: list[keys.RingKey]) -> tuple[dict[str, Any], keys.RingKey]:
        for key in candidates:
            try:
                claims = jwt.decode(
                    token,
                    key.public,
                    algorithms=["EdDSA"],
                    audience=AUDIENCE,
                    issuer=self.policy.issuer,
                    options={"require": ["exp", "iat", "sub", "iss", "aud"]},
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.ExpiredSignatureError:
                raise Unauthenticated("token expired") from None
            except jwt.InvalidTokenError as exc:
                raise Unauthenticated(f"invalid token: {exc}") from None
            return claims, key
        raise Unauthenticated("invalid token: Signature verification failed")

    def authorize(self, authorization: str | None, full_method: str) -> Caller:
        caller = self.caller(authorization)
        caller.check_may_call(full_method)
        return caller


class ServiceCredentials:
    """The bearer token a service presents when it calls another service, as the policy caller
    named after it. In development it mints its own with the development key. It renews the token
    when less than a quarter of its lifetime is left, and as soon as another key signs (after a
    rotation), so that no token of a retired key outlives the retirement's grace period."""

    def __init__(self, issuer: TokenIssuer, caller_id: str) -> None:
        self.issuer = issuer
        self.caller_id = caller_id
        self._token = ""
        self._key_id = ""
        self._renew_at = 0.0
        issuer.issue(caller_id)  # fail at start, not at the first call, if the policy lacks it

    def authorization(self) -> str:
        """The `Bearer <token>` value, renewed when due."""
        now = time.time()
        signing = self.issuer.ring.signer(datetime.datetime.fromtimestamp(now, datetime.UTC)).key_id
        if now >= self._renew_at or signing != self._key_id:
            ttl = self.issuer.policy.token_ttl_seconds
            self._token = self.issuer.issue(self.caller_id, now=now)
            self._key_id = signing
            self._renew_at = now + ttl * 0.75
        return f"Bearer {self._token}"

    def metadata(self) -> list[tuple[str, str]]:
        return [("authorization", self.authorization())]
