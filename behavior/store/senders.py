"""Senders of signed payment notifications: who may POST /v1/notifications/payments.

The senders file, `<data home>/senders.json` (mode 0600, it holds secrets), is

    {"senders": [{"name": "alipay", "secret": "<64 hex>", "rsa_public_key": null,
                  "created_at": "...", "revoked_at": null}]}

A sender signs `<t>.<raw body>` (t: unix seconds) and sends
`Behavior-Signature: t=<t>,v1=<signature>`: hex HMAC-SHA256 with its secret, or, for a sender
registered with an RSA public key (PEM), base64 SHA256withRSA (PKCS#1 v1.5, Alipay's RSA2).
The secret of an HMAC sender is printed once by `behavior senders add` and read by the API
from this file (HMAC needs it in the clear, unlike API keys). A revoked sender stays listed
with its `revoked_at`, so its name is never given to another system by mistake.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from behavior.errors import BehaviorError
from behavior.store import atomic
from behavior.store.datahome import DataHome
from behavior.store.json_file import read_json

SIGNATURE_TOLERANCE_S = 300
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class SenderError(BehaviorError, ValueError):
    """The senders file cannot be read, or a sender request is invalid."""


class SignatureError(BehaviorError, ValueError):
    """A notification's signature does not authenticate it (the message says why)."""


@dataclass(frozen=True)
class Sender:
    name: str
    secret: bytes | None            # HMAC senders
    rsa_public_key: str | None      # PEM, RSA2 senders
    created_at: str
    revoked_at: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def senders_path(data_dir: Path) -> Path:
    return DataHome(data_dir).senders


def _parse(doc: object, where: str) -> list[Sender]:
    if not isinstance(doc, dict) or not isinstance(doc.get("senders"), list):
        raise SenderError(f'{where}: expected an object {{"senders": [...]}}')
    out, seen = [], set()
    for i, e in enumerate(doc["senders"]):
        at = f"{where}: senders[{i}]"
        if not isinstance(e, dict) or not isinstance(e.get("name"), str) or not _NAME.match(e["name"]):
            raise SenderError(f"{at}: name must be 1-64 letters, digits, '.', '_' or '-'")
        if e["name"] in seen:
            raise SenderError(f"{at}: name {e['name']!r} appears twice")
        secret, pem = e.get("secret"), e.get("rsa_public_key")
        if (secret is None) == (pem is None):
            raise SenderError(f"{at}: give either secret (HMAC) or rsa_public_key (RSA2)")
        if secret is not None and (not isinstance(secret, str) or not _HEX64.match(secret)):
            raise SenderError(f"{at}: secret must be 64 lowercase hex digits")
        if pem is not None and not isinstance(pem, str):
            raise SenderError(f"{at}: rsa_public_key must be a PEM text")
        seen.add(e["name"])
        out.append(Sender(e["name"], bytes.fromhex(secret) if secret else None, pem,
                          str(e.get("created_at", "")), e.get("revoked_at")))
    return out


def read_senders(data_dir: Path) -> list[Sender]:
    """Every sender in the data home's senders file (none if it does not exist)."""
    path = senders_path(data_dir)
    doc = read_json(path, SenderError, None)
    return [] if doc is None else _parse(doc, path.name)


class SenderBook:
    """The senders of a data home as the API sees them: re-read when the file changes (one
    stat per look), so a revocation holds on every worker at its next request."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._stamp: tuple[int, int, int] | None = None
        self._by_name: dict[str, Sender] = {}

    def get(self, name: str) -> Sender | None:
        try:
            st = senders_path(self.data_dir).stat()
            stamp: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp:
            try:
                self._by_name = {s.name: s for s in read_senders(self.data_dir)}
            except SenderError:
                pass  # a broken file keeps the senders read before; the writer refuses to write one
            self._stamp = stamp
        return self._by_name.get(name)


# ------------------------------------------------------------------ writing (the CLI)

def _doc(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return {"senders": []}
    except json.JSONDecodeError as exc:
        raise SenderError(f"{path.name}: not valid JSON ({exc.msg} at line {exc.lineno}); fix or remove it") from None
    _parse(doc, path.name)
    return doc


def load_public_key(pem: str, where: str):
    """The RSA public key of a PEM text; SenderError naming `where` if it is not one."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as exc:
        raise SenderError(f"{where}: not a PEM public key ({exc}); export it with "
                          "`openssl rsa -in private.pem -pubout`") from None
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < 2048:
        raise SenderError(f"{where}: RSA2 needs an RSA public key of at least 2048 bits")
    return key


@functools.lru_cache(maxsize=64)
def _public_key(pem: str, name: str):
    return load_public_key(pem, f"sender {name!r}")


def add_sender(data_dir: Path, name: str, rsa_public_key_pem: str | None = None) -> str | None:
    """Register a sender; returns its HMAC secret (hex), which is shown only this once, or
    None for an RSA2 sender (verified with the public key given)."""
    if not _NAME.match(name):
        raise SenderError(f"sender name {name!r}: use 1-64 letters, digits, '.', '_' or '-'")
    if rsa_public_key_pem is not None:
        load_public_key(rsa_public_key_pem, f"sender {name!r}")
    path = senders_path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = None if rsa_public_key_pem is not None else secrets.token_bytes(32).hex()
    with atomic.locked(path):
        doc = _doc(path)
        for s in doc["senders"]:
            if s["name"] == name:
                state = "revoked" if s.get("revoked_at") else "registered"
                raise SenderError(f"sender {name!r} is already {state}; pick another name")
        doc["senders"].append({"name": name, "secret": secret, "rsa_public_key": rsa_public_key_pem,
                               "created_at": _now(), "revoked_at": None})
        atomic.write_json(path, doc)
    return secret


def revoke_sender(data_dir: Path, name: str) -> None:
    """Mark a sender revoked: its notifications get 401 from then on."""
    path = senders_path(data_dir)
    with atomic.locked(path):
        doc = _doc(path)
        for s in doc["senders"]:
            if s["name"] == name:
                if s.get("revoked_at"):
                    raise SenderError(f"sender {name!r} was revoked already, at {s['revoked_at']}")
                s["revoked_at"] = _now()
                atomic.write_json(path, doc)
                return
    raise SenderError(f"no sender named {name!r}; `behavior senders list` shows them")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ------------------------------------------------------------------ signatures

def signed_text(t: int, body: bytes) -> bytes:
    return str(t).encode() + b"." + body


def sign_hmac(secret: bytes, t: int, body: bytes) -> str:
    return hmac.new(secret, signed_text(t, body), hashlib.sha256).hexdigest()


def sign_rsa(private_key_pem: bytes, t: int, body: bytes) -> str:
    """Base64 SHA256withRSA (PKCS#1 v1.5) of `<t>.<body>`: what an RSA2 sender sends as v1."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    key = serialization.load_pem_private_key(private_key_pem, password=None)
    return base64.b64encode(key.sign(signed_text(t, body), padding.PKCS1v15(), hashes.SHA256())).decode()


def signature_header(t: int, signature: str) -> str:
    return f"t={t},v1={signature}"


def parse_signature_header(value: str) -> tuple[int, list[str]]:
    """(t, [v1 signatures]) of a Behavior-Signature header; SignatureError if malformed."""
    t, sigs = None, []
    for part in value.split(","):
        k, sep, v = part.strip().partition("=")
        if not sep:
            continue
        if k == "t":
            try:
                t = int(v)
            except ValueError:
                raise SignatureError("Behavior-Signature: t must be unix seconds") from None
        elif k == "v1" and v:
            sigs.append(v)
    if t is None or not sigs:
        raise SignatureError("Behavior-Signature must be t=<unix seconds>,v1=<signature>")
    return t, sigs


def verify(sender: Sender, header: str, body: bytes, now: float) -> None:
    """Raise SignatureError unless one v1 of `header` signs `<t>.<body>` for `sender` and t is
    within SIGNATURE_TOLERANCE_S of `now` (unix seconds). HMACs are compared in constant time."""
    t, sigs = parse_signature_header(header)
    if abs(now - t) > SIGNATURE_TOLERANCE_S:
        raise SignatureError(f"the signature's timestamp t={t} is more than {SIGNATURE_TOLERANCE_S} s from the "
                             "server's clock; sign with the current time (and check the sender's clock)")
    if sender.secret is not None:
        expected = sign_hmac(sender.secret, t, body).encode()
        ok = False
        for s in sigs:   # no early exit
            ok |= hmac.compare_digest(expected, s.encode("ascii", "replace"))
        if not ok:
            raise SignatureError("the signature does not match the body (HMAC-SHA256 hex of '<t>.<raw body>' "
                                 "with the sender's secret)")
        return
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    key = _public_key(sender.rsa_public_key or "", sender.name)
    for s in sigs:
        try:
            key.verify(base64.b64decode(s, validate=True), signed_text(t, body), padding.PKCS1v15(), hashes.SHA256())
            return
        except (InvalidSignature, binascii.Error, ValueError):
            continue
    raise SignatureError("the signature does not match the body (base64 SHA256withRSA of '<t>.<raw body>' "
                         "with the sender's private key)")
