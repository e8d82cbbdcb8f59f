//! The project's scansion runner (ARCHITECTURE.md "Tests, in layers", layer 2).
//!
//! Scripts are parsed and stanzas matched by the `jasca` crate; this module supplies what jasca
//! leaves out: the XMPP side. Two modes run the same scripts:
//! - component mode ([`run_component`]): the runner plays the XMPP server, accepts mixd's two
//!   XEP-0114 links and routes stanzas between mixd and the script's clients itself;
//! - client mode ([`ClientMode`]): a private Prosody with mixd attached, and every script
//!   client logged in over real c2s.
//!
//! Each script gets a fresh mixd (fresh database). Header comments configure it, see
//! [`script::Settings`].

pub mod c2s;
pub mod component;
pub mod engine;
pub mod script;
pub mod wire;

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

use crate::harness::{self, Mixd, Server, ServerKind};
pub use script::{Mode, Script};

/// How long mixd gets to come up (links + database) before a script.
const STARTUP: Duration = Duration::from_secs(15);

/// The scripts of `tests/scripts/`, sorted by name. `SCANSION_SCRIPT=part` keeps only those
/// whose file name contains `part` (for working on one script).
pub fn script_paths() -> Vec<PathBuf> {
    let dir = harness::repo().join("tests/scripts");
    let filter = std::env::var("SCANSION_SCRIPT").unwrap_or_default();
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "scs"))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().contains(&filter))
        })
        .collect();
    v.sort();
    v
}

fn env_of(script: &Script) -> Vec<(&str, &str)> {
    script
        .settings
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// Err with the reason if mixd has exited.
fn still_running(mixd: &mut Mixd) -> Result<(), String> {
    match mixd.child.try_wait() {
        Ok(None) => Ok(()),
        Ok(Some(status)) => Err(format!("mixd exited ({status})")),
        Err(e) => Err(format!("cannot check on mixd: {e}")),
    }
}

/// Wait for /health = 200, then create the script's channels. Blocking (the harness speaks
/// HTTP with std sockets): call through `block_in_place`.
fn prepare(mixd: &mut Mixd, script: &Script) -> Result<(), String> {
    let start = Instant::now();
    loop {
        still_running(mixd)?;
        match mixd.get("/health") {
            Some((200, _)) => break,
            last if start.elapsed() > STARTUP => {
                return Err(format!("mixd not healthy within {STARTUP:?}: {last:?}"));
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    for (name, public) in &script.settings.channels {
        // The harness asserts; a failure here becomes this script's failure, not the end of
        // the whole run.
        let created = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            mixd.create_channel(name, *public)
        }));
        if let Err(panic) = created {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            return Err(format!("creating channel {name} failed: {why}"));
        }
    }
    Ok(())
}

/// On failure, the end of mixd's log goes to the test output, next to the report.
fn with_log(mode: Mode, script: &Script, mixd: &Mixd, r: Result<(), String>) -> Result<(), String> {
    if r.is_err() {
        let log = strip_ansi(&mixd.log());
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        eprintln!(
            "---- mixd log (last 30 lines), {} mode, {} ----\n{tail}",
            mode.name(),
            script.name
        );
    }
    r
}

/// mixd colours its log; the test output is read as plain text.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI sequences end with a letter (`ESC [ 1 ; 32 m`).
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Run one script with the runner as mixd's XMPP server.
pub async fn run_component(script: &Script) -> Result<(), String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot listen: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("local_addr: {e}"))?
        .to_string();
    let mut mixd = Mixd::start(&addr, &env_of(script));
    let r = async {
        let mut server = component::ComponentServer::accept(
            &listener,
            &[harness::MIX, harness::MUC],
            harness::SECRET,
            STARTUP,
            || still_running(&mut mixd),
        )
        .await?;
        tokio::task::block_in_place(|| prepare(&mut mixd, script))?;
        let mut service = |_: bool| Err("mixd restarts are scripted in client mode only".into());
        engine::execute(&mut server, script, Mode::Component, &mut service).await
    }
    .await;
    with_log(Mode::Component, script, &mixd, r)
}

/// Client mode: one private Prosody shared by the scripts run through it.
pub struct ClientMode {
    server: Server,
    /// Accounts known to exist, as "user@domain\0password".
    accounts: HashSet<String>,
}

impl ClientMode {
    /// Start Prosody (blocking; it comes with alice, bob and carol, password = name).
    pub fn start() -> ClientMode {
        let server = Server::start(ServerKind::Prosody);
        let accounts = ["alice", "bob", "carol"]
            .iter()
            .map(|u| format!("{u}@localhost\0{u}"))
            .collect();
        ClientMode { server, accounts }
    }

    /// Run one script through Prosody, with a fresh mixd attached.
    pub async fn run(&mut self, script: &Script) -> Result<(), String> {
        // Scripts may log in as anyone: create the accounts Prosody does not have yet.
        for (_, jid, password) in script.clients() {
            let user = jid.node().map(|n| n.to_string()).unwrap_or_default();
            let key = format!("{}\0{password}", jid.to_bare());
            if !self.accounts.contains(&key) {
                if jid.domain().as_str() != "localhost" {
                    return Err(format!("{jid}: the test Prosody only serves localhost"));
                }
                tokio::task::block_in_place(|| self.server.register(&user, &password))?;
                self.accounts.insert(key);
            }
        }
        let component_addr = self.server.component_addr();
        let env = env_of(script);
        let mut svc = Service {
            running: Some(Mixd::start(&component_addr, &env)),
            stopped: None,
        };
        let r = async {
            if let Some(mixd) = &mut svc.running {
                tokio::task::block_in_place(|| prepare(mixd, script))?;
            }
            let addr = format!("127.0.0.1:{}", self.server.c2s_port);
            let mut clients = c2s::C2sClients::new(addr);
            let mut service = |up: bool| svc.set(up, &component_addr, &env);
            engine::execute(&mut clients, script, Mode::Client, &mut service).await
        }
        .await;
        let r = match &svc.running {
            Some(mixd) => with_log(Mode::Client, script, mixd, r),
            None => r,
        };
        // Stop this mixd before the next one attaches: Prosody takes one link per component.
        drop(svc);
        r
    }
}

/// The mixd of one client-mode script, which the script may stop and start again.
struct Service {
    running: Option<Mixd>,
    /// The data of a stopped mixd, for the next start.
    stopped: Option<tempfile::TempDir>,
}

impl Service {
    /// Blocking: call through `block_in_place`.
    fn set(&mut self, up: bool, component_addr: &str, env: &[(&str, &str)]) -> Result<(), String> {
        if !up {
            let mixd = self.running.take().ok_or("mixd disconnects twice")?;
            self.stopped = Some(mixd.stop()?);
            return Ok(());
        }
        let dir = self.stopped.take().ok_or("mixd connects while running")?;
        let mixd = self
            .running
            .insert(Mixd::start_in(dir, component_addr, env));
        let start = Instant::now();
        loop {
            still_running(mixd)?;
            match mixd.get("/health") {
                Some((200, _)) => return Ok(()),
                last if start.elapsed() > STARTUP => {
                    return Err(format!(
                        "mixd not healthy again within {STARTUP:?}: {last:?}"
                    ));
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}
