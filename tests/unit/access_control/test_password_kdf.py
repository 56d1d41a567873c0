"""Password-sealed secrets (scrypt + AES-256-GCM): round trips, refusals, and parameters that
travel with the blob and are bounded before any work is done."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from access_control import password_kdf
from access_control.crypto import DecryptionFailed
from access_control.password_kdf import ScryptParams

FAST = ScryptParams(log2_n=10)  # production uses 17; the format is the same
PASSWORD = "correct horse battery"
AAD = b"personal-key"
SECRET = bytes(range(32))
BLOB = password_kdf.seal_with_password(SECRET, PASSWORD, aad=AAD, params=FAST)

examples = settings(max_examples=25, deadline=None)


def flip_bit(blob: bytes, bit: int) -> bytes:
    out = bytearray(blob)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


#: A version 1 blob, as sealed before the scrypt output went through HKDF (key = output).
LEGACY_BLOB = bytes.fromhex(
    "010a0801000102030405060708090a0b0c0d0e0f000102030405060708090a0bf3185d4ec5ce3498aa641c"
    "7c8bc5e3d4905e5c7098696724d67e7ee5a1e3a4f879ac4dc49320f7560ea4226ecf4a41a6"
)


def test_blob_format_is_pinned() -> None:
    blob = password_kdf.seal_with_password(
        SECRET, PASSWORD, aad=AAD, params=FAST, random_bytes=lambda n: bytes(range(n))
    )
    assert blob.hex() == (
        "020a0801000102030405060708090a0b0c0d0e0f000102030405060708090a0b01ab5e0e99a2cf61f96ab1"
        "4356d3ef9b9d2bfb31692e139c4e1f4cd221b79e946529fc383979ac0f4d87d8562420ffc3"
    )


def test_a_version_1_blob_still_opens_and_is_not_current() -> None:
    assert password_kdf.open_with_password(LEGACY_BLOB, PASSWORD, aad=AAD) == SECRET
    run = password_kdf.stretch_for_blob(LEGACY_BLOB, PASSWORD)
    assert not password_kdf.sealed_under(LEGACY_BLOB, run)
    with pytest.raises(DecryptionFailed):
        password_kdf.open_with_password(LEGACY_BLOB, PASSWORD + "!", aad=AAD)


def test_one_password_runs_scrypt_once_per_salt_and_cost(monkeypatch) -> None:
    """A hash and a key sharing a salt cost one scrypt run between them."""
    runs: list[bytes] = []
    real = password_kdf._derive

    def counted(password: str, salt: bytes, params: ScryptParams) -> bytes:
        runs.append(salt)
        return real(password, salt, params)

    monkeypatch.setattr(password_kdf, "_derive", counted)
    typed = password_kdf.Password(PASSWORD)
    typed.account = typed.fresh(FAST)
    blob = password_kdf.seal_with_password(SECRET, typed, aad=AAD, params=FAST)
    assert password_kdf.sealed_under(blob, typed.account)
    assert password_kdf.open_with_password(blob, typed, aad=AAD) == SECRET
    assert len(runs) == 1
    # A new Password for the same text runs it again: nothing is remembered across requests.
    assert password_kdf.open_with_password(blob, PASSWORD, aad=AAD) == SECRET
    assert len(runs) == 2


def test_carried_runs_open_only_what_they_were_made_for() -> None:
    typed = password_kdf.Password(PASSWORD)
    carried = password_kdf.Password(None, [password_kdf.stretch_for_blob(BLOB, typed)])
    assert password_kdf.open_with_password(BLOB, carried, aad=AAD) == SECRET
    other = password_kdf.seal_with_password(SECRET, PASSWORD, aad=AAD, params=FAST)
    with pytest.raises(DecryptionFailed):
        password_kdf.open_with_password(other, carried, aad=AAD)
    assert "Password(" in repr(carried) and PASSWORD not in repr(carried)


@examples
@given(
    secret=st.binary(max_size=128),
    password=st.text(min_size=1, max_size=40),
    aad=st.binary(max_size=32),
)
def test_sealed_secret_opens_with_its_password(secret: bytes, password: str, aad: bytes) -> None:
    blob = password_kdf.seal_with_password(secret, password, aad=aad, params=FAST)
    assert password_kdf.open_with_password(blob, password, aad=aad) == secret


@examples
@given(other=st.text(max_size=40))
def test_wrong_password_is_refused(other: str) -> None:
    if other != PASSWORD:
        with pytest.raises(DecryptionFailed):
            password_kdf.open_with_password(BLOB, other, aad=AAD)


@examples
@given(bit=st.integers(0, len(BLOB) * 8 - 1))
def test_any_flipped_bit_in_a_blob_is_refused(bit: int) -> None:
    with pytest.raises(DecryptionFailed):
        password_kdf.open_with_password(flip_bit(BLOB, bit), PASSWORD, aad=AAD)


@examples
@given(cut=st.integers(0, len(BLOB) - 1))
def test_truncated_blob_is_refused(cut: int) -> None:
    with pytest.raises(DecryptionFailed):
        password_kdf.open_with_password(BLOB[:cut], PASSWORD, aad=AAD)


def test_blob_for_another_key_is_refused() -> None:
    with pytest.raises(DecryptionFailed):
        password_kdf.open_with_password(BLOB, PASSWORD, aad=b"role-key")


def test_parameters_are_read_back_from_the_blob_and_can_be_raised() -> None:
    assert password_kdf.password_blob_params(BLOB) == FAST
    stronger = ScryptParams(log2_n=11)
    secret = password_kdf.open_with_password(BLOB, PASSWORD, aad=AAD)
    resealed = password_kdf.seal_with_password(secret, PASSWORD, aad=AAD, params=stronger)
    assert password_kdf.password_blob_params(resealed) == stronger
    assert password_kdf.open_with_password(resealed, PASSWORD, aad=AAD) == SECRET


def test_production_default_matches_the_configured_cost() -> None:
    assert ScryptParams() == ScryptParams(log2_n=17, r=8, p=1)
    assert ScryptParams().memory_bytes == 128 * 1024 * 1024


@pytest.mark.parametrize(
    ("log2_n", "r", "p"),
    [
        (9, 8, 1),
        (21, 8, 1),
        (30, 8, 1),
        (10, 0, 1),
        (10, 8, 0),
        (10, 17, 1),
        (10, 8, 5),
        (20, 16, 1),
    ],
)
def test_absurd_parameters_in_a_blob_are_refused_before_any_work(
    log2_n: int, r: int, p: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_scrypt(*args: object, **kwargs: object) -> None:
        raise AssertionError("scrypt ran for parameters that should have been refused")

    monkeypatch.setattr(password_kdf, "Scrypt", no_scrypt)
    forged = BLOB[:1] + bytes([log2_n, r, p]) + BLOB[4:]
    with pytest.raises(DecryptionFailed):
        password_kdf.open_with_password(forged, PASSWORD, aad=AAD)
    with pytest.raises(ValueError):
        ScryptParams(log2_n=log2_n, r=r, p=p)


def test_empty_password_cannot_seal_and_does_not_open() -> None:
    with pytest.raises(ValueError):
        password_kdf.seal_with_password(SECRET, "", aad=AAD, params=FAST)
    with pytest.raises(DecryptionFailed):
        password_kdf.open_with_password(BLOB, "", aad=AAD)


def test_every_seal_draws_a_fresh_salt() -> None:
    again = password_kdf.seal_with_password(SECRET, PASSWORD, aad=AAD, params=FAST)
    assert again[4:20] != BLOB[4:20]


@pytest.mark.parametrize(
    ("log2_n", "r", "p"),
    [(20, 8, 1), (10, 1, 1), (10, 16, 1), (10, 8, 4), (19, 16, 1)],
    ids=["largest N at exactly 1 GiB", "smallest r", "largest r", "largest p", "1 GiB by r"],
)
def test_parameters_at_each_bound_are_accepted(log2_n: int, r: int, p: int) -> None:
    assert ScryptParams(log2_n=log2_n, r=r, p=p).memory_bytes <= 1 << 30


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"log2_n": 21}, "scrypt log2_n must be in [10, 20]"),
        ({"log2_n": 10, "r": 17}, "scrypt needs 1 <= r <= 16 and 1 <= p <= 4"),
        ({"log2_n": 10, "p": 5}, "scrypt needs 1 <= r <= 16 and 1 <= p <= 4"),
        ({"log2_n": 20, "r": 9}, "scrypt parameters would need more than 1 GiB"),
    ],
)
def test_parameters_out_of_bounds_are_refused_by_name(params: dict, message: str) -> None:
    with pytest.raises(ValueError) as refused:
        ScryptParams(**params)
    assert str(refused.value) == message


def test_a_stretched_password_is_a_salt_and_an_output_of_their_sizes() -> None:
    message = "a stretched password is a 16-byte salt and a 32-byte output"
    for salt, output in [(bytes(16), bytes(31)), (bytes(15), bytes(32))]:
        with pytest.raises(ValueError) as refused:
            password_kdf.Stretched(salt, FAST, output)
        assert str(refused.value) == message


def test_an_empty_password_is_refused_by_name() -> None:
    with pytest.raises(ValueError) as refused:
        password_kdf.seal_with_password(SECRET, "", aad=AAD, params=FAST)
    assert str(refused.value) == "an empty password protects nothing"


def test_a_malformed_blob_is_sealed_under_no_run() -> None:
    run = password_kdf.Password(PASSWORD).stretched(BLOB[4:20], FAST)
    assert password_kdf.sealed_under(BLOB, run)
    assert not password_kdf.sealed_under(BLOB[:10], run)


def test_sealing_uses_the_accounts_run_at_its_cost_and_a_fresh_one_at_another() -> None:
    password = password_kdf.Password(PASSWORD)
    account = password.stretched(bytes(16), FAST)
    password.account = account
    assert password.for_sealing(FAST) is account
    other = password.for_sealing(ScryptParams(log2_n=11))
    assert other is not account
    assert other.params == ScryptParams(log2_n=11)


def test_a_fresh_run_is_made_once_per_cost() -> None:
    password = password_kdf.Password(PASSWORD)
    first = password.fresh(FAST)
    assert password.fresh(FAST) is first
    assert password.fresh(ScryptParams(log2_n=11)).salt != first.salt


def test_a_runner_is_handed_the_derivation_and_all_of_its_arguments() -> None:
    calls: list[tuple] = []

    def runner(fn, *args):  # the shape of PasswordWork.run
        calls.append(args)
        return fn(*args)

    password = password_kdf.Password(PASSWORD)
    password.runner = runner
    salt = bytes(range(16))
    run = password.stretched(salt, FAST)
    assert calls == [(PASSWORD, salt, FAST)]
    direct = password_kdf.Password(PASSWORD).stretched(salt, FAST)
    assert run.secret_output() == direct.secret_output()


def test_runs_lists_every_scrypt_run_done() -> None:
    password = password_kdf.Password(PASSWORD)
    first = password.stretched(bytes(16), FAST)
    second = password.stretched(bytes(range(16)), FAST)
    assert password.runs() == (first, second)


def test_utf8_gives_the_passwords_bytes_and_nothing_without_a_password() -> None:
    assert password_kdf.Password("pässword").utf8() == "pässword".encode()
    with pytest.raises(DecryptionFailed):
        password_kdf.Password(None).utf8()
