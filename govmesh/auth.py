"""Callers, rights and bearer tokens.

A token is a JWT signed with Ed25519 (EdDSA): it names the caller (`sub`), the issuer, the
audience "govmesh" and an expiry. Services verify with the public half of the signing key, so a
service that can check tokens cannot mint them. Rights come from one policy file (policy/dev.yaml
in development), loaded and validated at start with errors that name the file and the caller.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import jwt
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from govmesh import keys

AUDIENCE = "govmesh"
SIGNING_KEY_NAME = "token-signing"
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
    def __init__(self, policy: Policy, key: Ed25519PrivateKey) -> None:
        self.policy = policy
        self.key = key

    @classmethod
    def from_key_dir(cls, policy: Policy, key_dir: Path) -> TokenIssuer:
        return cls(policy, keys.signing_key(key_dir, SIGNING_KEY_NAME))

    def issue(self, caller_id: str, ttl_seconds: int | None = None, now: float | None = None) -> str:
        if caller_id not in self.policy.callers:
            known = ", ".join(sorted(self.policy.callers))
            raise PolicyError(f"caller {caller_id!r} is not in the policy; known callers: {known}")
        issued = int(time.time() if now is None else now)
        claims = {
            "iss": self.policy.issuer,
            "aud": AUDIENCE,
            "sub": caller_id,
            "iat": issued,
            "exp": issued + (self.policy.token_ttl_seconds if ttl_seconds is None else ttl_seconds),
            "jti": str(uuid.uuid4()),
        }
        return jwt.encode(claims, self.key, algorithm="EdDSA")


class TokenVerifier:
    # A caller sends the same token on every call until it expires; checking its signature once
    # and remembering the answer takes the Ed25519 verification off the hot path.
    CACHE_SIZE = 4096

    def __init__(self, policy: Policy, public_key: Ed25519PublicKey) -> None:
        self.policy = policy
        self.public_key = public_key
        self._verified: dict[str, tuple[Caller, int]] = {}

    @classmethod
    def from_key_dir(cls, policy: Policy, key_dir: Path) -> TokenVerifier:
        return cls(policy, keys.verification_key(key_dir, SIGNING_KEY_NAME))

    def caller(self, authorization: str | None) -> Caller:
        if not authorization:
            raise Unauthenticated("missing 'authorization: Bearer <token>' metadata")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("authorization metadata must be 'Bearer <token>'")
        known = self._verified.get(token)
        if known is not None and known[1] > time.time():
            return known[0]
        caller, expires = self._verify(token)
        if len(self._verified) >= self.CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = (caller, expires)
        return caller

    def _verify(self, token: str) -> tuple[Caller, int]:
        try:
            claims = jwt.decode(
                token,
                self.public_key,
                algorithms=["EdDSA"],
                audience=AUDIENCE,
                issuer=self.policy.issuer,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from None
        caller = self.policy.callers.get(claims["sub"])
        if caller is None:
            raise Unauthenticated(f"token names caller {claims['sub']!r}, which the policy does not know")
        return caller, int(claims["exp"])

    def authorize(self, authorization: str | None, full_method: str) -> Caller:
        caller = self.caller(authorization)
        if not caller.may_call(full_method):
            raise PermissionDenied(f"caller {caller.caller_id!r} has no right to {full_method.lstrip('/')}")
        return caller


class ServiceCredentials:
    """The bearer token a service presents when it calls another service, as the policy caller
    named after it. In development it mints its own with the development key; it renews the
    token when less than a quarter of its lifetime is left."""

    def __init__(self, issuer: TokenIssuer, caller_id: str) -> None:
        self.issuer = issuer
        self.caller_id = caller_id
        self._token = ""
        self._renew_at = 0.0
        issuer.issue(caller_id)  # fail at start, not at the first call, if the policy lacks it

    def authorization(self) -> str:
        """The `Bearer <token>` value, renewed when due."""
        now = time.time()
        if now >= self._renew_at:
            ttl = self.issuer.policy.token_ttl_seconds
            self._token = self.issuer.issue(self.caller_id, now=now)
            self._renew_at = now + ttl * 0.75
        return f"Bearer {self._token}"

    def metadata(self) -> list[tuple[str, str]]:
        return [("authorization", self.authorization())]
