"""The service's evidence key: an Ed25519 key made on first use and kept in one file
(mode 0600), whose public half goes into every bundle and is served by the API so a
verifier can pin it."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

log = logging.getLogger(__name__)

ALGORITHM = "Ed25519"
_FINGERPRINT = re.compile(r"(?i)^(?:sha256:)?([0-9a-f]{64})$")


class KeyProblem(ValueError):
    """A key file or a pinned key that cannot be used; the message says why."""


def service_key(path: Path) -> Ed25519PrivateKey:
    """The key in `path`, made there (mode 0600) if the file does not exist yet."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return _create(path)
    except OSError as exc:
        raise KeyProblem(f"cannot read the evidence key {path}: {exc.strerror}") from None
    if path.stat().st_mode & 0o077:
        log.warning("the evidence key %s is readable by others; chmod 600 it", path)
    return _private(data, path)


def _create(path: Path) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Written whole under a temporary name, then linked into place: two processes making
    # the key at once both end up with whichever was linked first, never half a file.
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".evidence-key-")
    except OSError as exc:
        raise KeyProblem(f"cannot make the evidence key in {path.parent}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as out:  # mkstemp makes it 0600
            out.write(pem)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return _private(path.read_bytes(), path)
    finally:
        os.unlink(tmp)
    log.info("made a new evidence key in %s (fingerprint %s)", path, fingerprint(key.public_key()))
    return key


def _private(data: bytes, path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyProblem(f"{path} does not hold an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyProblem(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def published(key: Ed25519PublicKey) -> dict[str, str]:
    """The key as it is published for verifiers to pin (the API's and the command's answer)."""
    return {"algorithm": ALGORITHM, "fingerprint": fingerprint(key), "public_key": public_pem(key)}


def fingerprint(key: Ed25519PublicKey) -> str:
    """sha256: and the hex SHA-256 of the raw 32-byte public key."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def load_public(pem: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, UnsupportedAlgorithm):
        raise KeyProblem("not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyProblem(f"a {type(key).__name__}, not an Ed25519 public key")
    return key


def pinned_fingerprint(given: str) -> str:
    """The fingerprint a verifier pins, from what they give: a fingerprint, or a file
    holding the PEM public key or the API's answer (GET /api/v1/evidence/key)."""
    found = _FINGERPRINT.match(given.strip())
    if found:
        return "sha256:" + found[1].lower()
    path = Path(given)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyProblem(
            f"{given!r} is neither a key fingerprint (sha256:…) nor a readable key file"
            f" ({getattr(exc, 'strerror', None) or exc})"
        ) from None
    if text.lstrip().startswith("{"):
        try:
            text = str(json.loads(text)["public_key"])
        except (ValueError, KeyError, TypeError):
            raise KeyProblem(f"{path} is JSON without a public_key") from None
    try:
        return fingerprint(load_public(text))
    except KeyProblem as exc:
        raise KeyProblem(f"{path}: {exc}") from None
