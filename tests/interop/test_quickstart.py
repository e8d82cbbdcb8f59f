"""The README's quick-start command brings up Prosody and mixd, and a local user gets the
disco#info answers of both domains (the README contract, issue 2)."""
import asyncio
import os
import signal
import subprocess
import time
import urllib.request

from slixmpp.xmlstream import ET  # noqa: F401  (slixmpp must be importable)

from conftest import MIX, MUC, REPO, Server, free_port, session


def test_quickstart_serves_both_domains(tmp_path):
    c2s, comp, http = free_port(), free_port(), free_port()
    env = dict(os.environ, C2S_PORT=str(c2s), COMPONENT_PORT=str(comp),
               MIXD_HTTP=f"127.0.0.1:{http}", PROFILE="debug")
    # A copy of the tree would rebuild; run in place but keep state out of the repo's data/.
    log = open(tmp_path / "quickstart.log", "wb")
    proc = subprocess.Popen(["bash", str(REPO / "scripts" / "quickstart.sh")], env=env, stdout=log,
                            stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
    try:
        end = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, (tmp_path / "quickstart.log").read_text()
            assert time.monotonic() < end, (tmp_path / "quickstart.log").read_text()
            time.sleep(0.2)
        out = (tmp_path / "quickstart.log").read_text()
        assert "alice@localhost" in out and "password: alice" in out

        server = Server.__new__(Server)
        server.c2s_port = c2s

        async def go():
            c = await session(server)
            try:
                mix = await c.plugin["xep_0030"].get_info(jid=MIX, timeout=10)
                muc = await c.plugin["xep_0030"].get_info(jid=MUC, timeout=10)
            finally:
                await c.disconnect()
            return mix, muc

        mix, muc = asyncio.new_event_loop().run_until_complete(go())
        assert "urn:xmpp:mix:core:1" in mix["disco_info"]["features"]
        assert "http://jabber.org/protocol/muc" in muc["disco_info"]["features"]
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, (tmp_path / "quickstart.log").read_text()
