"""Key material on disk: created on first use in development, provided by operators elsewhere.

Two processes may start at once and both find no key; creation is atomic (write a temporary
file, then link it into place), so exactly one key wins and both processes use it."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


def load_or_create(path: Path, create: Callable[[], bytes]) -> bytes:
    if path.exists():
        return path.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.write(fd, create())
        os.close(fd)
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process won the race; use its key
    finally:
        os.unlink(tmp)
    return path.read_bytes()


def _new_ed25519_pem() -> bytes:
    return _private_pem(Ed25519PrivateKey.generate())


def signing_key(key_dir: Path, name: str) -> Ed25519PrivateKey:
    pem = load_or_create(key_dir / f"{name}.pem", _new_ed25519_pem)
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{key_dir / (name + '.pem')}: not an Ed25519 private key")
    return key


def secret(key_dir: Path, name: str) -> bytes:
    return load_or_create(key_dir / f"{name}.key", lambda: secrets.token_bytes(32))


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


# -- key rings: keys that rotate without a restart (docs/decisions/runtime-key-rotation.md) --------

#: What each ring signs, by the name its key files carry in the key directory.
RINGS = {"proofs": "records-proof-signing", "tokens": "token-signing"}

ACTIVE, RETIRED, REVOKED = "active", "retired", "revoked"
#: When a key kept the old way (one file, no ring) became active, as far as the ring knows.
SINCE_EVER = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_for(key: Ed25519PublicKey) -> str:
    """A stable name for a public key: the first 16 hex characters of its SHA-256."""
    return "ed25519-" + hashlib.sha256(public_bytes(key)).hexdigest()[:16]


class KeyRingError(ValueError):
    """A key ring that cannot be read or a change to it that cannot be made; says which and why."""


@dataclass(frozen=True)
class RingKey:
    """One key of a ring as its file declares it. ``active_until``: when it stops (or stopped)
    signing; ``accept_until``: for tokens, when what it signed stops being accepted."""

    key_id: str
    public: Ed25519PublicKey
    private: Ed25519PrivateKey | None
    status: str
    active_from: datetime.datetime
    active_until: datetime.datetime | None = None
    accept_until: datetime.datetime | None = None

    def status_at(self, now: datetime.datetime) -> str:
        if self.status == REVOKED:
            return REVOKED
        if self.status == RETIRED or (self.active_until is not None and now >= self.active_until):
            return RETIRED
        return ACTIVE

    def signs_at(self, now: datetime.datetime) -> bool:
        return self.status_at(now) == ACTIVE and self.active_from <= now and self.private is not None

    def as_json(self) -> dict[str, str | None]:
        def moment(value: datetime.datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        return {
            "key_id": self.key_id,
            "status": self.status,
            "active_from": moment(self.active_from),
            "active_until": moment(self.active_until),
            "accept_until": moment(self.accept_until),
        }


def _utc(value: object, where: str) -> datetime.datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.datetime.fromisoformat(str(value))
    except ValueError:
        raise KeyRingError(f"{where}: {value!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise KeyRingError(f"{where}: {value!r} has no time zone")
    return moment.astimezone(datetime.UTC)


class KeyRing:
    """The keys of one ring (proofs or tokens) in a key directory, re-read when its file changes.

    Layout: ``<name>.ring.json`` lists the keys with their lifecycle, ``<name>/<key_id>.pub.pem``
    holds each public half and ``<name>/<key_id>.pem`` the private half where this deployment signs.
    A directory without a ring file holds one key the old way (``<name>.pem``, made on first use in
    development, or ``<name>.pub.pem`` where a process only verifies): that key is the whole ring.
    Processes look at the file at most every ``recheck_seconds``, so a rotation reaches every
    process of a deployment within that time (plus, on Kubernetes, the Secret's propagation)."""

    def __init__(self, key_dir: Path, ring: str, create: bool = True, recheck_seconds: float = 2.0) -> None:
        if ring not in RINGS:
            raise KeyRingError(f"no key ring {ring!r}; rings: {', '.join(RINGS)}")
        self.key_dir = key_dir
        self.ring = ring
        self.name = RINGS[ring]
        self.create = create
        self.recheck_seconds = recheck_seconds
        #: Grows by one each time the ring is read anew: caches of what the keys decided compare it.
        self.version = 0
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._checked = -float("inf")
        self._keys: dict[str, RingKey] = {}
        self._refresh(force=True)

    @property
    def ring_file(self) -> Path:
        return self.key_dir / f"{self.name}.ring.json"

    @property
    def ring_dir(self) -> Path:
        return self.key_dir / self.name

    def keys(self) -> dict[str, RingKey]:
        self._refresh()
        return self._keys

    def get(self, key_id: str) -> RingKey | None:
        return self.keys().get(key_id)

    def signer(self, now: datetime.datetime | None = None) -> RingKey:
        """The key that signs at ``now``: of the active keys already in force whose private half
        is here, the newest."""
        moment = now or datetime.datetime.now(datetime.UTC)
        signing = [key for key in self.keys().values() if key.signs_at(moment)]
        if not signing:
            raise KeyRingError(
                f"key ring {self.ring!r} in {self.key_dir} has no key that signs at {moment.isoformat()}"
                " (rotate in a new one: govmesh keys rotate)"
            )
        return max(signing, key=lambda key: key.active_from)

    def _refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked < self.recheck_seconds:
            return
        with self._lock:
            self._checked = now
            try:
                stat = self.ring_file.stat()
                stamp: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
            except FileNotFoundError:
                stamp = None
            if stamp == self._stamp and self._keys:
                return
            self._keys = self._read() if stamp is not None else self._single_key()
            self._stamp = stamp
            self.version += 1

    def _single_key(self) -> dict[str, RingKey]:
        private: Ed25519PrivateKey | None = None
        private_file, public_file = self.key_dir / f"{self.name}.pem", self.key_dir / f"{self.name}.pub.pem"
        if private_file.exists() or (self.create and not public_file.exists()):
            private = signing_key(self.key_dir, self.name)
            public = private.public_key()
        elif public_file.exists():
            public = _load_public(public_file)
        else:
            raise KeyRingError(
                f"{self.key_dir} holds no key of ring {self.ring!r} ({self.ring_file.name} or {private_file.name})"
            )
        key_id = key_id_for(public)
        return {key_id: RingKey(key_id, public, private, ACTIVE, SINCE_EVER)}

    def _read(self) -> dict[str, RingKey]:
        where = str(self.ring_file)
        try:
            entries = json.loads(self.ring_file.read_text(encoding="utf-8"))["keys"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KeyRingError(f"{where}: not a key ring ({exc})") from None
        ring: dict[str, RingKey] = {}
        for entry in entries:
            key_id = str(entry.get("key_id", ""))
            status = entry.get("status")
            if status not in (ACTIVE, RETIRED, REVOKED):
                raise KeyRingError(f"{where}: key {key_id!r} has status {status!r}; one of active, retired, revoked")
            public_file = self.ring_dir / f"{key_id}.pub.pem"
            private_file = self.ring_dir / f"{key_id}.pem"
            private = _load_private(private_file) if private_file.exists() else None
            if private is not None:
                public = private.public_key()
            elif public_file.exists():
                public = _load_public(public_file)
            else:
                raise KeyRingError(f"{where}: key {key_id!r} has neither {public_file.name} nor {private_file.name}")
            if key_id_for(public) != key_id:
                raise KeyRingError(f"{where}: the key in {self.ring_dir}/{key_id}.* is not {key_id}")
            active_from = _utc(entry.get("active_from"), f"{where}: {key_id} active_from")
            if active_from is None:
                raise KeyRingError(f"{where}: key {key_id!r} has no active_from")
            ring[key_id] = RingKey(
                key_id,
                public,
                private,
                status,
                active_from,
                _utc(entry.get("active_until"), f"{where}: {key_id} active_until"),
                _utc(entry.get("accept_until"), f"{where}: {key_id} accept_until"),
            )
        return ring


def _load_private(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyRingError(f"{path}: not an Ed25519 private key")
    return key


def _load_public(path: Path) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise KeyRingError(f"{path}: not an Ed25519 public key")
    return key


# -- what the operator does to a ring: `govmesh keys` ----------------------------------------------


def _write_atomically(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.write(fd, data)
        os.close(fd)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _private_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _save(ring: KeyRing, keys: list[RingKey]) -> None:
    """Key files first, the ring last: a process that reads the new ring finds every file it names."""
    for key in keys:
        _write_atomically(ring.ring_dir / f"{key.key_id}.pub.pem", public_pem(key.public))
        private_file = ring.ring_dir / f"{key.key_id}.pem"
        if key.private is not None and not private_file.exists():
            _write_atomically(private_file, _private_pem(key.private), 0o600)
        elif key.private is None and private_file.exists():
            private_file.unlink()
    body = {"ring": ring.ring, "keys": [key.as_json() for key in sorted(keys, key=lambda k: k.active_from)]}
    _write_atomically(ring.ring_file, (json.dumps(body, indent=2) + "\n").encode())


def _opened(key_dir: Path, ring_name: str, moment: datetime.datetime) -> tuple[KeyRing, list[RingKey]]:
    """The ring as it stands; a key kept the old way (one file) joins a ring file of its own,
    active since the file was written (or ``moment``, if that is earlier)."""
    ring = KeyRing(key_dir, ring_name, create=True, recheck_seconds=0)
    keys = list(ring.keys().values())
    if not ring.ring_file.exists():
        old = [key_dir / f"{ring.name}.pem", key_dir / f"{ring.name}.pub.pem"]
        written = min(path.stat().st_mtime for path in old if path.exists())
        since = min(datetime.datetime.fromtimestamp(written, datetime.UTC), moment)
        keys = [RingKey(k.key_id, k.public, k.private, k.status, since) for k in keys]
        _save(ring, keys)
        for path in old:
            path.unlink(missing_ok=True)
    return ring, keys


def rotate(
    key_dir: Path, ring_name: str, after_seconds: float, grace_seconds: float, now: datetime.datetime | None = None
) -> RingKey:
    """A new key that signs from ``after_seconds`` on (time for every process to read it first, so
    whatever it signs verifies everywhere); the keys signing now stop then and retire. What they
    signed stays valid: proofs for as long as the proof says, tokens for ``grace_seconds`` more."""
    if after_seconds < 0 or grace_seconds < 0:
        raise KeyRingError("after and grace must not be negative")
    moment = now or datetime.datetime.now(datetime.UTC)
    ring, keys = _opened(key_dir, ring_name, moment)
    switch = moment + datetime.timedelta(seconds=after_seconds)
    private = Ed25519PrivateKey.generate()
    new = RingKey(key_id_for(private.public_key()), private.public_key(), private, ACTIVE, switch)
    kept = []
    for key in keys:
        if key.status_at(moment) == ACTIVE and key.active_until is None:
            accept = switch + datetime.timedelta(seconds=grace_seconds) if ring_name == "tokens" else None
            key = RingKey(key.key_id, key.public, key.private, key.status, key.active_from, switch, accept)
        kept.append(key)
    _save(ring, [*kept, new])
    return new


def retire(
    key_dir: Path, ring_name: str, key_id: str, grace_seconds: float, now: datetime.datetime | None = None
) -> RingKey:
    """The key stops signing now (if it has not already) and its private half is deleted. What it
    signed stays valid: proofs for as long as the proof says, tokens for ``grace_seconds`` more."""
    moment = now or datetime.datetime.now(datetime.UTC)
    ring, keys = _opened(key_dir, ring_name, moment)
    key = _named(ring, keys, key_id)
    if key.status == REVOKED:
        raise KeyRingError(f"key {key_id} is revoked already; a revoked key cannot be retired")
    if not any(k.key_id != key_id and k.status_at(moment) == ACTIVE and k.private is not None for k in keys):
        raise KeyRingError(
            f"key {key_id} is the only key of ring {ring_name!r} that can sign; rotate in its successor first"
        )
    until = key.active_until if key.active_until is not None and key.active_until <= moment else moment
    accept = None
    if ring_name == "tokens":
        accept = key.accept_until or until + datetime.timedelta(seconds=grace_seconds)
    retired = RingKey(key.key_id, key.public, None, RETIRED, key.active_from, until, accept)
    _save(ring, [retired if k.key_id == key_id else k for k in keys])
    return retired


def revoke(key_dir: Path, ring_name: str, key_id: str, now: datetime.datetime | None = None) -> RingKey:
    """Nothing the key signed is accepted from now on (it leaked); its private half is deleted."""
    moment = now or datetime.datetime.now(datetime.UTC)
    ring, keys = _opened(key_dir, ring_name, moment)
    key = _named(ring, keys, key_id)
    until = key.active_until if key.active_until is not None and key.active_until <= moment else moment
    revoked = RingKey(key.key_id, key.public, None, REVOKED, key.active_from, until, until)
    _save(ring, [revoked if k.key_id == key_id else k for k in keys])
    return revoked


def _named(ring: KeyRing, keys: list[RingKey], key_id: str) -> RingKey:
    for key in keys:
        if key.key_id == key_id:
            return key
    known = ", ".join(key.key_id for key in keys)
    raise KeyRingError(f"ring {ring.ring!r} in {ring.key_dir} has no key {key_id!r}; its keys: {known}")
