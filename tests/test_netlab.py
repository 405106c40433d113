"""Tests of the namespace lab, and the Linux ARP facts that DESIGN.md relies on.

The ``live`` tests each measure one kernel behaviour in a fresh lab and assert it, so a kernel
that behaves differently fails here with the capture in the message. tests/LAB_NOTES.md says
what was measured and what it means for arpwatchd. Addresses: 192.0.2.0/24, 198.51.100.0/24
and 10.99.0.0/16, inside the lab's namespaces only.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import netlab
import pytest
from netlab import (
    ARP_REPLY,
    ARP_REQUEST,
    BROADCAST,
    ZERO_MAC,
    Lab,
    announcement,
    arp_frame,
    parse_arp,
    probe,
    reply,
)

OWNER, VICTIM, MALLORY = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03"
FAKE_X, FAKE_Y = "02:00:00:00:00:aa", "02:00:00:00:00:bb"
OWNER_IP, VICTIM_IP, MALLORY_IP = "192.0.2.1", "192.0.2.2", "192.0.2.3"
LOCKTIME = 1.0  # net.ipv4.neigh.<dev>.locktime = 100 (USER_HZ)
AFTER_LOCKTIME = 1.2


def three_hosts(lab: Lab) -> tuple[netlab.Host, netlab.Host, netlab.Host]:
    """Owner, victim (with a fresh, locktime-expired cache entry for the owner), mallory."""
    owner = lab.add_host("o", OWNER, [OWNER_IP])
    victim = lab.add_host("v", VICTIM, [VICTIM_IP])
    mallory = lab.add_host("m", MALLORY, [MALLORY_IP])
    assert victim.resolve(OWNER_IP) == OWNER
    return owner, victim, mallory


def mac_after(
    sender: netlab.Host, victim: netlab.Host, ip: str, frames: list[bytes], expect: str | None
) -> str | None:
    """Send ``frames`` from ``sender``; the MAC ``victim`` then has for ``ip``, once it is
    ``expect`` or a second has passed (a loaded machine may hand the frames to ksoftirqd)."""
    sender.send_frames(frames)
    deadline = time.monotonic() + 1.0
    while (mac := victim.neigh(ip)) != expect and time.monotonic() < deadline:
        time.sleep(0.02)
    return mac


# -- pure: frame building and reading ------------------------------------------------------


def test_arp_frame_layout_and_parse_roundtrip() -> None:
    frame = arp_frame(ARP_REPLY, MALLORY, VICTIM, FAKE_X, OWNER_IP, VICTIM, VICTIM_IP)
    assert len(frame) == 60
    assert frame[:14] == bytes.fromhex("020000000002 020000000003 0806")
    assert frame[14:22] == bytes.fromhex("0001 0800 06 04 0002".replace(" ", ""))
    packet = parse_arp(frame)
    assert packet is not None
    assert (packet.eth_src, packet.eth_dst, packet.vlan, packet.op) == (MALLORY, VICTIM, None, 2)
    assert (packet.sha, packet.spa, packet.tha, packet.tpa) == (FAKE_X, OWNER_IP, VICTIM, VICTIM_IP)

    tagged = announcement(OWNER, OWNER_IP, vlan=10)
    assert len(tagged) == 64 and tagged[12:16] == bytes.fromhex("8100000a")
    parsed = parse_arp(tagged)
    assert parsed is not None and parsed.vlan == 10 and parsed.gratuitous
    qinq = tagged[:12] + bytes.fromhex("88a80064") + tagged[12:]
    assert (outer := parse_arp(qinq)) is not None and outer.vlan == 100

    assert (p := parse_arp(probe(OWNER, OWNER_IP))) is not None
    assert p.spa == "0.0.0.0" and not p.gratuitous and p.tha == ZERO_MAC
    assert parse_arp(frame[:40]) is None  # truncated
    assert parse_arp(frame[:12] + b"\x08\x00" + frame[14:]) is None  # IPv4, not ARP


def test_read_pcap_both_resolutions(tmp_path: Path) -> None:
    frame = announcement(OWNER, OWNER_IP)
    for magic, scale in ((0xA1B2C3D4, 1e-6), (0xA1B23C4D, 1e-9)):
        path = tmp_path / f"{magic:x}.pcap"
        header = magic.to_bytes(4, "little") + bytes.fromhex("02000400") + bytes(8)
        header += (65535).to_bytes(4, "little") + (1).to_bytes(4, "little")
        record = (7).to_bytes(4, "little") + (500).to_bytes(4, "little")
        record += len(frame).to_bytes(4, "little") * 2
        path.write_bytes(header + record + frame)
        assert netlab.read_pcap(path) == [(7 + 500 * scale, frame)]


def test_lab_available_says_why_not(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert netlab.lab_available.__wrapped__() == (
        False,
        "live lab needs root (network namespaces, raw sockets)",
    )
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda tool: None if tool == "arping" else tool)
    ok, reason = netlab.lab_available.__wrapped__()
    assert not ok and reason.startswith("live lab needs arping")


# -- the lab itself ------------------------------------------------------------------------


@pytest.mark.live
def test_lab_names_isolation_and_teardown() -> None:
    root_links_before = subprocess.run(
        ["ip", "-o", "link"], capture_output=True, text=True, check=True
    ).stdout
    with pytest.raises(RuntimeError, match="boom"), Lab() as lab:
        host = lab.add_host("longname", OWNER, [OWNER_IP], vlan=None)
        names = [lab.bridge, host.dev, host.port]
        assert all(len(n) <= 15 and n.startswith(lab.id) for n in names), names
        assert lab.sensor_cmd(["true"]) == ["ip", "netns", "exec", lab.sensor_ns, "true"]
        lab.sensor_run(["ip", "link", "show", "dev", lab.bridge])  # the bridge is in there
        assert host.ips == [OWNER_IP]
        namespaces = [lab.sensor_ns, host.ns]
        sleeper = host.popen(["sleep", "60"])
        raise RuntimeError("boom")
    assert sleeper.poll() is not None
    assert not any(Path("/run/netns", ns).exists() for ns in namespaces)
    root_links_after = subprocess.run(
        ["ip", "-o", "link"], capture_output=True, text=True, check=True
    ).stdout
    assert lab.id not in root_links_after
    assert len(root_links_before.splitlines()) == len(root_links_after.splitlines())


@pytest.mark.live
def test_reaper_deletes_namespaces_of_dead_runs_only() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale_id = f"aw{secrets.token_hex(2)}"
    ns = f"{stale_id}-s"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    netlab.REGISTRY_DIR.mkdir(parents=True, exist_ok=True)
    record = netlab.REGISTRY_DIR / f"{stale_id}.json"
    record.write_text(json.dumps({"pid": dead.pid, "start": "1", "namespaces": [ns]}))
    with Lab() as lab:  # entering reaps
        assert not Path("/run/netns", ns).exists()
        assert not record.exists()
        mine = json.loads((netlab.REGISTRY_DIR / f"{lab.id}.json").read_text())
        assert mine["pid"] == os.getpid() and lab.sensor_ns in mine["namespaces"]
        assert netlab.reap_stale_labs() == []  # a live owner's lab is left alone
        assert Path("/run/netns", lab.sensor_ns).exists()


@pytest.mark.live
def test_host_helpers(lab: Lab) -> None:
    a = lab.add_host("a", OWNER, [OWNER_IP])
    b = lab.add_host("b", VICTIM, [VICTIM_IP, "192.0.2.12/24"])
    assert (a.ip, b.ips) == (OWNER_IP, [VICTIM_IP, "192.0.2.12"])
    assert a.arping_request("192.0.2.12", source=OWNER_IP) == 1
    assert a.neigh("192.0.2.12") is None  # arping's reply went to its socket, not the kernel
    b.del_ip("192.0.2.12")
    assert b.ips == [VICTIM_IP]
    assert a.arping_request("192.0.2.12") == 0
    assert a.resolve(VICTIM_IP) == VICTIM == a.neigh(VICTIM_IP)
    a.flush_neigh()
    assert a.neigh_entry(VICTIM_IP) is None
    b.link_down()
    assert a.resolve(VICTIM_IP, timeout=0.3) is None
    b.link_up()
    with lab.capture() as cap:
        a.send_frames([announcement(OWNER, "192.0.2.99")], count=3, interval=0.1)
    stamps = [p.ts for p in cap.arps() if p.spa == "192.0.2.99"]
    assert len(stamps) == 3 and 0.08 < stamps[2] - stamps[1] < 0.5


@pytest.mark.live
def test_kernel_defaults_in_a_fresh_namespace(lab: Lab) -> None:
    """Labs start from the kernel's built-in defaults, not the machine's sysctls."""
    host = lab.add_host("h", OWNER, [OWNER_IP])
    keys = [
        f"net.ipv4.neigh.{host.dev}.locktime",
        "net.ipv4.conf.all.arp_accept",
        "net.ipv4.conf.all.arp_notify",
        "net.ipv4.conf.all.accept_local",
        "net.ipv4.conf.all.arp_ignore",
        "net.ipv4.conf.all.arp_announce",
    ]
    values = host.run(["sysctl", "-n", *keys]).stdout.split()
    assert values == ["100", "0", "0", "0", "0", "0"], dict(zip(keys, values, strict=False))
    # no per-namespace "default" neighbour parameters: set locktime per device in a lab
    assert host.run(["sysctl", "net.ipv4.neigh.default.locktime"], check=False).returncode != 0


@pytest.mark.live
def test_bridge_with_ageing_zero_is_a_mirror() -> None:
    """A port of a flooding bridge sees others' unicast; a learning bridge's port does not.
    On the bridge device itself only a promiscuous capture sees others' unicast."""
    seen: dict[tuple[int, str], set[int]] = {}
    for ageing in (0, 30000):
        with Lab(ageing_time=ageing) as lab:
            a = lab.add_host("a", OWNER, [OWNER_IP])
            b = lab.add_host("b", VICTIM, [VICTIM_IP])
            c = lab.add_host("c", MALLORY, [MALLORY_IP])
            assert a.resolve(VICTIM_IP) == VICTIM  # a learning bridge now knows a and b
            frames = [reply(MALLORY, VICTIM_IP, OWNER, OWNER_IP), announcement(MALLORY, MALLORY_IP)]
            captures = {
                "port": b.capture(),
                "bridge": lab.capture(),
                "bridge -p": lab.capture(promisc=False),
            }
            for where, capture in captures.items():
                with capture as cap:  # one at a time: a promiscuous one would affect "-p"
                    c.send_frames(frames)
                seen[(ageing, where)] = {p.op for p in cap.arps() if p.sha == MALLORY}
    both, broadcast_only = {ARP_REQUEST, ARP_REPLY}, {ARP_REQUEST}
    assert seen == {
        (0, "port"): both,
        (0, "bridge"): both,
        (0, "bridge -p"): broadcast_only,
        (30000, "port"): broadcast_only,
        (30000, "bridge"): both,
        (30000, "bridge -p"): broadcast_only,
    }


@pytest.mark.live
def test_trunk_same_ip_in_two_vlans(lab: Lab) -> None:
    ok, reason = netlab.vlan_available()
    if not ok:
        pytest.skip(reason)
    a10 = lab.add_host("a10", "02:00:00:00:10:01", ["10.99.0.1"], vlan=10)
    a20 = lab.add_host("a20", "02:00:00:00:20:01", ["10.99.0.1"], vlan=20)
    b10 = lab.add_host("b10", "02:00:00:00:10:02", ["10.99.0.2"], vlan=10)
    b20 = lab.add_host("b20", "02:00:00:00:20:02", ["10.99.0.2"], vlan=20)
    plain = lab.add_host("u", "02:00:00:00:00:99", ["10.99.0.1"])  # untagged, same IP again
    with lab.capture() as cap:
        assert b10.resolve("10.99.0.1") == a10.mac
        assert b20.resolve("10.99.0.1") == a20.mac
        assert plain.resolve("10.99.0.2", timeout=1.5) is None  # untagged sees neither VLAN
        a10.send_frames([announcement(a10.mac, "10.99.0.1", vlan=30)])  # pre-tagged: as is
    replies = {(p.vlan, p.sha) for p in cap.arps() if p.op == ARP_REPLY}
    assert replies == {(10, a10.mac), (20, a20.mac)}, cap.text()
    requests = {(p.vlan, p.sha) for p in cap.arps() if p.op == ARP_REQUEST}
    assert {(10, b10.mac), (20, b20.mac), (None, plain.mac), (30, a10.mac)} <= requests
    assert all(f[12:14] != f[16:18] for _, f in cap.frames), "double tag"


@pytest.mark.live
def test_pcapy_captures_tagged_arp_and_sends_from_the_bridge(lab: Lab) -> None:
    """What arpwatchd will do in the sensor namespace: pcapy-ng (its bundled libpcap) with the
    filter ``arp or (vlan and arp)`` on the bridge gets 802.1Q tags back in the bytes, and
    ``sendpacket`` on the bridge reaches every host."""
    pytest.importorskip("pcapy")
    ok, reason = netlab.vlan_available()
    if not ok:
        pytest.skip(reason)
    reader = (
        "import sys, time, pcapy\n"
        "r = pcapy.open_live(sys.argv[1], 65535, 1, 100)\n"
        "r.setfilter(sys.argv[2]); r.setnonblock(1)\n"
        "print('ready', flush=True)\n"
        "end = time.monotonic() + 3\n"
        "while time.monotonic() < end:\n"
        "    hdr, data = r.next()\n"
        "    if data: print(data.hex(), flush=True)\n"
        "    else: time.sleep(0.01)\n"
    )
    sender = (
        "import sys, pcapy\n"
        "pcapy.open_live(sys.argv[1], 65535, 0, 100).sendpacket(bytes.fromhex(sys.argv[2]))\n"
    )
    a = lab.add_host("a", OWNER, ["10.99.0.1"], vlan=10)
    b = lab.add_host("b", VICTIM, ["192.0.2.2"])
    proc = lab.sensor_popen(
        [sys.executable, "-c", reader, lab.bridge, netlab.ARP_FILTER], stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    assert select.select([proc.stdout], [], [], 10.0)[0], "pcapy reader did not start"
    assert proc.stdout.readline() == b"ready\n"
    a.send_frames([announcement(a.mac, "10.99.0.1")])
    defense = announcement(FAKE_X, "192.0.2.9", eth_src=lab.sensor_mac)
    with b.capture() as cap:
        lab.sensor_run([sys.executable, "-c", sender, lab.bridge, defense.hex()])
    out, _ = proc.communicate(timeout=10)
    got = [parse_arp(bytes.fromhex(line)) for line in out.decode().split()]
    assert any(p and p.vlan == 10 and p.sha == a.mac for p in got), got
    assert [p.sha for p in cap.arps()] == [FAKE_X]


# -- Linux ARP facts ------------------------------------------------------------------------


def timed_attempts(lab: Lab, attempt: Callable[[netlab.Capture], bool], tries: int = 5) -> None:
    """Runs a scenario whose meaning depends on sub-second timing until one run had the timing
    it needs (``attempt`` returns False when the capture shows that load stretched a gap past
    what it tests; it asserts the kernel's behaviour otherwise). Each run starts after locktime.

    Raises:
        AssertionError: no run out of ``tries`` got its timing (a machine too loaded to say).
    """
    for _ in range(tries):
        time.sleep(AFTER_LOCKTIME)  # a lower bound: later is as good
        with lab.capture() as cap:
            timed = attempt(cap)
        if timed:
            return
    raise AssertionError(f"the machine was too loaded for {tries} runs to keep their timing")


def sent_for_owner_ip(cap: netlab.Capture) -> list[float]:
    """Times of the test's frames claiming the owner's address: the owner's own kernel may
    ask for the victim meanwhile (a re-probe, seen under load), and that is not one of them."""
    return [p.ts for p in cap.arps() if p.spa == OWNER_IP and p.eth_src != OWNER]


def wait_mac(host: netlab.Host, ip: str, mac: str, timeout: float = 3.0) -> None:
    netlab.wait_until(lambda: host.neigh(ip) == mac, timeout, f"{host} to have {ip} at {mac}")


@pytest.mark.live
def test_locktime_first_reply_wins_but_gratuitous_and_requests_override(lab: Lab) -> None:
    """Within locktime of its last change, an entry ignores an ordinary competing reply, but not
    a gratuitous request, a gratuitous reply with tha == sha, or a request sent to the victim."""
    _, victim, mallory = three_hosts(lab)
    steps = [
        ("reply X", [reply(FAKE_X, OWNER_IP, VICTIM, VICTIM_IP)], FAKE_X),
        ("reply Y 0.1 s later", [reply(FAKE_Y, OWNER_IP, VICTIM, VICTIM_IP)], FAKE_X),
        ("gratuitous request Y", [announcement(FAKE_Y, OWNER_IP)], FAKE_Y),
        (
            "gratuitous reply X, tha = sha",
            [arp_frame(ARP_REPLY, FAKE_X, BROADCAST, FAKE_X, OWNER_IP, FAKE_X, OWNER_IP)],
            FAKE_X,
        ),
        (
            "gratuitous reply Y, tha = 0",
            [arp_frame(ARP_REPLY, FAKE_Y, BROADCAST, FAKE_Y, OWNER_IP, ZERO_MAC, OWNER_IP)],
            FAKE_X,
        ),
        (
            "request for the victim from Y",
            [arp_frame(ARP_REQUEST, FAKE_Y, BROADCAST, FAKE_Y, OWNER_IP, ZERO_MAC, VICTIM_IP)],
            FAKE_Y,
        ),
    ]

    def attempt(cap: netlab.Capture) -> bool:
        results = [(label, mac_after(mallory, victim, OWNER_IP, frames, expected))
                   for label, frames, expected in steps]
        cap.__exit__()
        stamps = sent_for_owner_ip(cap)
        assert len(stamps) == len(steps), cap.text()
        # the two frames meant to be ignored must come well within locktime of the change
        # before them; under load they may not, and then this run says nothing
        if stamps[1] - stamps[0] >= 0.8 * LOCKTIME or stamps[4] - stamps[3] >= 0.8 * LOCKTIME:
            return False
        assert results == [(label, expected) for label, _, expected in steps], cap.text()
        return True

    timed_attempts(lab, attempt)
    # Past locktime an ordinary reply poisons again. Under load the entry's last update can
    # come later than the test saw it, so a reply ignored once is tried again after locktime.
    poisoned = []
    for _ in range(3):
        time.sleep(AFTER_LOCKTIME)
        poisoned.append(mac_after(mallory, victim, OWNER_IP,
                                  [reply(FAKE_X, OWNER_IP, VICTIM, VICTIM_IP)], FAKE_X))
        if poisoned[-1] == FAKE_X:
            break
    assert poisoned[-1] == FAKE_X, poisoned
    assert mallory.neigh(OWNER_IP) is None


def poisoned_then_defended(lab: Lab, victim: netlab.Host, mallory: netlab.Host) -> None:
    """Mallory's unsolicited reply poisons the victim, then the sensor's announcement for the
    owner puts it back (each waited for in the victim's cache)."""
    mallory.send_frames([reply(MALLORY, OWNER_IP, VICTIM, VICTIM_IP)])
    wait_mac(victim, OWNER_IP, MALLORY)
    lab.sensor_send([announcement(OWNER, OWNER_IP, eth_src=lab.sensor_mac)])
    wait_mac(victim, OWNER_IP, OWNER)


@pytest.mark.live
def test_defense_announcement_at_once_wins_and_is_protected_by_locktime(lab: Lab) -> None:
    """DESIGN section 5: an ARP Announcement for the owner sent from the sensor after an
    intruder's unsolicited reply restores the victim's cache (gratuitous ARP overrides
    locktime); the intruder's next reply inside the following second is then ignored, and
    one after locktime poisons again."""
    _, victim, mallory = three_hosts(lab)
    poison = reply(MALLORY, OWNER_IP, VICTIM, VICTIM_IP)

    def attempt(cap: netlab.Capture) -> bool:
        poisoned_then_defended(lab, victim, mallory)
        mallory.send_frames([poison])  # the sender has finished: the victim has it
        kept = victim.neigh(OWNER_IP)
        cap.__exit__()
        stamps = sent_for_owner_ip(cap)
        assert len(stamps) == 3, cap.text()
        if stamps[2] - stamps[1] >= 0.8 * LOCKTIME:
            return False
        assert kept == OWNER, cap.text()  # within locktime of the defense
        return True

    timed_attempts(lab, attempt)
    time.sleep(AFTER_LOCKTIME)
    mallory.send_frames([poison])
    wait_mac(victim, OWNER_IP, MALLORY)  # re-poisoned once locktime passed


@pytest.mark.live
def test_announcement_that_changes_nothing_does_not_restart_the_lock(lab: Lab) -> None:
    """Issue 14: the lock runs from the entry's last *change*. A second announcement for the
    owner 0.6 s after the one that restored the victim finds the entry on the owner already;
    the intruder's reply 0.6 s after that (1.2 s after the change) poisons again, so a defense
    sent "just in case" protects nothing (arpwatchd.defend spaces answers from answers)."""
    _, victim, mallory = three_hosts(lab)
    poison = reply(MALLORY, OWNER_IP, VICTIM, VICTIM_IP)
    defense = announcement(OWNER, OWNER_IP, eth_src=lab.sensor_mac)

    def attempt(cap: netlab.Capture) -> bool:
        poisoned_then_defended(lab, victim, mallory)
        changed = time.monotonic()
        time.sleep(max(0.0, changed + 0.6 - time.monotonic()))
        lab.sensor_send([defense])  # nothing to change
        time.sleep(max(0.0, changed + 1.2 - time.monotonic()))
        got = mac_after(mallory, victim, OWNER_IP, [poison], MALLORY)
        cap.__exit__()
        stamps = sent_for_owner_ip(cap)
        assert len(stamps) == 4, cap.text()
        _, restored, again, poisoned = stamps
        if not (poisoned - restored >= LOCKTIME + 0.1 and poisoned - again <= 0.8 * LOCKTIME):
            return False
        assert got == MALLORY, cap.text()
        return True

    timed_attempts(lab, attempt)


@pytest.mark.live
def test_owner_ignores_gratuitous_request_for_its_address_unless_accept_local(lab: Lab) -> None:
    owner, _, mallory = three_hosts(lab)
    with lab.capture() as cap:
        mallory.send_frames([announcement(MALLORY, OWNER_IP)])
    assert [p.sha for p in cap.arps()] == [MALLORY], cap.text()
    owner.sysctl(**{"net.ipv4.conf.all.accept_local": 1})
    with lab.capture() as cap:
        mallory.send_frames([announcement(MALLORY, OWNER_IP)])
    answers = [p for p in cap.arps() if p.sha == OWNER]
    assert len(answers) == 1, cap.text()
    answer = answers[0]  # a unicast reply to the announcer: spa = tpa, tha = the announcer
    assert (answer.op, answer.eth_dst, answer.tha) == (ARP_REPLY, MALLORY, MALLORY)
    assert answer.spa == answer.tpa == OWNER_IP


@pytest.mark.live
def test_owner_answers_rfc5227_probe(lab: Lab) -> None:
    owner, _, mallory = three_hosts(lab)
    with lab.capture() as cap:
        mallory.send_frames([probe(MALLORY, OWNER_IP)])
    answers = [p for p in cap.arps() if p.sha == OWNER]
    assert len(answers) == 1, cap.text()
    answer = answers[0]
    assert (answer.op, answer.eth_src, answer.eth_dst) == (ARP_REPLY, OWNER, MALLORY)
    assert (answer.spa, answer.tha, answer.tpa) == (OWNER_IP, MALLORY, "0.0.0.0")
    assert owner.neigh("0.0.0.0") is None


@pytest.mark.live
def test_arping_announce_and_reply_frames(lab: Lab) -> None:
    host = lab.add_host("h", OWNER, [OWNER_IP])
    with lab.capture() as cap:
        host.arping_announce(OWNER_IP, count=1)
        host.arping_reply(OWNER_IP, count=1)
    frames = cap.arps()
    assert [(p.op, p.eth_dst, p.sha, p.spa, p.tha, p.tpa) for p in frames] == [
        (ARP_REQUEST, BROADCAST, OWNER, OWNER_IP, BROADCAST, OWNER_IP),  # -U: tha ff:ff:..
        (ARP_REPLY, BROADCAST, OWNER, OWNER_IP, OWNER, OWNER_IP),  # -A: tha = own MAC
    ], cap.text()
    assert all(len(f) == 42 for _, f in cap.frames)  # unpadded on veth


@pytest.mark.live
def test_link_up_announcement_is_not_seen(lab: Lab) -> None:
    """arp_notify=0 (default): nothing on link up. arp_notify=1: the host sends its gratuitous
    request at link up, it reaches the bridge port, but the bridge drops it (the port is not
    forwarding yet), so no sensor sees it; a new address is not announced, a MAC change is."""
    quiet = lab.add_host("q", OWNER, [OWNER_IP], up=False)
    with lab.capture() as cap:
        quiet.link_up()
    assert cap.arps() == []
    noisy = lab.add_host(
        "n", VICTIM, [VICTIM_IP], up=False, sysctls={"net.ipv4.conf.all.arp_notify": 1}
    )
    with lab.capture(ns=lab.sensor_ns, iface=noisy.port) as port, lab.capture() as bridge:
        noisy.link_up()
    assert [p.tpa for p in port.arps()] == [VICTIM_IP], port.text()
    assert bridge.arps() == [], "link-up announcement was forwarded (a race this kernel lost)"
    with lab.capture() as cap:
        noisy.add_ip("192.0.2.60")
    assert cap.arps() == []  # a new address is not announced, even with arp_notify=1
    with lab.capture() as cap:
        noisy.run(["ip", "link", "set", "dev", noisy.dev, "address", FAKE_X])
    announced = [(p.sha, p.spa, p.tpa) for p in cap.arps()]
    assert announced == [(FAKE_X, ip, ip) for ip in (VICTIM_IP, "192.0.2.60")]  # each address


@pytest.mark.live
def test_arp_accept_decides_learning_from_gratuitous_arp(lab: Lab) -> None:
    _, victim, mallory = three_hosts(lab)
    garp_request = announcement(FAKE_X, "192.0.2.77")
    garp_reply = arp_frame(ARP_REPLY, FAKE_X, BROADCAST, FAKE_X, "192.0.2.78", FAKE_X, "192.0.2.78")
    unsolicited = reply(FAKE_X, "192.0.2.79", VICTIM, VICTIM_IP)
    off_subnet = announcement(FAKE_X, "198.51.100.7")
    asks_victim = arp_frame(
        ARP_REQUEST, FAKE_X, BROADCAST, FAKE_X, "192.0.2.80", ZERO_MAC, VICTIM_IP
    )
    # arp_accept=0: no new entry from gratuitous ARP or unsolicited replies ...
    for frame, ip in (
        (garp_request, "192.0.2.77"),
        (garp_reply, "192.0.2.78"),
        (unsolicited, "192.0.2.79"),
        (off_subnet, "198.51.100.7"),
    ):
        assert mac_after(mallory, victim, ip, [frame], None) is None, ip
    # ... but a request addressed to the victim always creates one
    assert mac_after(mallory, victim, "192.0.2.80", [asks_victim], FAKE_X) == FAKE_X
    victim.sysctl(**{"net.ipv4.conf.all.arp_accept": 1})
    for frame, ip in (
        (garp_request, "192.0.2.77"),
        (garp_reply, "192.0.2.78"),
        (unsolicited, "192.0.2.79"),
        (off_subnet, "198.51.100.7"),
    ):
        assert mac_after(mallory, victim, ip, [frame], FAKE_X) == FAKE_X, ip


@pytest.mark.live
def test_secondary_address_is_arp_sender_when_it_is_the_route_source(lab: Lab) -> None:
    host = lab.add_host("h", OWNER, [OWNER_IP, "192.0.2.5"])
    lab.add_host("p", VICTIM, [VICTIM_IP])
    host.run(["ip", "route", "replace", "192.0.2.0/24", "dev", host.dev, "src", "192.0.2.5"])
    with lab.capture() as cap:
        assert host.resolve(VICTIM_IP) == VICTIM
    requests = [p for p in cap.arps() if p.op == ARP_REQUEST and p.sha == OWNER]
    assert [p.spa for p in requests] == ["192.0.2.5"], cap.text()
