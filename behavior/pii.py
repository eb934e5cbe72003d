"""Personal data that must never reach the lake: card numbers, e-mail addresses, phone numbers.

A card number is any run of 13 to 19 digits (spaces or dashes allowed between them) that
passes the Luhn check. Such a value is rejected wherever it stands and masked (all but the
last four digits) before it is written anywhere, the quarantine included.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np

from behavior.ids import control_sql, without_controls_sql
from behavior.sql_dialect import DUCKDB, Dialect

# A digit run of 13-19 digits, optionally separated by single spaces or dashes, not part of a
# longer digit run. Used both in SQL (as a cheap prefilter) and here.
CARD_CANDIDATE_PATTERN = r"(^|[^0-9])[0-9]([ -]?[0-9]){12,18}([^0-9]|$)"
_RUN = re.compile(r"(?<![0-9])[0-9](?:[ -]?[0-9]){12,18}(?![0-9])")
_EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
# A phone number: optional +, then 7-15 digits with the usual separators. Plain digit strings
# of up to 9 digits are ordinary ids (customer numbers), so without a +, 00 prefix or
# separators a value must have 10 or more digits to count as a phone number.
PHONE_PATTERN = r"^(\+|00)[0-9][0-9 ().\-]{6,20}$|^\(?[0-9]{2,5}\)?[ .\-][0-9 .\-]{5,16}[0-9]$|^[0-9]{10,15}$"
EMAIL_PATTERN = _EMAIL


def luhn_valid(digits: np.ndarray) -> np.ndarray:
    """Luhn check of equal-length digit strings, vectorised.

    `digits` is an array of str of one common length; returns a bool array.
    """
    if len(digits) == 0:
        return np.zeros(0, dtype=bool)
    raw = np.frombuffer("".join(digits).encode("ascii"), dtype=np.uint8).reshape(len(digits), -1)
    d = (raw - ord("0")).astype(np.int64)
    # From the right: every second digit doubled, minus 9 when over 9.
    d = d[:, ::-1].copy()
    doubled = d[:, 1::2] * 2
    d[:, 1::2] = np.where(doubled > 9, doubled - 9, doubled)
    return d.sum(axis=1) % 10 == 0


def card_numbers_in(text: str) -> list[str]:
    """The card numbers (as they are written, separators kept) found in `text`."""
    found = []
    for m in _RUN.finditer(text):
        digits = re.sub(r"[ -]", "", m.group(0))
        if 13 <= len(digits) <= 19 and luhn_valid(np.array([digits]))[0]:
            found.append(m.group(0))
    return found


def mask_card_numbers(text: str) -> str:
    """`text` with every card number replaced by asterisks but its last four digits."""

    def _mask(m: re.Match[str]) -> str:
        digits = re.sub(r"[ -]", "", m.group(0))
        if 13 <= len(digits) <= 19 and luhn_valid(np.array([digits]))[0]:
            return "*" * (len(digits) - 4) + digits[-4:]
        return m.group(0)

    return _RUN.sub(_mask, text)


def has_card_number(values: list[str | None]) -> np.ndarray:
    """For each value, whether it contains a card number. Vectorised per digit-run length."""
    out = np.zeros(len(values), dtype=bool)
    runs: list[tuple[int, str]] = []
    for i, v in enumerate(values):
        if v is None:
            continue
        for m in _RUN.finditer(v):
            runs.append((i, re.sub(r"[ -]", "", m.group(0))))
    by_len: dict[int, list[tuple[int, str]]] = {}
    for i, s in runs:
        by_len.setdefault(len(s), []).append((i, s))
    for n, group in by_len.items():
        if not 13 <= n <= 19:
            continue
        idx = np.array([i for i, _ in group])
        ok = luhn_valid(np.array([s for _, s in group]))
        out[idx[ok]] = True
    return out


def erasure_hash(secret: bytes, user_id: str) -> str:
    """The keyed hash an erased user is remembered by: SHA-256 of the secret (hex) and the id.

    Without the data home's secret the hash cannot be checked against a guessed id; with it,
    new rows of the user are recognised. `erasure_hash_sql` computes the same in SQL.
    """
    return hashlib.sha256((secret.hex() + user_id).encode("utf-8")).hexdigest()


def erasure_hash_sql(secret: bytes, column: str, dialect: Dialect = DUCKDB) -> str:
    """SQL expression of `erasure_hash` over a string column (lowercase hex on both engines)."""
    return dialect.sha256.format(f"'{secret.hex()}' || {column}")


def erased_id_hashes_sql(secret: bytes, stored: str, dialect: Dialect = DUCKDB) -> tuple[str, str]:
    """SQL of the two keyed hashes by which an id (`stored`: its text in stored form) may name an
    erased user: its own, and for an id holding a control character, which ingest quarantines,
    that of the id without them (`behavior.ids.without_controls`, the user such a row most likely
    belongs to; NULL for other ids)."""
    bare = erasure_hash_sql(secret, without_controls_sql(stored, dialect), dialect)
    return erasure_hash_sql(secret, stored, dialect), f"CASE WHEN {control_sql(stored, dialect)} THEN {bare} END"
