//! Processes for end-to-end tests: a private Prosody (or ejabberd) from `scripts/`, and the built
//! `mixd` binary attached to it. Every instance gets its own directory and free ports, so tests
//! run in parallel.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const SECRET: &str = "mixd-secret";
pub const MIX: &str = "mix.localhost";
pub const MUC: &str = "muc.localhost";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Which server a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    Prosody,
    Ejabberd,
}

/// A private XMPP server instance, stopped on drop.
pub struct Server {
    pub kind: ServerKind,
    pub dir: tempfile::TempDir,
    pub c2s_port: u16,
    pub component_port: u16,
}

impl Server {
    pub fn start(kind: ServerKind) -> Server {
        Server::start_on(kind, free_port())
    }

    /// A server whose component port is chosen by the test.
    pub fn start_on(kind: ServerKind, component_port: u16) -> Server {
        let dir = tempfile::Builder::new()
            .prefix(match kind {
                ServerKind::Prosody => "prosody-",
                ServerKind::Ejabberd => "ejabberd-",
            })
            .tempdir()
            .expect("tempdir");
        let s = Server {
            kind,
            dir,
            c2s_port: free_port(),
            component_port,
        };
        s.script("start");
        s
    }

    fn script_path(&self) -> PathBuf {
        repo().join(match self.kind {
            ServerKind::Prosody => "scripts/prosody-env.sh",
            ServerKind::Ejabberd => "scripts/ejabberd-env.sh",
        })
    }

    pub fn script(&self, cmd: &str) {
        let out = Command::new("bash")
            .arg(self.script_path())
            .arg(cmd)
            .arg(self.dir.path())
            .env("C2S_PORT", self.c2s_port.to_string())
            .env("COMPONENT_PORT", self.component_port.to_string())
            .env("COMPONENT_SECRET", SECRET)
            .env("MIX_DOMAIN", MIX)
            .env("MUC_DOMAIN", MUC)
            .output()
            .expect("run server script");
        assert!(
            out.status.success(),
            "{:?} {cmd} failed:\n{}\n{}",
            self.kind,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn component_addr(&self) -> String {
        format!("127.0.0.1:{}", self.component_port)
    }

    /// Create an account `user@localhost` (or set its password) on a Prosody instance; the
    /// env script only creates alice, bob and carol.
    pub fn register(&self, user: &str, pass: &str) -> Result<(), String> {
        if self.kind != ServerKind::Prosody {
            return Err(format!(
                "register is implemented for Prosody, not {:?}",
                self.kind
            ));
        }
        let out = Command::new("prosodyctl")
            .arg("--config")
            .arg(self.dir.path().join("prosody.cfg.lua"))
            .args(["register", user, "localhost", pass])
            .output()
            .map_err(|e| format!("cannot run prosodyctl: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "prosodyctl register {user} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(self.script_path())
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

/// On PostgreSQL, each mixd gets a database of its own (as each gets its own SQLite file),
/// kept with its directory so that a restart finds its data again.
fn pg_database(dir: &Path, url: &str) -> String {
    let marker = dir.join("pg-database");
    let name = match std::fs::read_to_string(&marker) {
        Ok(n) => n,
        Err(_) => {
            let n = format!("mixd_t{:016x}", rand::random::<u64>());
            let ok = Command::new("psql")
                .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-c"])
                .arg(format!("CREATE DATABASE {n}"))
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "could not create database {n} on {url}");
            std::fs::write(&marker, &n).expect("write the database name");
            n
        }
    };
    match url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => url.to_owned(),
    }
}

/// A running `mixd`, killed on drop. Its log is kept in its directory.
pub struct Mixd {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub http_port: u16,
}

impl Mixd {
    /// Start mixd against `server` (host:port) with SQLite in a fresh directory, plus `extra`
    /// environment.
    pub fn start(server: &str, extra: &[(&str, &str)]) -> Mixd {
        let dir = tempfile::Builder::new()
            .prefix("mixd-")
            .tempdir()
            .expect("tempdir");
        Mixd::start_in(dir, server, extra)
    }

    /// Start mixd on the data of `dir` (a restart keeps the database); the log is appended.
    pub fn start_in(dir: tempfile::TempDir, server: &str, extra: &[(&str, &str)]) -> Mixd {
        let http_port = free_port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("mixd.log"))
            .expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mixd"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("MIXD_SERVER", server)
            .env("MIXD_MIX_DOMAIN", MIX)
            .env("MIXD_MUC_DOMAIN", MUC)
            .env("MIXD_SECRET", SECRET)
            .env("MIXD_DATA_DIR", dir.path().join("data"))
            .env("MIXD_HTTP", format!("127.0.0.1:{http_port}"))
            .env("MIXD_LOG", "debug,sqlx=warn")
            .env("MIXD_RECONNECT_MAX_SECONDS", "2");
        if let Ok(url) = std::env::var("MIXD_TEST_PG_URL") {
            cmd.env("MIXD_DATABASE_URL", pg_database(dir.path(), &url));
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let child = cmd
            .stdout(Stdio::from(log.try_clone().expect("clone log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn mixd");
        Mixd {
            child,
            dir,
            http_port,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mixd.log")).unwrap_or_default()
    }

    /// GET a path of the admin API: (status, body).
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http(self.http_port, "GET", path, "")
    }

    pub fn post(&self, path: &str, body: &str) -> Option<(u16, String)> {
        http(self.http_port, "POST", path, body)
    }

    /// Wait until /health says 200 (both links up, database answering).
    pub fn wait_healthy(&self, within: Duration) -> Duration {
        let start = Instant::now();
        while start.elapsed() < within {
            if let Some((200, _)) = self.get("/health") {
                return start.elapsed();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "mixd not healthy within {within:?}: {:?}\nlog:\n{}",
            self.get("/health"),
            self.log()
        );
    }

    /// Create a channel through the admin API.
    pub fn create_channel(&self, name: &str, public: bool) {
        let body = format!(r#"{{"name":"{name}","public":{public}}}"#);
        let r = self.post("/channels", &body);
        assert_eq!(r.as_ref().map(|r| r.0), Some(201), "{r:?}");
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig}");
    }

    /// Wait for exit: Some(status) if it exited within `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < within {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Mixd {
    /// SIGTERM (a clean shutdown) and hand back the data directory for a restart; Err if mixd
    /// does not exit in time or exits with a failure.
    pub fn stop(mut self) -> Result<tempfile::TempDir, String> {
        self.signal("TERM");
        let status = self.wait_exit(Duration::from_secs(15));
        let dir = tempfile::Builder::new()
            .prefix("mixd-moved-")
            .tempdir()
            .map_err(|e| format!("tempdir: {e}"))?;
        let dir = std::mem::replace(&mut self.dir, dir);
        match status {
            Some(s) if s.success() => Ok(dir),
            Some(s) => Err(format!("mixd exited with {s} on SIGTERM")),
            None => Err("mixd did not stop within 15 s of SIGTERM".into()),
        }
    }

    /// `kill -9` (no shutdown of any kind) and hand back the data directory for a restart.
    pub fn kill_hard(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = tempfile::Builder::new()
            .prefix("mixd-moved-")
            .tempdir()
            .expect("tempdir");
        std::mem::replace(&mut self.dir, dir)
    }
}

impl Drop for Mixd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- mixd log ----\n{}", self.log());
        }
    }
}

/// A minimal HTTP/1.1 client for the admin API (loopback only; keeps the test build small).
pub fn http(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|x| x.1).unwrap_or_default();
    Some((status, body.to_owned()))
}
