"""Decoding: every link type the sensor promises, tags, and hostile bytes that must not raise."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arpwatchd.addresses import ZERO_MAC, parse_ip, parse_mac
from arpwatchd.decode import (
    DLT_EN10MB,
    DLT_LINUX_SLL,
    DLT_LINUX_SLL2,
    ArpFrame,
    ArpKind,
    Decoder,
    SkipReason,
)
from arpwatchd.frames import REPLY, REQUEST, announcement, arp_frame, probe

A = "02:00:00:00:00:0a"
B = "02:00:00:00:00:0b"


def eth(frame: bytes) -> ArpFrame | SkipReason:
    return Decoder("eth0", DLT_EN10MB).decode(frame)


def test_request_reply_announcement_probe() -> None:
    req = eth(arp_frame(REQUEST, A, "10.0.0.1", ZERO_MAC, "10.0.0.2"))
    assert isinstance(req, ArpFrame) and req.kind is ArpKind.REQUEST
    assert req.sha == parse_mac(A) and req.spa == parse_ip("10.0.0.1")
    assert req.tpa == parse_ip("10.0.0.2") and req.vlan is None and req.is_claim
    rep = eth(arp_frame(REPLY, B, "10.0.0.2", A, "10.0.0.1", eth_dst=A))
    assert isinstance(rep, ArpFrame) and rep.kind is ArpKind.REPLY
    ann = eth(announcement("10.0.0.1", A))
    assert isinstance(ann, ArpFrame) and ann.kind is ArpKind.ANNOUNCEMENT
    arping_a = eth(arp_frame(REPLY, A, "10.0.0.1", A, "10.0.0.1"))  # arping -A: tha = sha
    assert isinstance(arping_a, ArpFrame) and arping_a.kind is ArpKind.ANNOUNCEMENT
    prb = eth(probe("10.0.0.9", A))
    assert isinstance(prb, ArpFrame) and prb.kind is ArpKind.PROBE and not prb.is_claim


def test_request_for_own_address_with_other_target_mac_is_not_announcement() -> None:
    frame = eth(arp_frame(REQUEST, A, "10.0.0.1", B, "10.0.0.1"))
    assert isinstance(frame, ArpFrame) and frame.kind is ArpKind.REQUEST


def test_dot1q_and_qinq_give_the_outer_vlan() -> None:
    tagged = eth(announcement("10.0.0.1", A, vlan=123))
    assert isinstance(tagged, ArpFrame) and tagged.vlan == 123
    qinq = eth(arp_frame(REQUEST, A, "10.0.0.1", ZERO_MAC, "10.0.0.2", vlan=5, outer_vlan=200))
    assert isinstance(qinq, ArpFrame) and qinq.vlan == 200
    priority = eth(announcement("10.0.0.1", A, vlan=0))
    assert isinstance(priority, ArpFrame) and priority.vlan is None


def test_linux_cooked_v1_and_v2() -> None:
    body = arp_frame(REQUEST, A, "10.0.0.1", ZERO_MAC, "10.0.0.2", pad=False)[14:]
    sll = struct.pack("!HHH8sH", 1, 1, 6, parse_mac(A) + b"\0\0", 0x0806) + body
    out = Decoder("any", DLT_LINUX_SLL).decode(sll)
    assert isinstance(out, ArpFrame) and out.eth_src == parse_mac(A) and out.eth_dst is not None
    sll2 = struct.pack("!HHIHBB8s", 0x0806, 0, 3, 1, 4, 6, parse_mac(B) + b"\0\0") + body
    out2 = Decoder("any", DLT_LINUX_SLL2).decode(sll2)
    assert isinstance(out2, ArpFrame) and out2.eth_src == parse_mac(B) and out2.ethernet_mismatch


@pytest.mark.parametrize(
    ("frame", "problem"),
    [
        (arp_frame(REQUEST, "ff:ff:ff:ff:ff:ff", "10.0.0.1", ZERO_MAC, "10.0.0.2", eth_src=A),
         "sender_mac_broadcast"),
        (arp_frame(REQUEST, "01:00:5e:00:00:01", "10.0.0.1", ZERO_MAC, "10.0.0.2", eth_src=A),
         "sender_mac_multicast"),
        (arp_frame(REQUEST, ZERO_MAC, "10.0.0.1", ZERO_MAC, "10.0.0.2", eth_src=A),
         "sender_mac_zero"),
        (arp_frame(REQUEST, A, "255.255.255.255", ZERO_MAC, "10.0.0.2"), "sender_ip_broadcast"),
        (arp_frame(REQUEST, A, "224.0.0.1", ZERO_MAC, "10.0.0.2"), "sender_ip_multicast"),
        (arp_frame(REQUEST, A, "127.0.0.1", ZERO_MAC, "10.0.0.2"), "sender_ip_loopback"),
        (arp_frame(REPLY, A, "0.0.0.0", B, "10.0.0.2"), "reply_without_sender_ip"),
        (arp_frame(3, A, "10.0.0.1", ZERO_MAC, "10.0.0.2"), "bad_opcode"),
    ],
)
def test_invalid_frames_name_their_problem(frame: bytes, problem: str) -> None:
    out = eth(frame)
    assert isinstance(out, ArpFrame) and out.kind is ArpKind.INVALID and out.problem == problem


def test_bad_lengths_and_truncation_are_invalid_not_errors() -> None:
    good = arp_frame(REQUEST, A, "10.0.0.1", ZERO_MAC, "10.0.0.2", pad=False)
    wrong_hln = good[:18] + b"\x08" + good[19:]
    out = eth(wrong_hln)
    assert isinstance(out, ArpFrame) and out.problem == "not_ethernet_ipv4"
    out = eth(good[:30])
    assert isinstance(out, ArpFrame) and out.problem == "truncated"
    assert eth(good[:10]) is SkipReason.TRUNCATED_LINK_HEADER
    assert eth(good[:12] + b"\x08\x00" + good[14:]) is SkipReason.NOT_ARP
    assert Decoder("x", 105).decode(good) is SkipReason.UNSUPPORTED_LINK


def test_cache_returns_same_result_and_survives_floods() -> None:
    decoder = Decoder("eth0", DLT_EN10MB)
    frame = announcement("10.0.0.1", A)
    assert decoder.decode_cached(frame) is decoder.decode_cached(frame)
    for i in range(20000):  # never-repeating frames switch the cache to bypass
        out = decoder.decode_cached(announcement(i + 1, A))
        assert isinstance(out, ArpFrame) and out.spa == i + 1
    assert decoder.decode_cached(frame) == decoder.decode(frame)


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=120), st.sampled_from([DLT_EN10MB, DLT_LINUX_SLL, DLT_LINUX_SLL2]))
def test_random_bytes_never_raise(data: bytes, linktype: int) -> None:
    out = Decoder("eth0", linktype).decode(data)
    assert isinstance(out, ArpFrame | SkipReason)


@settings(max_examples=3000, deadline=None)
@given(st.integers(0, 59), st.integers(0, 255), st.integers(1, 4))
def test_mutated_arp_frames_never_raise(position: int, value: int, cut: int) -> None:
    frame = bytearray(arp_frame(REQUEST, A, "10.0.0.1", ZERO_MAC, "10.0.0.2", vlan=7))
    frame[position % len(frame)] = value
    data = bytes(frame[: len(frame) - cut * (position % 7)])
    out = Decoder("eth0", DLT_EN10MB).decode(data)
    assert isinstance(out, ArpFrame | SkipReason)
