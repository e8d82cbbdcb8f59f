//! Start, reconnect, shutdown and configuration errors of the real binary, against a real Prosody.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{Mixd, Server, ServerKind, free_port};

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

fn wait_for(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn bad_config_exits_2_with_one_line_naming_the_key() {
    let dir = tempfile::tempdir().expect("tmp");
    let cases = [
        (
            "secret = 's'\n[mix]\ndomain = 'mix.x'\n[muc]\ndomain = 'muc.x'\n[limits]\nmax_stanza_bytes = 'huge'\n",
            "limits.max_stanza_bytes",
        ),
        (
            "secret = 's'\nsever = 'typo:1'\n[mix]\ndomain = 'mix.x'\n[muc]\ndomain = 'muc.x'\n",
            "sever",
        ),
        (
            "secret = 's'\n[mix]\ndomain = 'not a domain@'\n[muc]\ndomain = 'muc.x'\n",
            "mix.domain",
        ),
        (
            "[mix]\ndomain = 'mix.x'\n[muc]\ndomain = 'muc.x'\n",
            "mix.secret",
        ),
        ("this is = not toml", "not valid TOML"),
    ];
    for (i, (text, key)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&path, text).expect("write");
        let out = Command::new(env!("CARGO_BIN_EXE_mixd"))
            .arg("--config")
            .arg(&path)
            .env_clear()
            .output()
            .expect("run mixd");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{key}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(key), "names {key}: {stderr}");
    }
    // The annotated example is itself a valid configuration.
    let ok = Command::new(env!("CARGO_BIN_EXE_mixd"))
        .arg("--config")
        .arg(crate::harness::repo().join("mixd.example.toml"))
        .arg("--check-config")
        .env_clear()
        .output()
        .expect("run mixd");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[test]
fn attaches_to_prosody_survives_its_restart_and_stops_on_sigterm() {
    let server = Server::start(ServerKind::Prosody);
    let mut mixd = Mixd::start(&server.component_addr(), &[]);
    mixd.wait_healthy(Duration::from_secs(15));

    // Prosody goes away under a running mixd: health turns 503, then mixd reconnects by itself.
    server.script("stop");
    assert!(
        wait_for(Duration::from_secs(5), || matches!(
            mixd.get("/health"),
            Some((503, _))
        )),
        "health should report the lost links"
    );
    assert!(
        mixd.child.try_wait().expect("wait").is_none(),
        "mixd keeps running"
    );
    server.script("start");
    let took = mixd.wait_healthy(Duration::from_secs(10));
    // The bar is 5 s after the server is back (the script itself waits for its ports).
    assert!(took < Duration::from_secs(5), "reconnected after {took:?}");
    let (_, metrics) = mixd.get("/metrics").expect("metrics");
    assert!(metrics.contains("mixd_link_reconnects_total"), "{metrics}");

    let start = Instant::now();
    mixd.signal("TERM");
    let status = mixd.wait_exit(Duration::from_secs(2));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exit 0 within 2 s of SIGTERM (waited {:?})",
        start.elapsed()
    );
    assert!(mixd.log().contains("stopped"), "{}", mixd.log());
}

#[test]
fn sigterm_while_starting_stops_cleanly() {
    // The handlers are in place from the first log line on: a signal while mixd is still
    // opening its database and links stops it cleanly (before, it killed the process).
    let server = Server::start(ServerKind::Prosody);
    let mut mixd = Mixd::start(&server.component_addr(), &[]);
    // As soon as it says it is starting (a fresh database still has its migrations to run).
    let start = Instant::now();
    while !mixd.log().contains("mixd starting") && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(1));
    }
    mixd.signal("TERM");
    let status = mixd.wait_exit(Duration::from_secs(15));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", mixd.log());
}

#[test]
fn sigint_also_stops_cleanly() {
    let server = Server::start(ServerKind::Prosody);
    let mut mixd = Mixd::start(&server.component_addr(), &[]);
    mixd.wait_healthy(Duration::from_secs(15));
    mixd.signal("INT");
    let status = mixd.wait_exit(Duration::from_secs(2));
    assert_eq!(status.and_then(|s| s.code()), Some(0));
}

#[test]
fn wrong_secret_is_logged_and_retried_never_a_crash() {
    let server = Server::start(ServerKind::Prosody);
    let mixd = Mixd::start(
        &server.component_addr(),
        &[
            ("MIXD_SECRET", "wrong"),
            ("MIXD_RECONNECT_MAX_SECONDS", "1"),
        ],
    );
    assert!(
        wait_for(Duration::from_secs(10), || {
            count(&mixd.log(), "refused the component secret") >= 4
        }),
        "log:\n{}",
        mixd.log()
    );
    let mut mixd = mixd;
    assert!(
        mixd.child.try_wait().expect("wait").is_none(),
        "still running"
    );
    assert!(matches!(mixd.get("/health"), Some((503, b)) if b.contains("is down")));
}

#[test]
fn unreachable_server_is_retried_until_it_appears() {
    let port = free_port();
    let mut mixd = Mixd::start(
        &format!("127.0.0.1:{port}"),
        &[("MIXD_RECONNECT_MAX_SECONDS", "1")],
    );
    assert!(
        wait_for(Duration::from_secs(10), || count(
            &mixd.log(),
            "cannot reach the server"
        ) >= 4),
        "log:\n{}",
        mixd.log()
    );
    assert!(
        mixd.child.try_wait().expect("wait").is_none(),
        "still running"
    );
    // The same port now gets a server: mixd attaches without being restarted.
    let _server = Server::start_on(ServerKind::Prosody, port);
    mixd.wait_healthy(Duration::from_secs(10));
}

#[test]
fn attaches_to_ejabberd_and_stops_cleanly() {
    let server = Server::start(ServerKind::Ejabberd);
    let mut mixd = Mixd::start(&server.component_addr(), &[]);
    mixd.wait_healthy(Duration::from_secs(20));
    mixd.signal("TERM");
    assert_eq!(
        mixd.wait_exit(Duration::from_secs(2))
            .and_then(|s| s.code()),
        Some(0)
    );
}
