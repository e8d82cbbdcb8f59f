"""What crosses the s2s link between the two servers of a pair: tcpdump on `lo`, filtered to TCP
port 5269 and the pair's two addresses, written to a pcap file; read back, each TCP direction is
reassembled and parsed as an XML stream, so that every top-level element (stanza, dialback
element, stream header) is counted with the time of the segment it started in.

    cap = Capture(a_addr, b_addr, path); cap.start() ... cap.stop()
    report = cap.read()
    report.window(t0, t1)  ->  Window(bytes by direction, segments, stanzas by name)

Times are the capture's (the kernel's wall clock), comparable with time.time().
Needs tcpdump (Debian package `tcpdump`, installed here if missing) and root.
"""
import collections
import shutil
import signal
import socket
import struct
import subprocess
import time
import xml.parsers.expat

S2S_PORT = 5269


def ensure_tcpdump() -> str:
    path = shutil.which("tcpdump")
    if path:
        return path
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    r = subprocess.run(["apt-get", "install", "-y", "-q", "tcpdump"], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:  # a bare image has no package lists yet
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-q", "tcpdump"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
    path = shutil.which("tcpdump")
    if not path:
        raise RuntimeError("tcpdump not found after apt-get install tcpdump")
    return path


class Capture:
    def __init__(self, a_addr: str, b_addr: str, path: str, port: int = S2S_PORT):
        self.a, self.b, self.path, self.port = a_addr, b_addr, path, port
        self.proc = None
        self.stderr = path + ".err"

    def start(self):
        tcpdump = ensure_tcpdump()
        flt = f"tcp port {self.port} and (host {self.a} or host {self.b})"
        # --immediate-mode: each packet to userspace at once (otherwise the packets of the last
        # unfinished ring block are lost when tcpdump is stopped); -U: written at once;
        # -s 0: whole packets; -Z root: keep writing as root.
        self.proc = subprocess.Popen([tcpdump, "-i", "lo", "-n", "--immediate-mode", "-U", "-s", "0",
                                      "-Z", "root", "-w", self.path, flt],
                                     stdout=subprocess.DEVNULL, stderr=open(self.stderr, "wb"))
        # tcpdump prints "listening on lo" once the filter is attached.
        end = time.monotonic() + 10
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tcpdump exited: {open(self.stderr).read()}")
            if "listening on" in open(self.stderr, errors="replace").read():
                return
            time.sleep(0.05)
        raise RuntimeError("tcpdump did not start listening within 10 s")

    def stop(self) -> str:
        """Stops tcpdump; returns its closing lines (packets captured / dropped by kernel)."""
        if self.proc and self.proc.poll() is None:
            time.sleep(0.5)  # let the last packets through
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return open(self.stderr, errors="replace").read()

    def read(self) -> "Report":
        return Report(read_pcap(self.path), self.a, self.b, self.port)


def read_pcap(path: str):
    """(time, src, sport, dst, dport, seq, flags, payload) of each IPv4/TCP packet in a pcap file
    (Ethernet link type, as tcpdump writes for `lo`)."""
    out = []
    with open(path, "rb") as f:
        head = f.read(24)
        if len(head) < 24:
            return out
        magic = struct.unpack("<I", head[:4])[0]
        if magic == 0xA1B2C3D4:
            endian, scale = "<", 1e-6
        elif magic == 0xA1B23C4D:
            endian, scale = "<", 1e-9
        elif magic == 0xD4C3B2A1:
            endian, scale = ">", 1e-6
        else:
            raise ValueError(f"{path}: not a pcap file")
        linktype = struct.unpack(endian + "I", head[20:24])[0]
        if linktype != 1:
            raise ValueError(f"{path}: link type {linktype}, expected Ethernet (1)")
        while True:
            rec = f.read(16)
            if len(rec) < 16:
                break
            sec, frac, incl, _orig = struct.unpack(endian + "IIII", rec)
            data = f.read(incl)
            if len(data) < incl:
                break
            if len(data) < 14 + 20 or data[12:14] != b"\x08\x00":
                continue
            ip = data[14:]
            ihl = (ip[0] & 0x0F) * 4
            total = struct.unpack("!H", ip[2:4])[0]
            if ip[9] != 6:
                continue
            src, dst = socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
            tcp = ip[ihl:total]
            sport, dport, seq = struct.unpack("!HHI", tcp[:8])
            off = (tcp[12] >> 4) * 4
            flags = tcp[13]
            out.append((sec + frac * scale, src, sport, dst, dport, seq, flags, bytes(tcp[off:])))
    return out


Window = collections.namedtuple("Window", "bytes segments stanzas")
# bytes / segments: {"A->B": n, "B->A": n}; stanzas: Counter of (direction, element name)


class Report:
    """The capture, reassembled: byte events (time, direction, n) and element events (time,
    direction, name), in the order they crossed."""

    def __init__(self, packets, a_addr: str, b_addr: str, port: int):
        self.bytes = []     # (t, dir, nbytes) per segment with payload
        self.elements = []  # (t, dir, name) per top-level element
        self.errors = []
        self.connections = 0
        streams = {}
        for t, src, sport, dst, dport, seq, flags, payload in packets:
            if (dst == b_addr and dport == port) or (src == a_addr and sport == port):
                d = "A->B"
            elif (dst == a_addr and dport == port) or (src == b_addr and sport == port):
                d = "B->A"
            else:
                continue
            key = (src, sport, dst, dport)
            st = streams.get(key)
            if flags & 0x02:  # SYN: a new connection (direction) starts at seq+1
                streams[key] = _Stream(d, seq + 1, self)
                if not flags & 0x10:
                    self.connections += 1
                continue
            if not payload:
                continue
            if st is None:  # capture started in the middle of a connection: no parsing
                st = streams[key] = _Stream(d, seq, self, parse=False)
            st.feed(t, seq, payload)

    def window(self, t0: float, t1: float) -> Window:
        b = collections.Counter()
        segs = collections.Counter()
        for t, d, n in self.bytes:
            if t0 <= t < t1:
                b[d] += n
                segs[d] += 1
        stanzas = collections.Counter((d, name) for t, d, name in self.elements if t0 <= t < t1)
        return Window(b, segs, stanzas)


class _Stream:
    """One direction of one TCP connection: payload in sequence order, parsed with expat."""

    def __init__(self, direction: str, seq: int, report: Report, parse: bool = True):
        self.dir, self.next, self.report = direction, seq, report
        self.depth = 0
        self.now = 0.0
        self.parser = None
        if parse:
            self.parser = xml.parsers.expat.ParserCreate()
            self.parser.StartElementHandler = self._start
            self.parser.EndElementHandler = self._end

    def _start(self, name, _attrs):
        if self.depth <= 1:  # the stream header (depth 0) and its children (stanzas)
            self.report.elements.append((self.now, self.dir, name))
        self.depth += 1

    def _end(self, _name):
        self.depth -= 1

    def feed(self, t: float, seq: int, payload: bytes):
        # Loopback does not lose or reorder; drop what was already seen (retransmissions).
        delta = (seq - self.next) & 0xFFFFFFFF
        if delta >= 0x80000000:  # starts before what we have
            skip = (self.next - seq) & 0xFFFFFFFF
            if skip >= len(payload):
                return
            payload = payload[skip:]
        elif delta:
            self.report.errors.append(f"{self.dir}: gap of {delta} bytes in the capture")
            self.parser = None
            self.next = seq
        self.next = (self.next + len(payload)) & 0xFFFFFFFF
        self.report.bytes.append((t, self.dir, len(payload)))
        if self.parser is not None:
            self.now = t
            try:
                self.parser.Parse(payload, False)
            except xml.parsers.expat.ExpatError as e:
                self.report.errors.append(f"{self.dir}: XML: {e}")
                self.parser = None
