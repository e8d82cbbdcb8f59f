//! The `mixd` command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// MIX channels with a MUC mirror, for any XMPP server (XEP-0114 component).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Configuration file (TOML; see mixd.example.toml). Environment variables MIXD_* override it.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Check the configuration and exit.
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match mixd::config::Config::load(args.config.as_deref(), |k| std::env::var(k).ok())
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mixd: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check_config {
        println!("configuration is valid");
        return ExitCode::SUCCESS;
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&config.log))
        .with_target(false)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mixd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = {
        let _in_runtime = runtime.enter();
        shutdown_signal()
    };
    tracing::info!(mix = %config.mix.domain, muc = %config.muc.domain, server = %config.server, "mixd starting");
    match runtime.block_on(mixd::run(config, shutdown)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("mixd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// SIGINT or SIGTERM. The handlers are in place when this returns, before mixd starts: a
/// signal that comes while it is still starting (its health endpoint may already answer)
/// stops it cleanly instead of killing it.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                (Err(e), _) | (_, Err(e)) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM/SIGINT");
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
