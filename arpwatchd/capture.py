"""libpcap through pcapy-ng: live handles and capture files; the only module that imports pcapy.

Reads are batched (`next_batch`: one C call for many frames), filtered in the kernel or in
libpcap by BPF before Python sees a byte, and non-blocking on live handles so the caller's
`select()` timeout doubles as the tracker's clock tick (DESIGN.md section 8). Every libpcap
failure becomes a `CaptureError` with a one-line message naming the interface or file.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
from pathlib import Path
from typing import Any, NamedTuple

import pcapy

from arpwatchd.batch import META, Batch
from arpwatchd.bpf import arp_and_ndp_filter
from arpwatchd.decode import MAX_TAGS, SUPPORTED_LINKTYPES
from arpwatchd.errors import CaptureError, InterfaceUnavailableError


def arp_filter(max_tags: int = MAX_TAGS) -> str:
    """The BPF expression for ARP behind up to `max_tags` VLAN tags (any of `VLAN_TPIDS`), and
    for frames with more tags than that which carry ARP or yet another tag: the decoder
    counts those as `too_many_vlan_tags` instead of the filter dropping them unseen.

    libpcap's `vlan` shifts the offsets for the rest of the expression, even across `or`, so
    each deeper level must nest inside the one before.
    """
    expr = "arp or vlan"
    for _ in range(max_tags + 1):
        expr = f"arp or (vlan and ({expr}))"
    return expr


ARP_FILTER = arp_filter()


def capture_filter() -> str:
    """What the sensor reads: ARP and IPv6 neighbour discovery (RS, RA, NS, NA) in one VLAN
    nest (`ndp.tagged_filter`: two nests joined by `or` would read tagged NDP 4 bytes off)."""
    return arp_and_ndp_filter()

ARP_FILTER_NO_VLAN = "arp"  # Linux cooked captures: libpcap has no VLAN keyword there, and
# the NDP decoder reads Ethernet only (docs/ipv6.md)
_LINK_NAMES = {
    0: "BSD loopback (DLT_NULL)", 6: "Token Ring", 9: "PPP", 10: "FDDI", 12: "raw IP",
    50: "PPP over HDLC", 101: "raw IP", 104: "Cisco HDLC", 105: "802.11", 108: "OpenBSD loopback",
    119: "802.11 Prism", 127: "802.11 radiotap", 163: "802.11 AVS", 192: "PPI",
    228: "raw IPv4", 229: "raw IPv6", 239: "Netlink", 253: "Linux netlink",
}
"""Link types met in the field that carry no Ethernet ARP (tun devices, Wi-Fi monitor mode,
loopback captures), named as Wireshark names them."""
_IFF_UP = 0x1
_IFF_LOOPBACK = 0x8


class CaptureStats(NamedTuple):
    """libpcap's counters of a live handle (a NamedTuple: cheaper to define than a frozen
    dataclass, and every replay imports this module)."""

    received: int
    dropped: int
    interface_dropped: int


def _message(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    if "ermission" in text or "not permitted" in text:
        text += " (capturing needs root or CAP_NET_RAW and CAP_NET_ADMIN)"
    return text


_NO_SUCH_DEVICE = -5
_IFACE_NOT_UP = -9
_ACTIVATE_ERRORS = {
    -5: "no such interface",
    -8: "permission denied (capturing needs root or CAP_NET_RAW and CAP_NET_ADMIN)",
    -9: "the interface is down",
    -7: "not allowed to enable promiscuous mode (set capture.promiscuous: false)",
}


def _activate_error(status: int) -> str:
    return _ACTIVATE_ERRORS.get(status, f"libpcap could not activate it (error {status})")


def check_linktype(name: str, linktype: int) -> None:
    """Refuses a link type the sensor cannot read ARP from, before libpcap's filter would
    (its "expression rejects all packets" names no cause; a Wi-Fi capture it even accepts).

    Raises:
        CaptureError: naming the interface or file and the link type.
    """
    if linktype not in SUPPORTED_LINKTYPES:
        kind = _LINK_NAMES.get(linktype, f"{linktype}")
        raise CaptureError(f"{name}: link type {kind} is not supported "
                           f"(Ethernet, Linux cooked capture only)")


def _set_filter(reader: Any, name: str) -> None:
    try:
        reader.setfilter(capture_filter())
    except pcapy.PcapError:
        try:
            reader.setfilter(ARP_FILTER_NO_VLAN)
        except pcapy.PcapError as exc:
            raise CaptureError(f"{name}: cannot set the ARP filter: {_message(exc)}") from None


class LiveCapture:
    """A non-blocking live handle on one interface."""

    def __init__(
        self,
        interface: str,
        snaplen: int = 256,
        buffer_mib: int = 32,
        promiscuous: bool = True,
        timeout_ms: int = 10,
    ) -> None:
        self.name = interface
        try:
            reader = pcapy.create(interface)
            reader.set_snaplen(snaplen)
            reader.set_promisc(1 if promiscuous else 0)
            reader.set_timeout(timeout_ms)
            reader.set_buffer_size(buffer_mib << 20)
            status = reader.activate()
            if status is not None and status < 0:
                unavailable = status in (_NO_SUCH_DEVICE, _IFACE_NOT_UP)
                raise (InterfaceUnavailableError if unavailable else CaptureError)(
                    f"{interface}: cannot capture: {_activate_error(status)}")
            check_linktype(interface, reader.datalink())
            _set_filter(reader, interface)
            reader.setnonblock(1)
        except pcapy.PcapError as exc:
            raise CaptureError(f"{interface}: cannot capture: {_message(exc)}") from None
        self._reader = reader
        self.linktype: int = reader.datalink()

    def fileno(self) -> int:
        return int(self._reader.getfd())

    def read_batch(self, max_frames: int) -> Batch:
        """Frames waiting now (possibly none); never blocks."""
        try:
            data, meta = self._reader.next_batch(max_frames)
        except pcapy.PcapError as exc:
            raise CaptureError(f"{self.name}: capture failed: {_message(exc)}") from None
        return Batch(data, meta)

    def stats(self) -> CaptureStats:
        try:
            received, dropped, if_dropped = self._reader.stats()
        except pcapy.PcapError:
            return CaptureStats(0, 0, 0)
        return CaptureStats(received, dropped, if_dropped)

    def send(self, frame: bytes) -> None:
        try:
            self._reader.sendpacket(frame)
        except pcapy.PcapError as exc:
            raise CaptureError(f"{self.name}: cannot send: {_message(exc)}") from None

    def close(self) -> None:
        self._reader.close()


class FileCapture:
    """A pcap or pcapng file, read in batches; a truncated or corrupt tail keeps what came before.

    After `read_batch` returns an empty batch, `error` says why the file ended early (or is
    None at a clean end of file); `frames_read` counts the frames handed out.
    """

    def __init__(self, path: str) -> None:
        self.name = path
        self._reader = self._open(path)
        self.linktype: int = self._reader.datalink()
        self.frames_read = 0
        self.error: str | None = None
        self._per_frame = False
        self._bytes_out = 0
        """Bytes of the records handed out (frames and their 16-byte record headers)."""

    @staticmethod
    def _open(path: str) -> Any:
        try:
            reader = pcapy.open_offline(path)
        except pcapy.PcapError as exc:
            raise CaptureError(f"{path}: cannot read capture: {_message(exc)}") from None
        check_linktype(path, reader.datalink())
        _set_filter(reader, path)
        return reader

    def read_batch(self, max_frames: int) -> Batch:
        if self.error is not None:
            return Batch(b"", b"")
        if self._per_frame:
            return self._read_one()
        try:
            data, meta = self._reader.next_batch(max_frames)
        except pcapy.PcapError:
            # next_batch loses the frames of a batch that hits a damaged record: reopen and
            # re-read from the last good frame one at a time to keep every readable frame.
            self._reader = self._open(self.name)
            for _ in range(self.frames_read):
                self._reader.next()
            self._per_frame = True
            return self._read_one()
        batch = Batch(data, meta)
        self.frames_read += len(batch)
        self._bytes_out += len(data) + len(meta)
        return batch

    def filtered_share(self) -> float:
        """The share of the file read so far that the BPF filter dropped: near 0 for an ARP
        capture, 0.98 for a mirror port's. libpcap reads the file through stdio, so the
        position is ahead of what it parsed by at most one buffer; 0 when it cannot be told
        (a damaged file read frame by frame, a platform without the descriptor)."""
        if self._per_frame or self.error is not None:
            return 0.0
        try:
            position = os.lseek(self._reader.getfd(), 0, os.SEEK_CUR)
        except (OSError, pcapy.PcapError):
            return 0.0
        return max(0.0, 1.0 - self._bytes_out / position) if position > 0 else 0.0

    def _read_one(self) -> Batch:
        try:
            header, data = self._reader.next()
        except pcapy.PcapError as exc:
            self.error = f"{self.name}: damaged after frame {self.frames_read}: {_message(exc)}"
            return Batch(b"", b"")
        if header is None:
            return Batch(b"", b"")
        sec, usec = header.getts()
        self.frames_read += 1
        return Batch(data, META.pack(sec, usec, 0, len(data)))

    def close(self) -> None:
        self._reader.close()


class Prefetcher:
    """Reads a capture file's batches on a thread, a few ahead of the sensor.

    libpcap's reading and BPF filtering run in C with the GIL released, so on a second core
    they overlap the sensor's Python work instead of adding to it (a mirror-port file where
    98 % of the frames are filtered out spends a third of its replay there). Batches come out
    in file order; the last one is empty, and `source.error` is final once it has come out.
    """

    DEPTH = 4

    def __init__(self, source: FileCapture, max_frames: int) -> None:
        self.source = source
        self._batches: queue.Queue[Batch | BaseException] = queue.Queue(self.DEPTH)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(max_frames,),
                                        name=f"prefetch {source.name}", daemon=True)
        self._thread.start()

    def _read(self, max_frames: int) -> None:
        try:
            while not self._stop.is_set():
                batch = self.source.read_batch(max_frames)
                self._batches.put(batch)
                if not batch:
                    return
        except BaseException as exc:  # handed to the reading thread, which raises it
            self._batches.put(exc)

    def read_batch(self) -> Batch:
        item = self._batches.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        """Stops the thread (the file itself stays open: `source.close()`)."""
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._batches.get(timeout=0.05)
            except queue.Empty:
                continue
        self._thread.join()


def interface_mac(interface: str) -> bytes | None:
    """The interface's own MAC (Linux sysfs), or None when it has none or does not exist."""
    try:
        text = (Path("/sys/class/net") / interface / "address").read_text().strip()
        mac = bytes.fromhex(text.replace(":", ""))
    except (OSError, ValueError):
        return None
    return mac if len(mac) == 6 else None


def interface_index(interface: str) -> int | None:
    try:
        return socket.if_nametoindex(interface)
    except OSError:
        return None


def interface_up(interface: str) -> bool:
    """Administratively up with a carrier (Linux sysfs); True when it cannot be told."""
    base = Path("/sys/class/net") / interface
    try:
        flags = int((base / "flags").read_text(), 16)
        operstate = (base / "operstate").read_text().strip()
    except (OSError, ValueError):
        return True
    return bool(flags & _IFF_UP) and operstate != "down"


def default_interface() -> str | None:
    """The first interface that is up and not loopback (Linux sysfs), as `run` without -i uses."""
    root = Path("/sys/class/net")
    try:
        names = sorted(p.name for p in root.iterdir())
    except OSError:
        return None
    for name in names:
        try:
            flags = int((root / name / "flags").read_text(), 16)
        except (OSError, ValueError):
            continue
        if flags & _IFF_UP and not flags & _IFF_LOOPBACK:
            return name
    return None
