"""Issue 7, "done when": K occupants on server A and R on server B in one room of the master mixd
on A, once with B's users entering the master room directly across s2s (plain MUC) and once
through the DMUC mirror on B, both in this one run over the same pair of federating Prosody
servers, with what crosses the s2s link captured (tcpdump on `lo`, tests/dmuc/s2s_capture.py).

The scene is tests/dmuc/baseline.py's (the one whose figures docs/dmuc.md holds): R remote joins one
by one, a local join and leave, M messages from each side, a presence change on A, the R remote
leaves. At each step it waits until every occupant has seen what it caused (every join and
every leave at every occupant, each message at every occupant) and then counts, per phase, the
bytes and stanzas that crossed. What a user (and an operator paying for the link) would check:

- every occupant receives every message exactly once, with and without the mirror;
- a message from A crosses once through the mirror, R times without: its bytes are about 1/R;
- a presence change, a join or a leave on A crosses once instead of R times;
- the R-th remote join costs as much as the second (the occupants come from the mirror's copy);
  without the mirror it grows with K + R;
- a remote leave costs a constant few stanzas; without the mirror it grows with R.
"""
import os
import pathlib
import sys
import tempfile

import pytest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "dmuc"))

from baseline import MIRROR, scene, summarise  # noqa: E402
from federation import MixdOn, Pair, run_in_new_loop  # noqa: E402
from s2s_capture import Capture  # noqa: E402

K, R, M = 3, 6, 10


def per(groups, phase, direction, kind):
    """Stanzas of `kind` that crossed in `direction` during the phase group, per action."""
    n = groups[phase][0]
    return sum(c for (d, nm), c in groups[phase][5].items() if d == direction and nm == kind) / n


def bytes_per(groups, phase):
    n, ab, ba = groups[phase][:3]
    return (ab + ba) / n


def run_scenes():
    pair = Pair(users=(), a_users=[f"local{i}" for i in range(1, K + 2)],
                b_users=[f"remote{i}" for i in range(1, R + 1)])
    pair.env["B_EXTRA"] = "conference.beta.test"
    work = tempfile.mkdtemp(prefix="dmuc-scale-")
    capture = Capture(pair.a.addr, pair.b.addr, os.path.join(work, "s2s.pcap"))
    master = mirror = None
    pair.start()
    try:
        capture.start()
        master = MixdOn(pair.a, extra_env={"MIXD_DMUC_MIRRORS": MIRROR})
        mirror = MixdOn(pair.b, muc="conference.beta.test",
                        extra_env={"MIXD_DMUC_MIRROR_DOMAIN": MIRROR})
        master.wait_healthy()
        mirror.wait_healthy()
        plain = run_in_new_loop(scene(pair, capture, K, R, M, dmuc=False, name="plain"))
        mirrored = run_in_new_loop(scene(pair, capture, K, R, M, dmuc=True, name="mirrored"))
    finally:
        capture.stop()
        for m in (master, mirror):
            if m is not None:
                m.stop()
        pair.stop()
    report = capture.read()
    assert not report.errors, report.errors
    return plain, mirrored, summarise(report, plain.phases), summarise(report, mirrored.phases)


@pytest.fixture(scope="module")
def scenes():
    return run_scenes()


def test_every_occupant_receives_every_message_once_with_and_without_the_mirror(scenes):
    plain, mirrored, _, _ = scenes
    assert plain.problems == []
    assert mirrored.problems == []


def test_a_broadcast_crosses_once_per_mirror_not_once_per_remote_occupant(scenes):
    _, _, p, d = scenes
    # Without the mirror: one copy per remote occupant.
    assert per(p, "message A", "A->B", "message") == R
    assert per(p, "message B", "A->B", "message") == R
    assert per(p, "presence A", "A->B", "presence") == R
    assert per(p, "local join", "A->B", "presence") == R
    assert per(p, "local leave", "A->B", "presence") == R
    # Through the mirror: one copy, whatever R.
    assert per(d, "message A", "A->B", "message") == 1
    assert per(d, "message B", "A->B", "message") == 1
    assert per(d, "message B", "B->A", "message") == 1
    assert per(d, "presence A", "A->B", "presence") == 1
    assert per(d, "local join", "A->B", "presence") == 1
    assert per(d, "local leave", "A->B", "presence") == 1
    # Bytes: about 1/R (the mirror's keepalive may fall in a window: some slack).
    ratio = bytes_per(d, "message A") / bytes_per(p, "message A")
    print(f"message from A: {bytes_per(p, 'message A'):.0f} B plain, "
          f"{bytes_per(d, 'message A'):.0f} B through the mirror (ratio {ratio:.3f}, 1/R = {1 / R:.3f})")
    assert 0.5 / R < ratio < 1.3 / R


def test_joins_and_leaves_through_the_mirror_cost_the_same_at_any_size(scenes):
    _, _, p, d = scenes

    def last_stanzas(groups, phase):
        """Messages and presences of the last of the group, both ways (not the keepalive)."""
        return sum(c for (_d, nm), c in groups[phase][6][5].items() if nm in ("message", "presence"))

    # Without the mirror the R-th join brings K + R - 1 occupants' presence across, and every
    # remote occupant hears of it: K + 2R stanzas from A.
    assert last_stanzas(p, "remote join") >= K + 2 * R
    # Through the mirror: the joiner's own presence and subject (and the join going up); the
    # occupants come from the mirror's copy.
    assert last_stanzas(d, "remote join") <= 5
    # Leaves: the i-th remote leave tells the R - i still in, one by one, without the mirror.
    assert per(p, "remote leave", "A->B", "presence") > 2
    assert per(d, "remote leave", "A->B", "presence") <= 2
    print(f"R-th remote join: {last_stanzas(p, 'remote join')} stanzas plain, "
          f"{last_stanzas(d, 'remote join')} through the mirror")
