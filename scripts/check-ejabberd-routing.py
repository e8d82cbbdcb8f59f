#!/usr/bin/env python3
"""Check that each XEP-0114 component stream only receives its own domain's stanzas.

Run against a server started by scripts/ejabberd-env.sh (or prosody-env.sh): stdlib only.

Phase 1: only the MIX_DOMAIN link is connected; c2s users send messages/iqs/presences
         to both domains. The MIX link must get exactly the MIX_DOMAIN stanzas, and
         nothing addressed to MUC_DOMAIN (which nobody serves).
Phase 2: both links connected (one stream to='MIX_DOMAIN', one to='MUC_DOMAIN');
         every link must get all stanzas of its own domain and none of the other's.
         Also each link sends a message to a user's full JID, which must arrive.

Settings from the same env vars as the env scripts (XMPP_DOMAIN, MIX_DOMAIN,
MUC_DOMAIN, COMPONENT_SECRET, C2S_PORT, COMPONENT_PORT, BIND, XMPP_USERS), or
options (see --help). Exit 0 = routing is per domain, 1 = misrouted/failure.
"""
import argparse
import base64
import hashlib
import os
import socket
import sys
import threading
import time
import uuid
import xml.etree.ElementTree as ET

NS_STREAM = "http://etherx.jabber.org/streams"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"


def esc(s: str) -> str:
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("'", "&apos;").replace('"', "&quot;"))


class Stream:
    """A minimal XMPP stream: send raw XML, read top-level elements."""

    def __init__(self, host, port, name):
        self.name = name
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reset_parser()
        self.closed = False

    def reset_parser(self):
        self.parser = ET.XMLPullParser(events=("start", "end"))
        self.depth = 0
        self.root_attrs = None
        self.pending = []

    def send(self, xml: str):
        self.sock.sendall(xml.encode())

    def _pump(self):
        data = self.sock.recv(65536)
        if not data:
            self.closed = True
            raise EOFError(f"{self.name}: connection closed")
        self.parser.feed(data)
        for ev, el in self.parser.read_events():
            if ev == "start":
                self.depth += 1
                if self.depth == 1:
                    self.root_attrs = dict(el.attrib)
            else:
                self.depth -= 1
                if self.depth == 1:
                    self.pending.append(el)
                elif self.depth == 0:
                    self.closed = True
                    raise EOFError(f"{self.name}: stream closed by server")

    def wait_root(self):
        while self.root_attrs is None:
            self._pump()
        return self.root_attrs

    def next(self, timeout=None):
        """Next top-level element, or None on timeout."""
        self.sock.settimeout(timeout)
        try:
            while not self.pending:
                self._pump()
        except socket.timeout:
            return None
        finally:
            self.sock.settimeout(10)
        return self.pending.pop(0)

    def close(self):
        try:
            self.send("</stream:stream>")
        except OSError:
            pass
        self.sock.close()


def component(host, port, domain, secret):
    s = Stream(host, port, f"component {domain}")
    s.send("<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
           f"xmlns:stream='{NS_STREAM}' to='{esc(domain)}'>")
    sid = s.wait_root().get("id")
    if not sid:
        raise RuntimeError(f"{domain}: no stream id from server")
    digest = hashlib.sha1((sid + secret).encode()).hexdigest()
    s.send(f"<handshake>{digest}</handshake>")
    el = s.next(10)
    if el is None or not el.tag.endswith("handshake"):
        raise RuntimeError(f"{domain}: handshake failed: {ET.tostring(el) if el is not None else 'timeout'}")
    return s


def client(host, port, domain, user, password):
    s = Stream(host, port, f"c2s {user}")

    def open_stream():
        s.send(f"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='{NS_STREAM}' "
               f"to='{esc(domain)}' version='1.0'>")
        s.wait_root()
        feats = s.next(10)
        if feats is None or not feats.tag.endswith("features"):
            raise RuntimeError(f"{user}: no stream features")
        return feats

    feats = open_stream()
    mechs = [m.text for m in feats.iter(f"{{{NS_SASL}}}mechanism")]
    if "PLAIN" not in mechs:
        raise RuntimeError(f"{user}: server offers no PLAIN ({mechs})")
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    s.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{token}</auth>")
    el = s.next(10)
    if el is None or not el.tag.endswith("success"):
        raise RuntimeError(f"{user}: SASL failed: {ET.tostring(el) if el is not None else 'timeout'}")
    s.reset_parser()
    open_stream()
    s.send(f"<iq type='set' id='bind1'><bind xmlns='{NS_BIND}'><resource>routing</resource></bind></iq>")
    while True:
        el = s.next(10)
        if el is None:
            raise RuntimeError(f"{user}: bind timeout")
        if el.get("id") == "bind1":
            jid = el.find(f".//{{{NS_BIND}}}jid")
            if jid is None:
                raise RuntimeError(f"{user}: bind failed: {ET.tostring(el)}")
            s.jid = jid.text
            break
    s.send("<presence/>")
    return s


class Collector(threading.Thread):
    """Reads everything a stream receives into a list."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream, self.got, self.stop = stream, [], False

    def run(self):
        while not self.stop:
            try:
                el = self.stream.next(0.2)
            except (EOFError, OSError):
                return
            if el is not None:
                self.got.append(el)


def send_probes(clients, domains, tag, per_target):
    """Each client sends per_target messages + an iq + a presence to each domain.
    Returns {domain: set(probe ids)}."""
    sent = {d: set() for d in domains}
    for c in clients:
        for d in domains:
            for i in range(per_target):
                pid = f"{tag}-{uuid.uuid4().hex[:10]}"
                c.send(f"<message id='{pid}' to='chan{i}@{d}' type='chat'><body>{pid}</body></message>")
                sent[d].add(pid)
            pid = f"{tag}-{uuid.uuid4().hex[:10]}"
            c.send(f"<iq id='{pid}' type='get' to='{d}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
            sent[d].add(pid)
            pid = f"{tag}-{uuid.uuid4().hex[:10]}"
            c.send(f"<presence id='{pid}' to='room@{d}/nick'/>")
            sent[d].add(pid)
    return sent


def ids_of(elements, tag):
    return {e.get("id") for e in elements if (e.get("id") or "").startswith(tag)}


def main():
    env = os.environ.get
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default=env("BIND", "127.0.0.1").replace("0.0.0.0", "127.0.0.1"))
    ap.add_argument("--c2s-port", type=int, default=int(env("C2S_PORT", "5222")))
    ap.add_argument("--component-port", type=int, default=int(env("COMPONENT_PORT", "5347")))
    ap.add_argument("--domain", default=env("XMPP_DOMAIN", "localhost"))
    ap.add_argument("--mix-domain", default=env("MIX_DOMAIN", "mix.localhost"))
    ap.add_argument("--muc-domain", default=env("MUC_DOMAIN", "muc.localhost"))
    ap.add_argument("--secret", default=env("COMPONENT_SECRET", "mixd-secret"))
    ap.add_argument("--users", default=env("XMPP_USERS", "alice:alice bob:bob carol:carol"))
    ap.add_argument("--per-target", type=int, default=10, help="messages per client per domain")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()

    mix, muc = a.mix_domain, a.muc_domain
    users = [u.split(":", 1) for u in a.users.split()]
    failures = []

    def check(cond, msg):
        if a.verbose or not cond:
            print(("ok   " if cond else "FAIL ") + msg)
        if not cond:
            failures.append(msg)

    clients = [client(a.host, a.c2s_port, a.domain, u, p) for u, p in users]
    client_cols = [Collector(c) for c in clients]
    for c in client_cols:
        c.start()

    # Phase 1: only the MIX link.
    link_mix = component(a.host, a.component_port, mix, a.secret)
    col_mix = Collector(link_mix)
    col_mix.start()
    time.sleep(0.3)
    sent = send_probes(clients, [mix, muc], "p1", a.per_target)
    time.sleep(1.5)
    got = ids_of(col_mix.got, "p1")
    check(got & sent[mix] == sent[mix], f"phase 1: {mix} link got {len(got & sent[mix])}/{len(sent[mix])} of its own stanzas")
    check(not (got & sent[muc]), f"phase 1: {mix} link got {len(got & sent[muc])} stanzas addressed to {muc} "
                                  f"(no {muc} link connected)")

    # Phase 2: both links.
    link_muc = component(a.host, a.component_port, muc, a.secret)
    col_muc = Collector(link_muc)
    col_muc.start()
    time.sleep(0.3)
    sent = send_probes(clients, [mix, muc], "p2", a.per_target)
    # component -> client direction
    for link, d in ((link_mix, mix), (link_muc, muc)):
        link.send(f"<message from='chan@{d}' to='{esc(clients[0].jid)}' id='back-{d}' type='chat'>"
                  f"<body>hello from {d}</body></message>")
    time.sleep(1.5)
    for col, own, other in ((col_mix, mix, muc), (col_muc, muc, mix)):
        got = ids_of(col.got, "p2")
        check(got & sent[own] == sent[own], f"phase 2: {own} link got {len(got & sent[own])}/{len(sent[own])} of its own stanzas")
        check(not (got & sent[other]), f"phase 2: {own} link got {len(got & sent[other])}/{len(sent[other])} "
                                        f"stanzas addressed to {other}")
    back = ids_of(client_cols[0].got, "back-")
    check(back == {f"back-{mix}", f"back-{muc}"}, f"component -> client: {clients[0].jid} got {sorted(back)}")

    for col in [col_mix, col_muc] + client_cols:
        col.stop = True
    for s in [link_mix, link_muc] + clients:
        s.close()

    if failures:
        print(f"routing check FAILED ({len(failures)} problem(s))", file=sys.stderr)
        return 1
    print(f"routing check ok: {mix} and {muc} links each received only their own domain's stanzas")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (RuntimeError, OSError, EOFError) as e:
        print(f"routing check error: {e}", file=sys.stderr)
        sys.exit(2)
