"""What an audit entry's hash and MACs are made of, format by format.

Kept apart from the append (``medchat.audit.chain``) because everything that checks an entry
reads it: the walk (``verification``), the address erasure, the migrations' tests. A format
never changes once entries exist in it: a new one gets a new number and label, and
``entry_hash`` keeps every older format verifying as it was written.
"""

from __future__ import annotations

from typing import Any

from access_control import crypto
from medchat.audit.hash_chain import AUDIT

_ENTRY_LABEL = "medchat/audit-entry/v1"
_ENTRY_LABEL_V2 = "medchat/audit-entry/v2"
_ENTRY_LABEL_V3 = "medchat/audit-entry/v3"
#: The format of every entry appended now (1: before chains; 2: chains, the address in clear;
#: 3: the address sealed, the hash covering its keyed commitment). ``entry_hash`` tells them
#: apart.
FORMAT = 3
_MAC_LABEL = "medchat/audit-mac/v1"


#: The columns an entry's hash is computed from (``entry_hash`` reads those of its format).
ENTRY_COLUMNS = (
    "id",
    "seq",
    "chain",
    "position",
    "format",
    "at",
    "actor_id",
    "actor_role",
    "action",
    "outcome",
    "target_type",
    "target_id",
    "subject_id",
    "address",
    "address_hash",
    "details",
)


def entry_columns(entry: Any) -> dict[str, Any]:
    """A stored entry's hashed columns, as ``entry_hash`` takes them (verify, erasure)."""
    return {name: getattr(entry, name) for name in ENTRY_COLUMNS}


def entry_hash(row: dict[str, Any], prev_hash: bytes) -> bytes:
    """The hash an entry's fields and its predecessor's hash give, in the entry's format.

    ``row`` holds the entry's columns (``id``, ``seq``, ``chain``, ``position``, ``format``
    and the recorded fields). Format 1 (entries written before chains) covers ``seq`` as the
    position in the one chain there was; format 2 covers the chain, the position and ``seq``;
    format 3 covers the same and, in place of the clear address, its keyed commitment
    ``address_hash`` (``medchat.audit.addresses``), so erasing the sealed address leaves the
    hash whole.
    """
    fields = (
        row["at"].isoformat(),
        row["actor_id"],
        row["actor_role"],
        row["action"],
        row["outcome"],
        row["target_type"],
        row["target_id"],
        row["subject_id"],
        row["address_hash"] if row["format"] >= 3 else row["address"],
        row["details"],
        prev_hash,
    )
    if row["format"] == 1:
        return crypto.digest(_ENTRY_LABEL, row["seq"], row["id"], *fields)
    label = _ENTRY_LABEL_V3 if row["format"] >= 3 else _ENTRY_LABEL_V2
    return crypto.digest(label, row["chain"], row["position"], row["seq"], row["id"], *fields)


def entry_mac(key: bytes, hash_: bytes) -> bytes:
    return crypto.mac(key, _MAC_LABEL, hash_)


def is_genuine(key: bytes, entry: Any) -> bool:
    """Whether ``entry``'s columns are the ones the server hashed and MAC'd, on its own: its
    hash recomputed from them and its stored predecessor's hash, and its MAC under ``key``.

    Not the chain's check (``verification`` walks the links: a deleted or reordered entry is
    only seen there), but enough for a view that decides on an entry's columns (whom it is
    about, who acted) before showing it: a row planted or altered through SQL fails here, as
    its writer has no audit key.
    """
    expected = entry_hash(entry_columns(entry), entry.prev_hash)
    return crypto.constant_time_equal(expected, entry.entry_hash) and crypto.constant_time_equal(
        entry_mac(key, entry.entry_hash), entry.mac
    )


def head_mac(key: bytes, position: int, hash_: bytes) -> bytes:
    return AUDIT.head_mac(key, position, hash_)
