"""Two Prosody servers federating over s2s on loopback (scripts/prosody-pair-env.sh), mixd attached
to one of them, and slixmpp clients on either: the helpers of test_federation.py and of the DMUC
measurements (tests/dmuc/).

Server A serves `alpha.test` (components `conference.alpha.test`, `mix.alpha.test`), server B
`beta.test` (components `mirror.beta.test`, `mix.beta.test`). Each pair gets loopback addresses of
its own (127.x.y.2 and 127.x.y.3, standard ports), so pairs of concurrent test runs do not meet.
"""
import asyncio
import gc
import os
import random
import socket
import subprocess
import tempfile
import uuid

import slixmpp

from conftest import MIXD, REPO, SECRET, Mixd, make_client

PORTS = (5222, 5269, 5347)  # c2s, s2s, component: the same on both servers


def _listening(addr: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((addr, port)) == 0


def pick_addresses() -> tuple[str, str]:
    """Two loopback addresses 127.x.y.2 and 127.x.y.3 where nothing listens on the pair's ports."""
    for _ in range(50):
        x, y = random.randint(16, 250), random.randint(1, 250)
        a, b = f"127.{x}.{y}.2", f"127.{x}.{y}.3"
        if not any(_listening(h, p) for h in (a, b) for p in PORTS):
            return a, b
    raise RuntimeError("no free pair of loopback addresses found")


class Side:
    """One server of the pair: its domain, address and component domains."""

    def __init__(self, domain: str, addr: str, muc: str, mix: str):
        self.domain, self.addr, self.muc, self.mix = domain, addr, muc, mix
        self.c2s_port, self.s2s_port, self.component_port = PORTS

    def jid(self, user: str, resource: str | None = None) -> str:
        return f"{user}@{self.domain}" + (f"/{resource}" if resource else "")


class Pair:
    """Both servers, started with `start()` and stopped with `stop()`."""

    def __init__(self, users=("alice", "bob", "carol", "dave"), a_users=(), b_users=(),
                 addrs: tuple[str, str] | None = None, log_level: str = "info"):
        self.dir = tempfile.mkdtemp(prefix="prosody-pair-")
        a_addr, b_addr = addrs or pick_addresses()
        self.a = Side("alpha.test", a_addr, "conference.alpha.test", "mix.alpha.test")
        self.b = Side("beta.test", b_addr, "mirror.beta.test", "mix.beta.test")
        self.env = dict(os.environ, A_ADDR=a_addr, B_ADDR=b_addr, COMPONENT_SECRET=SECRET,
                        USERS=" ".join(users), A_USERS=" ".join(a_users), B_USERS=" ".join(b_users),
                        PROSODY_LOG_LEVEL=log_level)

    def run(self, cmd: str):
        r = subprocess.run(["bash", str(REPO / "scripts" / "prosody-pair-env.sh"), cmd, self.dir],
                           env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            raise RuntimeError(f"prosody-pair-env.sh {cmd} failed:\n{r.stdout.decode(errors='replace')}")

    def start(self):
        self.run("start")

    def stop(self):
        self.run("stop")

    def log(self, side: str) -> str:
        with open(os.path.join(self.dir, side, "prosody.log"), errors="replace") as f:
            return f.read()


class MixdOn(Mixd):
    """The built mixd attached to one server of the pair (conftest.Mixd's HTTP and stop)."""

    def __init__(self, side: Side, mix: str | None = None, muc: str | None = None,
                 log: str = "info,sqlx=warn", extra_env: dict | None = None):
        self.dir = tempfile.mkdtemp(prefix="mixd-")
        from conftest import free_port
        self.http_port = free_port()
        env = {
            "PATH": os.environ.get("PATH", ""),
            "MIXD_SERVER": f"{side.addr}:{side.component_port}",
            "MIXD_MIX_DOMAIN": mix or side.mix,
            "MIXD_MUC_DOMAIN": muc or side.muc,
            "MIXD_SECRET": SECRET,
            "MIXD_DATA_DIR": os.path.join(self.dir, "data"),
            "MIXD_HTTP": f"127.0.0.1:{self.http_port}",
            "MIXD_LOG": log,
            **(extra_env or {}),
        }
        if not MIXD.exists():
            raise RuntimeError(f"{MIXD} not built (cargo build)")
        self.log = open(os.path.join(self.dir, "mixd.log"), "wb")
        self.proc = subprocess.Popen([str(MIXD)], env=env, stdout=self.log, stderr=subprocess.STDOUT)


async def login(side: Side, user: str, resource: str | None = None, muc: bool = True,
                presence: bool = True) -> slixmpp.ClientXMPP:
    """A client of `side` logged in as user (password = name) that keeps what it receives in
    `inbox` (with `arrived` set on each stanza); with xep_0045 as `c.muc` if muc."""
    c = make_client(side.jid(user, resource or f"fed-{uuid.uuid4().hex[:6]}"), user)
    if muc:
        c.register_plugin("xep_0045")
        c.muc = c.plugin["xep_0045"]
    c.inbox = []
    c.arrived = asyncio.Event()

    def keep(st, c=c):
        if getattr(st, "name", None) in ("message", "presence", "iq"):
            c.inbox.append(st)
            c.arrived.set()
        return st

    c.add_filter("in", keep)
    started = asyncio.get_running_loop().create_future()
    c.add_event_handler("session_start", lambda _e: started.done() or started.set_result(True))
    c.add_event_handler("failed_auth", lambda e: started.done() or started.set_exception(RuntimeError(e)))
    c.connect(side.addr, side.c2s_port)
    await asyncio.wait_for(started, 15)
    if presence:
        c.send_presence()
    return c


async def logout(clients):
    for c in clients:
        try:
            await asyncio.wait_for(c.disconnect(), 5)
        except Exception:  # noqa: BLE001  (best effort at teardown)
            pass


async def wait_until(cond, timeout: float, what: str, clients=()):
    """Waits until cond() is true (re-checked whenever one of `clients` receives a stanza, and
    every 50 ms)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() >= end:
            raise AssertionError(f"not within {timeout}s: {what}")
        for c in clients:
            c.arrived.clear()
        await asyncio.sleep(0.05)


def groupchat_bodies(c, room: str) -> list[str]:
    """Bodies of the live groupchat messages (no delayed history) c received from room."""
    out = []
    for s in c.inbox:
        if (s.name == "message" and s["type"] == "groupchat" and s["from"].bare == room
                and s["body"] and s.xml.find("{urn:xmpp:delay}delay") is None):
            out.append(s["body"])
    return out


def new_body(tag: str = "m") -> str:
    return f"{tag}-{uuid.uuid4().hex[:12]}"


def run_in_new_loop(coro):
    """Runs coro to the end in an event loop of its own, then ends the tasks slixmpp leaves
    behind after disconnecting and closes the loop."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.run_until_complete(asyncio.sleep(0.2))
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for t in pending:
            t.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        # Clients nobody holds any more go now, while their loop is open (their __del__
        # schedules on it).
        gc.collect()
        loop.close()
