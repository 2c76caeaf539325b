"""Answers made comparable across engines: a checksum of the canonical form of the rows.

Engines disagree on types, not on answers: one returns sum(l_quantity) as a decimal, another
as a float; avg of a decimal is a float in DuckDB and a decimal of scale 6 in DataFusion;
Tally and DataFusion hand back CSV text, DuckDB and Spark Python objects. So every value is
first written as text the same way, every number is then rounded to PRECISION decimal places
(half to even), and the rows are sorted before hashing, so row order (which SQL leaves open
for ties, and for everything without ORDER BY) does not matter either.
"""

import datetime
import decimal
import hashlib
import re

# Decimal places kept for every number in a checksum.
PRECISION = 2

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_QUANTUM = decimal.Decimal(1).scaleb(-PRECISION)
_CONTEXT = decimal.Context(prec=60, rounding=decimal.ROUND_HALF_EVEN)


def as_text(value):
    """One engine value as text, before canonicalization; NULL and '' are the same (CSV
    cannot tell them apart)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)
    return str(value)


def canonical_value(text):
    """Numbers rounded to PRECISION places; everything else as it is."""
    text = text.strip()
    if text == "":
        return "NULL"
    if _NUMBER.match(text):
        rounded = decimal.Decimal(text).quantize(_QUANTUM, context=_CONTEXT)
        if rounded.is_zero():
            rounded = abs(rounded)
        return str(rounded)
    if text in ("true", "false", "True", "False"):
        return text.lower()
    return text


def canonical_rows(rows):
    """Rows (sequences of engine values or CSV strings) as sorted tuples of canonical text."""
    return sorted(tuple(canonical_value(as_text(v)) for v in row) for row in rows)


def checksum(rows):
    """A short hex digest of the canonical, sorted rows."""
    digest = hashlib.sha256()
    for row in canonical_rows(rows):
        digest.update("\x1f".join(row).encode())
        digest.update(b"\n")
    return digest.hexdigest()[:16]
