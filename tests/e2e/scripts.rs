//! Every scansion script of `tests/scripts/`, once per mode. Adding a script needs no change
//! here; a script's header can restrict it to one mode (`# modes: component`).
//!
//! `cargo test --test e2e scripts` runs both; `SCANSION_SCRIPT=disco` runs only the scripts
//! whose file name contains "disco".

use crate::scansion::{self, ClientMode, Mode, Script};

/// Run every script in `mode` and fail once with all failures, so one broken script does not
/// hide the others.
async fn run_all(mode: Mode) {
    let paths = scansion::script_paths();
    assert!(
        !paths.is_empty() || std::env::var("SCANSION_SCRIPT").is_ok(),
        "no scripts in tests/scripts"
    );
    // Prosody starts only if some script runs in client mode.
    let mut client: Option<ClientMode> = None;
    let mut failures = Vec::new();
    let mut ran = 0;
    for path in &paths {
        let script = match Script::load(path) {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        if !script.settings.runs_in(mode) {
            continue;
        }
        let started = std::time::Instant::now();
        let result = match mode {
            Mode::Component => scansion::run_component(&script).await,
            Mode::Client => {
                let c = match &mut client {
                    Some(c) => c,
                    None => client.insert(tokio::task::block_in_place(ClientMode::start)),
                };
                c.run(&script).await
            }
        };
        ran += 1;
        eprintln!(
            "{} mode: {} {} ({:.1?})",
            mode.name(),
            script.name,
            if result.is_ok() { "ok" } else { "FAILED" },
            started.elapsed()
        );
        if let Err(e) = result {
            failures.push(format!("{}: {e}", script.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {ran} scripts failed in {} mode:\n\n{}",
        failures.len(),
        mode.name(),
        failures.join("\n\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_in_component_mode() {
    run_all(Mode::Component).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_in_client_mode() {
    run_all(Mode::Client).await;
}
