"""Fixtures for interop tests: a private XMPP server (Prosody or ejabberd, from scripts/), the
built mixd attached to it, and slixmpp clients that log in over plaintext c2s on loopback."""
import asyncio
import json
import os
import pathlib
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest
import slixmpp

REPO = pathlib.Path(__file__).resolve().parents[2]
MIXD = pathlib.Path(os.environ.get("MIXD_BIN", REPO / "target" / "debug" / "mixd"))
SECRET = "mixd-secret"
MIX = "mix.localhost"
MUC = "muc.localhost"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, kind: str):
        self.kind = kind
        self.dir = tempfile.mkdtemp(prefix=f"{kind}-")
        self.c2s_port = free_port()
        self.component_port = free_port()
        self.script = REPO / "scripts" / f"{kind}-env.sh"

    def run(self, cmd: str):
        env = dict(os.environ, C2S_PORT=str(self.c2s_port), COMPONENT_PORT=str(self.component_port),
                   COMPONENT_SECRET=SECRET, MIX_DOMAIN=MIX, MUC_DOMAIN=MUC)
        subprocess.run(["bash", str(self.script), cmd, self.dir], env=env, check=True,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


class Mixd:
    def __init__(self, server: Server):
        self.dir = tempfile.mkdtemp(prefix="mixd-")
        self.http_port = free_port()
        env = {
            "PATH": os.environ.get("PATH", ""),
            "MIXD_SERVER": f"127.0.0.1:{server.component_port}",
            "MIXD_MIX_DOMAIN": MIX,
            "MIXD_MUC_DOMAIN": MUC,
            "MIXD_SECRET": SECRET,
            "MIXD_DATA_DIR": os.path.join(self.dir, "data"),
            "MIXD_HTTP": f"127.0.0.1:{self.http_port}",
            "MIXD_LOG": "debug,sqlx=warn",
        }
        self.log = open(os.path.join(self.dir, "mixd.log"), "wb")
        self.proc = subprocess.Popen([str(MIXD)], env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def http(self, method: str, path: str, body: dict | None = None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def wait_healthy(self, timeout=20.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                if self.http("GET", "/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"mixd not healthy: {self.read_log()}")

    def read_log(self) -> str:
        return pathlib.Path(self.dir, "mixd.log").read_text(errors="replace")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(params=["prosody", "ejabberd"], scope="module")
def deployment(request):
    """A server of each kind with mixd attached."""
    server = Server(request.param)
    server.run("start")
    mixd = Mixd(server)
    try:
        mixd.wait_healthy()
        yield server, mixd
    finally:
        mixd.stop()
        server.run("stop")


def make_client(jid: str, password: str) -> slixmpp.ClientXMPP:
    xmpp = slixmpp.ClientXMPP(jid, password)
    # Plaintext on loopback (scripts/README.md): no direct TLS, no STARTTLS, PLAIN allowed.
    xmpp.enable_direct_tls = False
    xmpp.enable_starttls = False
    xmpp.enable_plaintext = True
    xmpp.plugin["feature_mechanisms"].unencrypted_plain = True
    xmpp.register_plugin("xep_0030")
    xmpp.register_plugin("xep_0059")
    xmpp.register_plugin("xep_0199")
    return xmpp


async def session(server: Server, user: str = "alice") -> slixmpp.ClientXMPP:
    """A logged-in slixmpp client."""
    xmpp = make_client(f"{user}@localhost", user)
    started = asyncio.get_running_loop().create_future()
    xmpp.add_event_handler("session_start", lambda _e: started.done() or started.set_result(True))
    xmpp.add_event_handler("failed_auth", lambda e: started.done() or started.set_exception(RuntimeError(e)))
    xmpp.connect("127.0.0.1", server.c2s_port)
    await asyncio.wait_for(started, 15)
    return xmpp
