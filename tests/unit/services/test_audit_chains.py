"""Several audit chains (issue 15): commits append to one of them, each under its own head lock
(on PostgreSQL the first one free from a chain drawn at random), and every promise of the
single chain holds across them.

Verify walks every chain; an edit, a deletion, a reordering or a truncation in any chain is
named by the global ``seq`` of the entry concerned; a removed head is named; a chain head
rolled back to an older, genuine state passes the walk but not a signed anchor, which holds
every head. Tampering goes through raw SQL, as someone with write access would do it.
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter

import pytest

from access_control import crypto
from medchat import audit
from medchat.audit import anchor as audit_anchor
from medchat.audit import verification
from medchat.audit.anchor import AnchorSigner
from medchat.models import AuditEntry, ChainHead
from tests.support.audit import audit_entries, execute, heads_held, in_thread, verify

CHAINS = 4
COMMITS = 40


@pytest.fixture
def app(make_app):
    return make_app(audit_chains=CHAINS)


def write(runtime, commits: int = COMMITS, per_commit: int = 1) -> None:
    for n in range(commits):
        with runtime.database.transaction() as session:
            for k in range(per_commit):
                audit.record(session, "test.chains", details={"n": n, "k": k})


def busiest_chain(runtime) -> tuple[str, list[AuditEntry]]:
    """The chain holding the most entries (at least 3 with 40 commits over 4 chains)."""
    rows = audit_entries(runtime)
    chain, _ = Counter(row.chain for row in rows).most_common(1)[0]
    mine = [row for row in rows if row.chain == chain]
    assert len(mine) >= 3
    return chain, mine


def test_commits_spread_over_the_chains_and_each_chain_is_whole(runtime):
    write(runtime, per_commit=2)

    rows = audit_entries(runtime)
    used = Counter(row.chain for row in rows)
    assert len(used) > 1 and set(used) <= {"audit", "audit/1", "audit/2", "audit/3"}
    for chain in used:
        positions = [row.position for row in rows if row.chain == chain]
        assert positions == list(range(1, len(positions) + 1))
    # One commit's entries stay together, in the order recorded, on one chain.
    for first, second in zip(rows[::2], rows[1::2], strict=True):
        assert first.chain == second.chain and second.position == first.position + 1
    assert [row.seq for row in rows] == sorted({row.seq for row in rows})
    result = verify(runtime)
    assert result.ok, result.reason
    assert result.entries == result.head_seq == 2 * COMMITS
    assert result.head_hash == rows[-1].entry_hash.hex()


def test_concurrent_writers_leave_every_chain_unbroken(runtime):
    threads, transactions = 4, 20
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            barrier.wait()
            for n in range(transactions):
                with runtime.database.transaction() as session:
                    audit.record(session, "test.concurrent", details={"w": worker, "n": n})
        except BaseException as exc:  # reported to the main thread below
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=120)
    assert errors == []
    result = verify(runtime)
    assert result.ok, result.reason
    assert result.entries == threads * transactions
    assert len({row.details for row in audit_entries(runtime)}) == threads * transactions


def test_a_commit_with_every_chain_free_takes_the_drawn_one(runtime, monkeypatch):
    """The draw spreads concurrent commits over the chains; the free-head lock keeps it."""
    for drawn in (2, 0, 3, 1):
        monkeypatch.setattr(audit.heads.secrets, "randbelow", lambda n, drawn=drawn: drawn)
        write(runtime, commits=1)
    assert [row.chain for row in audit_entries(runtime)] == [
        "audit/2",
        "audit",
        "audit/3",
        "audit/1",
    ]


def test_a_commit_takes_a_free_chain_instead_of_waiting_for_a_held_one(runtime):
    if not runtime.database.is_postgresql:
        pytest.skip("SQLite holds the write lock for the whole commit: one writer at a time")
    with heads_held(runtime, "audit", "audit/1", "audit/2"):
        writer = in_thread(lambda: write(runtime, commits=8))
        writer.join(timeout=30)
        waited = writer.is_alive()
    writer.join(timeout=30)
    assert not waited  # every commit found audit/3 free, whichever chain it drew
    assert {row.chain for row in audit_entries(runtime)} == {"audit/3"}
    result = verify(runtime)
    assert result.ok, result.reason


def test_a_commit_whose_drawn_chain_is_held_takes_the_next_one_on(runtime, monkeypatch):
    """Looking from the drawn chain on: drawn audit/1 held, audit/2 is next (then audit/3)."""
    if not runtime.database.is_postgresql:
        pytest.skip("SQLite holds the write lock for the whole commit: one writer at a time")
    monkeypatch.setattr(audit.heads.secrets, "randbelow", lambda n: 1)
    with heads_held(runtime, "audit/1"):
        writer = in_thread(lambda: write(runtime, commits=1))
        writer.join(timeout=30)
    with heads_held(runtime, "audit/1", "audit/2"):
        writer = in_thread(lambda: write(runtime, commits=1))
        writer.join(timeout=30)
    assert [row.chain for row in audit_entries(runtime)] == ["audit/2", "audit/3"]


def test_a_commit_waits_for_a_head_when_every_chain_is_held(runtime):
    if not runtime.database.is_postgresql:
        pytest.skip("SQLite holds the write lock for the whole commit: one writer at a time")
    with heads_held(runtime, "audit", "audit/1", "audit/2", "audit/3"):
        writer = in_thread(lambda: write(runtime, commits=1))
        writer.join(timeout=1)
        waited = writer.is_alive()
    writer.join(timeout=30)
    assert waited and not writer.is_alive()
    assert len(audit_entries(runtime)) == 1
    result = verify(runtime)
    assert result.ok, result.reason


def test_an_edited_entry_in_any_chain_is_named(runtime):
    write(runtime)
    _, mine = busiest_chain(runtime)
    target = mine[1]
    execute(
        runtime, "UPDATE audit_entries SET action = 'test.innocent' WHERE seq = :s", s=target.seq
    )

    result = verify(runtime)
    assert not result.ok
    assert result.first_bad == target.seq
    assert "hash" in (result.reason or "")


def test_a_deleted_entry_in_any_chain_is_named_where_it_was(runtime):
    write(runtime)
    chain, mine = busiest_chain(runtime)
    execute(runtime, "DELETE FROM audit_entries WHERE seq = :s", s=mine[1].seq)

    result = verify(runtime)
    assert not result.ok
    assert result.first_bad == mine[0].seq + 1
    assert "missing" in (result.reason or "") and chain in (result.reason or "")


def test_swapped_sequence_numbers_across_chains_are_caught(runtime):
    """The access log's order is the global seq: moving an entry in it breaks its hash."""
    write(runtime)
    rows = audit_entries(runtime)
    # Two neighbours in the access log's order that sit on different chains.
    a, b = next((x, y) for x, y in itertools.pairwise(rows) if x.chain != y.chain)
    execute(runtime, "UPDATE audit_entries SET seq = -1 WHERE seq = :s", s=a.seq)
    execute(runtime, "UPDATE audit_entries SET seq = :new WHERE seq = :s", new=a.seq, s=b.seq)
    execute(runtime, "UPDATE audit_entries SET seq = :new WHERE seq = -1", new=b.seq)

    result = verify(runtime)
    assert not result.ok
    assert result.first_bad == a.seq


def test_a_truncated_chain_is_caught_through_its_head(runtime):
    write(runtime)
    chain, mine = busiest_chain(runtime)
    execute(runtime, "DELETE FROM audit_entries WHERE seq = :s", s=mine[-1].seq)

    result = verify(runtime)
    assert not result.ok
    assert result.first_bad == mine[-2].seq + 1
    assert f"chain {chain} ends at position" in (result.reason or "")


@pytest.mark.parametrize("chain", ["audit", "audit/7"])
def test_a_removed_head_is_named(runtime, chain):
    """Every chain's head exists from the migration on; removing one (with or without its
    entries) is named, even for a chain this deployment does not append to."""
    write(runtime, commits=4)
    execute(runtime, "DELETE FROM chain_heads WHERE chain = :c", c=chain)
    result = verify(runtime)
    assert not result.ok
    assert f"the head of chain {chain} is missing" == result.reason
    # The walk goes on past it: every entry is counted (kills ``continue`` to ``break``).
    assert result.entries == 4


def test_the_lowest_seq_broken_is_named_first_whatever_its_chain(runtime):
    """Two chains broken: the one edited at the lower seq is named, though its chain comes
    later; a missing head (no seq) comes after both. Kills the mutants of the ordering key of
    ``verify``'s faults (``is None`` to ``is not None``, ``or 0`` to ``and 0``)."""
    write(runtime)
    rows = audit_entries(runtime)
    order = {chain: index for index, chain in enumerate(verification.CHAINS)}
    early, late = next(
        (a, b) for a in rows for b in rows if order[a.chain] < order[b.chain] and b.seq < a.seq
    )
    for row in (early, late):
        execute(runtime, "UPDATE audit_entries SET action = 'x.edited' WHERE seq = :s", s=row.seq)
    execute(runtime, "DELETE FROM chain_heads WHERE chain = 'audit/9'")

    result = verify(runtime)
    assert (result.first_bad, result.reason) == (late.seq, "content does not match its hash")


def test_a_chain_head_rolled_back_passes_the_walk_but_not_the_anchor(runtime):
    """The owner role saves one chain's head, lets it grow, deletes that chain's tail and puts
    the saved head back: its MAC is genuine, so only the signed anchor of all heads catches it."""
    write(runtime)
    chain, _ = busiest_chain(runtime)
    with runtime.database.transaction() as session:
        head = session.get(ChainHead, chain)
        saved = {"seq": head.seq, "entry_hash": head.entry_hash, "mac": head.mac}
    signer = AnchorSigner(runtime.keys.audit_anchor)
    for _ in range(30):  # until the chain has grown past the saved head
        write(runtime, commits=1)
        with runtime.database.transaction() as session:
            if session.get(ChainHead, chain).seq > saved["seq"]:
                break
    with runtime.database.transaction() as session:
        anchor = signer.sign_heads(session, runtime.keys.audit_mac, runtime.clock.now())
    assert len(anchor.heads) > 1

    execute(
        runtime,
        "DELETE FROM audit_entries WHERE chain = :c AND position > :p",
        c=chain,
        p=saved["seq"],
    )
    execute(
        runtime,
        "UPDATE chain_heads SET seq = :seq, entry_hash = :entry_hash, mac = :mac WHERE chain = :c",
        c=chain,
        **saved,
    )
    result = verify(runtime)
    assert result.ok, result.reason  # the gap the anchor closes

    with runtime.database.transaction() as session:
        audit_anchor.verify_against(session, result, anchor)
    assert not result.ok
    assert f"chain {chain} ends at entry {saved['seq']}" in (result.reason or "")
    assert "removed" in (result.reason or "")


def checked(runtime) -> list[tuple[str, int, bytes]]:
    with runtime.database.transaction() as session:
        return audit.checked_heads(session, runtime.keys.audit_mac)


def test_checked_heads_lists_every_chain_in_use_with_its_last_entry(runtime):
    """What an anchor signs: ``audit`` always, the other chains once they hold entries, each
    at its last position and hash (kills the mutants of ``checked_heads``' listing)."""
    assert checked(runtime) == [("audit", 0, bytes(32))]
    write(runtime)
    heads = checked(runtime)
    rows = audit_entries(runtime)
    last = {row.chain: row for row in rows}  # rows are in seq order: the last one wins
    assert heads == [(c, last[c].position, last[c].entry_hash) for c in sorted(last, key=_index)]


def test_checked_heads_reaches_a_chain_in_use_past_an_empty_one(make_app):
    """With 64 chains and a few commits, some chain before a used one is empty: the listing
    goes on past it (kills ``continue`` to ``break`` in ``checked_heads``; the chance that the
    six commits land on a prefix of the chains, where both agree, is below one in 10^7)."""
    runtime = make_app(audit_chains=64).extensions["medchat"]
    write(runtime, commits=6)
    used = {row.chain for row in audit_entries(runtime)}
    assert [chain for chain, _, _ in checked(runtime)] == sorted(used | {"audit"}, key=_index)


def _index(chain: str) -> int:
    return 0 if chain == "audit" else int(chain.split("/")[1])


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        ("DELETE FROM chain_heads WHERE chain = :c", "the head of chain {c} is missing"),
        (
            "UPDATE chain_heads SET mac = :junk WHERE chain = :c",
            "the head of chain {c}: MAC not made with the audit key",
        ),
        (
            "DELETE FROM audit_entries WHERE chain = :c AND position = "
            "(SELECT seq FROM chain_heads WHERE chain = :c)",
            "chain {c}: position {p} is not the entry its head records",
        ),
        (
            "UPDATE audit_entries SET entry_hash = :junk WHERE chain = :c AND position = "
            "(SELECT seq FROM chain_heads WHERE chain = :c)",
            "chain {c}: position {p} is not the entry its head records",
        ),
        (
            "UPDATE audit_entries SET mac = :junk WHERE chain = :c AND position = "
            "(SELECT seq FROM chain_heads WHERE chain = :c)",
            "chain {c} position {p}: MAC not made with the audit key",
        ),
    ],
)
def test_checked_heads_refuses_a_head_it_cannot_vouch_for(runtime, tamper, reason):
    """An anchor never signs a head whose MAC, entry or entry MAC does not check out, and says
    which (kills the mutants of each refusal of ``checked_heads`` and of its messages)."""
    write(runtime)
    chain, mine = busiest_chain(runtime)
    execute(runtime, tamper, c=chain, junk=bytes(32))

    with pytest.raises(crypto.IntegrityCheckFailed) as refused:
        checked(runtime)
    assert str(refused.value) == reason.format(c=chain, p=mine[-1].position)


def test_a_verify_result_reads_as_the_documented_dictionary(runtime):
    """``medchat audit verify --json`` prints this (kills the mutants of ``as_dict``'s keys)."""
    write(runtime, commits=3)
    result = verify(runtime)
    assert result.as_dict() == {
        "ok": True,
        "entries": 3,
        "first_bad": None,
        "reason": None,
        "head_seq": 3,
        "head_hash": audit_entries(runtime)[-1].entry_hash.hex(),
    }
