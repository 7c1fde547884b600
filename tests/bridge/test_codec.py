"""Message encoding: signatures, replay protection, limits, strict decoding, raw buffers."""

from __future__ import annotations

import time

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from samroto.bridge import codec, protocol
from samroto.bridge.codec import ProtocolError, RawArray

KEY = "k" * 64
SIGNER = codec.Signer(KEY)


def _code(parts, **kwargs) -> str:
    with pytest.raises(ProtocolError) as info:
        codec.decode(parts, SIGNER, **kwargs)
    return info.value.code


def _resigned(parts: list) -> list:
    """The same parts with a valid signature (to reach the checks after the signature)."""
    return [SIGNER.sign(parts[1:])] + list(parts[1:])


@pytest.mark.parametrize("dtype", ["bool", "uint8", "uint16", "int32", "float16", "float32"])
def test_round_trip_keeps_body_and_arrays(dtype: str) -> None:
    rng = np.random.default_rng(0)
    array = (rng.random((3, 5, 2)) * 100).astype(dtype)
    parts = codec.encode(SIGNER, "add_mask", request_id="r1", session="s1",
                         body={"frame": 1001, "points": np.array([[1.5, 2.0]]), "score": np.float32(0.25)},
                         arrays={"mask": array, "empty": np.zeros((0, 4), np.uint8)})
    msg = codec.decode(parts, SIGNER, replay_guard=codec.ReplayGuard())
    assert (msg.type, msg.request_id, msg.session) == ("add_mask", "r1", "s1")
    assert msg.body == {"frame": 1001, "points": [[1.5, 2.0]], "score": 0.25}
    assert msg.arrays["mask"].dtype == np.dtype(dtype) and np.array_equal(msg.arrays["mask"], array)
    assert msg.arrays["empty"].shape == (0, 4)
    assert msg.version == protocol.PROTOCOL_VERSION


def test_non_contiguous_and_big_endian_arrays_arrive_intact() -> None:
    base = np.arange(24, dtype=">u2").reshape(4, 6)
    parts = codec.encode(SIGNER, "x", arrays={"a": base[:, ::2]})
    msg = codec.decode(parts, SIGNER)
    assert np.array_equal(msg.arrays["a"], base[:, ::2])


def test_without_numpy_arrays_come_back_as_raw_arrays() -> None:
    raw = RawArray(bytes(range(6)), "uint8", (2, 3))
    parts = codec.encode(SIGNER, "x", arrays={"m": raw})
    msg = codec.decode(parts, SIGNER, as_numpy=False)
    got = msg.arrays["m"]
    assert isinstance(got, RawArray) and got.shape == (2, 3) and got.tobytes() == bytes(range(6))
    assert np.array_equal(got.to_numpy(), np.arange(6, dtype=np.uint8).reshape(2, 3))


def test_raw_array_checks_its_size_and_dtype() -> None:
    with pytest.raises(ValueError, match="need 8"):
        RawArray(b"\x00" * 7, "uint16", (2, 2))
    with pytest.raises(ValueError, match="unsupported array dtype"):
        RawArray(b"\x00" * 8, "float64", (1,))


def test_arrays_of_unsupported_dtype_are_refused_when_sending() -> None:
    with pytest.raises(ValueError, match="float64"):
        codec.encode(SIGNER, "x", arrays={"a": np.zeros(3)})


@pytest.mark.parametrize("index", [1, 2, 3])
def test_tampering_with_any_part_breaks_the_signature(index: int) -> None:
    parts = codec.encode(SIGNER, "x", body={"a": 1}, arrays={"m": np.zeros(4, np.uint8)})
    tampered = list(parts)
    data = bytearray(bytes(tampered[index]))
    data[-1] ^= 1
    tampered[index] = bytes(data)
    assert _code(tampered) == protocol.E_AUTH


def test_moving_bytes_between_parts_breaks_the_signature() -> None:
    parts = [bytes(p) for p in codec.encode(SIGNER, "x", arrays={"a": np.zeros(2, np.uint8), "b": np.ones(2, np.uint8)})]
    # same concatenated bytes, cut differently: the length prefixes make the signature differ
    shifted = parts[:3] + [parts[3] + parts[4][:1], parts[4][1:]]
    assert _code([SIGNER.sign(parts[1:])] + shifted[1:]) == protocol.E_AUTH


def test_unsigned_and_wrongly_keyed_messages_are_refused() -> None:
    parts = codec.encode(SIGNER, "x")
    assert _code([b""] + parts[1:]) == protocol.E_AUTH
    other = codec.encode(codec.Signer("o" * 64), "x")
    with pytest.raises(ProtocolError, match="bad message signature"):
        codec.decode(other, SIGNER)


def test_replayed_message_is_refused() -> None:
    guard = codec.ReplayGuard()
    parts = codec.encode(SIGNER, "x")
    codec.decode(parts, SIGNER, replay_guard=guard)
    assert _code(parts, replay_guard=guard) == protocol.E_REPLAY


@pytest.mark.parametrize("offset", [-400.0, 400.0])
def test_messages_outside_the_time_window_are_refused(offset: float) -> None:
    parts = codec.encode(SIGNER, "x", timestamp=time.time() + offset)
    with pytest.raises(ProtocolError, match="the worker.s clock"):
        codec.decode(parts, SIGNER, replay_guard=codec.ReplayGuard(window_s=300))


def test_replay_guard_memory_is_bounded_and_forgotten_nonces_stay_refused() -> None:
    guard = codec.ReplayGuard(window_s=300, max_nonces=100)
    now = time.time()
    nonces = [bytes([i % 256, i // 256]) * 8 for i in range(1000)]
    for i, nonce in enumerate(nonces):
        guard.check(now + i * 1e-3, nonce, now=now + 1)
    assert len(guard) <= 100
    # the first nonce was forgotten, but its timestamp is now below the floor
    with pytest.raises(ProtocolError, match="older than the replay cache"):
        guard.check(now, nonces[0], now=now + 1)
    with pytest.raises(ProtocolError, match="already used"):
        guard.check(now + 999e-3, nonces[999], now=now + 1)


def test_replay_guard_forgets_expired_nonces() -> None:
    guard = codec.ReplayGuard(window_s=10, max_nonces=1000)
    for i in range(50):
        guard.check(100.0, b"%016d" % i, now=100.0)
    guard.check(200.0, b"x" * 16, now=200.0)
    assert len(guard) == 1


def test_limits_are_enforced_before_decoding() -> None:
    limits = protocol.Limits(max_message_bytes=10_000, max_header_bytes=200, max_body_bytes=1000, max_buffers=2)
    big_body = codec.encode(SIGNER, "x", body={"pad": "a" * 2000})
    assert _code(big_body, limits=limits) == protocol.E_TOO_LARGE
    many = codec.encode(SIGNER, "x", arrays={"a%d" % i: np.zeros(1, np.uint8) for i in range(3)})
    assert _code(many, limits=limits) == protocol.E_TOO_LARGE
    huge = codec.encode(SIGNER, "x", arrays={"a": np.zeros(20_000, np.uint8)})
    assert _code(huge, limits=limits) == protocol.E_TOO_LARGE
    long_header = codec.encode(SIGNER, "x", request_id="r" * 64, session="s" * 128, nonce=b"n" * 64)
    assert len(long_header[1]) > 200
    assert _code(long_header, limits=limits) == protocol.E_TOO_LARGE
    assert _code([b"sig", b"header"]) == protocol.E_MALFORMED


def test_strict_msgpack_refuses_extension_types_and_non_string_keys() -> None:
    parts = codec.encode(SIGNER, "x")
    ext_body = msgpack.packb({"a": msgpack.ExtType(1, b"payload")})
    with pytest.raises(ProtocolError, match="not valid msgpack"):
        codec.decode(_resigned([b"", parts[1], ext_body]), SIGNER)
    int_keys = msgpack.packb({1: "a"})
    assert _code(_resigned([b"", parts[1], int_keys])) == protocol.E_MALFORMED
    assert _code(_resigned([b"", parts[1], b"\xc1"])) == protocol.E_MALFORMED  # never-used byte
    assert _code(_resigned([b"", parts[1], msgpack.packb([1, 2])])) == protocol.E_MALFORMED


@pytest.mark.parametrize("header, message", [
    ({"v": [1, 0], "type": "x", "id": "r", "ts": 1.0}, "nonce"),
    ({"v": "one", "type": "x", "id": "r", "ts": 1.0, "nonce": b"n" * 16}, "version"),
    ({"v": [1, 0], "type": 5, "id": "r", "ts": 1.0, "nonce": b"n" * 16}, "type"),
    ({"v": [1, 0], "type": "x", "id": "", "ts": 1.0, "nonce": b"n" * 16}, "id"),
    ({"v": [1, 0], "type": "x", "id": "r", "ts": "now", "nonce": b"n" * 16}, "ts"),
    ({"v": [1, 0], "type": "x", "id": "r", "ts": 1.0, "nonce": b"n" * 16, "session": 3}, "session"),
])
def test_malformed_headers_are_named(header: dict, message: str) -> None:
    with pytest.raises(ProtocolError, match=message) as info:
        codec.decode(_resigned([b"", msgpack.packb(header), msgpack.packb({})]), SIGNER)
    assert info.value.code == protocol.E_MALFORMED


@pytest.mark.parametrize("descriptors, buffers, message", [
    ([{"name": "a", "dtype": "uint8", "shape": [2]}], [], "describes 1 buffers but 0"),
    ([{"name": "a", "dtype": "uint8", "shape": [3]}], [b"ab"], "need 3"),
    ([{"name": "a", "dtype": "object", "shape": [2]}], [b"ab"], "dtype"),
    ([{"name": "a", "dtype": "uint8", "shape": [-2]}], [b"ab"], "shape"),
    ([{"name": "a", "dtype": "uint8", "shape": [1, 1, 1, 1, 2]}], [b"ab"], "shape"),
    ([{"name": "a", "dtype": "uint8", "shape": [1]}] * 2, [b"a", b"b"], "used twice"),
    ("nope", [b"ab"], "buffers"),
])
def test_bad_buffer_descriptions_are_refused(descriptors, buffers, message) -> None:
    header = codec.encode(SIGNER, "x")[1]
    parts = [b"", header, msgpack.packb({"buffers": descriptors})] + buffers
    with pytest.raises(ProtocolError, match=message) as info:
        codec.decode(_resigned(parts), SIGNER)
    assert info.value.code == protocol.E_MALFORMED


def test_a_different_major_version_is_refused_with_both_versions_named() -> None:
    parts = codec.encode(SIGNER, "hello", version=(2, 0))
    with pytest.raises(ProtocolError, match=r"protocol 2\.0 is not compatible with this side's 1\.1") as info:
        codec.decode(parts, SIGNER)
    assert info.value.code == protocol.E_VERSION
    newer_minor = codec.encode(SIGNER, "hello", version=(1, 7))
    assert codec.decode(newer_minor, SIGNER).version == (1, 7)


def test_peek_request_id_labels_refusals_and_survives_garbage() -> None:
    parts = codec.encode(SIGNER, "x", request_id="abc")
    assert codec.peek_request_id([b""] + parts[1:]) == "abc"
    assert codec.peek_request_id([b"x", b"\xc1\xc1"]) is None
    assert codec.peek_request_id([b"x"]) is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 63, 2 ** 63 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=20) | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(body=st.dictionaries(st.text(max_size=10).filter(lambda k: k != "buffers"), json_values, max_size=6))
def test_any_plain_body_round_trips(body: dict) -> None:
    msg = codec.decode(codec.encode(SIGNER, "x", body=body), SIGNER)
    assert msg.body == body


def test_a_small_body_of_many_empty_containers_is_refused_before_it_expands() -> None:
    limits = protocol.Limits(max_containers=1000)
    header = codec.encode(SIGNER, "x")[1]
    empty_arrays = b"\x81\xa1x\xdd" + (200_000).to_bytes(4, "big") + b"\x90" * 200_000
    started = time.perf_counter()
    with pytest.raises(ProtocolError, match="more than 1000 maps and arrays") as info:
        codec.decode(_resigned([b"", header, empty_arrays]), SIGNER, limits=limits)
    assert info.value.code == protocol.E_TOO_LARGE
    assert time.perf_counter() - started < 5  # stopped at the limit, not after building 200k lists
    nested_maps = msgpack.packb({"a": [{"b": {}} for _ in range(600)]})
    assert _code(_resigned([b"", header, nested_maps]), limits=limits) == protocol.E_TOO_LARGE
    fine = msgpack.packb({"points": [[1.0, 2.0]] * 900})
    assert len(codec.decode(_resigned([b"", header, fine]), SIGNER, limits=limits).body["points"]) == 900


def test_clock_skew_is_reported_with_its_direction_and_size() -> None:
    guard = codec.ReplayGuard(window_s=300)
    with pytest.raises(ProtocolError, match=r"1000 s ahead of the worker's clock.*clock is fast"):
        guard.check(2000.0, b"n" * 16, now=1000.0)
    with pytest.raises(ProtocolError, match=r"700 s behind the worker's clock"):
        guard.check(300.0, b"m" * 16, now=1000.0)


def test_a_client_with_a_fast_clock_only_moves_its_own_floor() -> None:
    guards = codec.PeerReplayGuards(window_s=300, max_nonces=100)
    now = 10_000.0
    for i in range(1000):  # a fast clock and a flood: more than the whole budget
        guards.check(b"fast", now + 200 + i * 0.01, b"f%015d" % i, now=now)
    assert len(guards) <= 100
    for i in range(50):  # correctly clocked clients are still served
        guards.check(b"honest-%d" % (i % 3), now - 0.5, b"h%015d" % i, now=now)
    with pytest.raises(ProtocolError, match="already used"):
        guards.check(b"honest-0", now - 0.5, b"h%015d" % 0, now=now)
    with pytest.raises(ProtocolError, match="older than the replay cache"):
        guards.check(b"fast", now + 1, b"x" * 16, now=now)  # the flooder's own floor moved
    assert len(guards) <= 100


def test_replay_state_is_dropped_for_idle_clients_and_the_number_of_clients_is_bounded() -> None:
    guards = codec.PeerReplayGuards(window_s=10, max_nonces=1000, max_peers=4)
    for peer in range(4):
        guards.check(b"p%d" % peer, 100.0, b"n%015d" % peer, now=100.0)
    with pytest.raises(ProtocolError) as info:
        guards.check(b"p9", 100.0, b"z" * 16, now=100.0)
    assert info.value.code == protocol.E_BUSY
    guards.check(b"p9", 200.0, b"z" * 16, now=200.0)  # the others' state expired and was dropped
    assert guards.peers == 1


def test_the_epoch_is_signed_into_the_header() -> None:
    parts = codec.encode(SIGNER, "ping", epoch="e" * 32)
    assert codec.decode(parts, SIGNER).epoch == "e" * 32
    assert codec.decode(codec.encode(SIGNER, "hello"), SIGNER).epoch is None
    tampered = [parts[0], codec.packb(dict(msgpack.unpackb(parts[1]), epoch="f" * 32))] + list(parts[2:])
    assert _code(tampered) == protocol.E_AUTH
