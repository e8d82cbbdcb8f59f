#!/usr/bin/env python3
"""Log in to a local XMPP server over plaintext c2s with slixmpp, fetch the roster, log out.

Usage: xmpp-login-check.py JID PASSWORD [HOST [PORT]]   (default 127.0.0.1 5222)
Exit status 0 on success (prints "ok JID roster=[...]"), 1 on failure/timeout.
Run it with the venv made by scripts/python-venv.sh.
"""
import asyncio
import sys

import slixmpp


def make_client(jid: str, password: str) -> slixmpp.ClientXMPP:
    xmpp = slixmpp.ClientXMPP(jid, password)
    # Plaintext on loopback: no direct TLS attempt, no STARTTLS, allow plain TCP,
    # and allow SASL PLAIN over the unencrypted stream.
    xmpp.enable_direct_tls = False
    xmpp.enable_starttls = False
    xmpp.enable_plaintext = True
    xmpp.plugin['feature_mechanisms'].unencrypted_plain = True
    return xmpp


async def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    jid, password = sys.argv[1], sys.argv[2]
    host = sys.argv[3] if len(sys.argv) > 3 else "127.0.0.1"
    port = int(sys.argv[4]) if len(sys.argv) > 4 else 5222

    xmpp = make_client(jid, password)
    result: asyncio.Future = asyncio.get_running_loop().create_future()

    async def on_session_start(_event):
        try:
            await xmpp.get_roster(timeout=5)
            xmpp.send_presence()
            roster = sorted(str(j) for j in xmpp.client_roster.keys())
            if not result.done():
                result.set_result(f"ok {xmpp.boundjid.full} roster={roster}")
        except Exception as exc:  # noqa: BLE001
            if not result.done():
                result.set_exception(exc)

    def failer(what):
        def handler(event=None):
            if not result.done():
                result.set_exception(RuntimeError(f"{what}: {event!r}"))
        return handler

    xmpp.add_event_handler("session_start", on_session_start)
    xmpp.add_event_handler("failed_auth", failer("authentication failed"))
    xmpp.add_event_handler("no_auth", failer("no usable SASL mechanism"))
    xmpp.add_event_handler("connection_failed", failer("connection failed"))
    xmpp.connect(host, port)
    try:
        print(await asyncio.wait_for(result, timeout=15))
        code = 0
    except Exception as exc:  # noqa: BLE001
        print(f"login check failed for {jid} at {host}:{port}: {exc!r}", file=sys.stderr)
        code = 1
    xmpp.disconnect(wait=1)
    try:
        await asyncio.wait_for(xmpp.disconnected, timeout=3)
    except Exception:  # noqa: BLE001
        xmpp.abort()
    return code


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
