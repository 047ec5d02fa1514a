use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use flsignal::config::{Config, LogFormat};
use flsignal::Server;
use tracing_subscriber::EnvFilter;

/// Errors are one line on stderr and a non-zero exit.
fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("flsignal: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let mut config = Config::parse();
    // A bad setting is reported before anything else is said or done.
    config.validate()?;
    // Before anything else is started: on success this does not return.
    let reexec = flsignal::malloc_tunable::reexec_without_tcache(config.malloc);
    init_logging(config.log_format);
    if let Err(error) = reexec {
        tracing::warn!(%error, "cannot restart with glibc's malloc cache off; running with it");
    }
    fit_fd_limit(&mut config);
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        // The library's errors name the flag, file or address at fault;
        // printed with their sources, they are the whole story.
        let server = Server::bind(config).await?;
        // Listening before "ready", so that no SIGHUP finds the default action (exit).
        let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
        let stun = server
            .stun_addr()
            .map_or_else(|| "off".to_owned(), |addr| addr.to_string());
        let turn = server
            .turn_addr()
            .map_or_else(|| "off".to_owned(), |addr| addr.to_string());
        tracing::info!(listen = %server.local_addr(), %stun, %turn, "flsignal ready");
        tracing::info!(
            names = %server.accepted_server_names().join(","),
            "bound announces are accepted for these server names (set them with --public-host)"
        );
        tokio::spawn(flsignal::heap::trim_after_leaves(server.shared()));
        let shutdown = server.shutdown_token();
        match hangup {
            Ok(hangup) => drop(tokio::spawn(reload_on_hangup(hangup, server.tls_certificate()))),
            Err(error) => tracing::warn!(%error, "cannot listen for SIGHUP; the TLS certificate cannot be reloaded"),
        }
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            shutdown.cancel();
        });
        server.run().await;
        anyhow::Ok(())
    })
}

/// Crates whose log lines strangers can cause at will (the TURN state
/// machine warns of a bad channel number, per datagram): silent unless
/// `RUST_LOG` names them. flsignal counts and logs what matters itself.
const QUIET_CRATES: [&str; 3] = ["turn_server_proto", "stun_proto", "turn_types"];

fn init_logging(format: LogFormat) {
    // The NATS client logs every reconnect attempt; flsignal logs the
    // transitions itself.
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,async_nats=warn"));
    let asked = std::env::var("RUST_LOG").unwrap_or_default();
    for name in QUIET_CRATES {
        if !asked.contains(name) {
            if let Ok(directive) = format!("{name}=off").parse() {
                filter = filter.add_directive(directive);
            }
        }
    }
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// File descriptors kept free for listeners, logs and the like.
const RESERVED_FDS: usize = 64;

/// Each connection is a file descriptor: ask for as many as allowed, and
/// lower the connection limit to fit if the system allows fewer.
fn fit_fd_limit(config: &mut Config) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            let fits = usize::try_from(limit)
                .unwrap_or(usize::MAX)
                .saturating_sub(RESERVED_FDS)
                .max(1);
            if fits < config.max_connections {
                tracing::info!(
                    fd_limit = limit,
                    max_connections = fits,
                    "--max-connections lowered to fit the file descriptor limit"
                );
                config.max_connections = fits;
            }
        }
        Err(error) => tracing::warn!(%error, "cannot raise the file descriptor limit"),
    }
}

/// On SIGHUP, reads the TLS certificate and key again: new handshakes use
/// the new ones, established connections keep theirs. A file that does not
/// load leaves the old certificate in use and is reported in one line.
async fn reload_on_hangup(
    mut hangup: tokio::signal::unix::Signal,
    certificate: Option<std::sync::Arc<flsignal::tls::ServerCertificate>>,
) {
    while hangup.recv().await.is_some() {
        let Some(certificate) = &certificate else {
            tracing::info!("SIGHUP: no --tls-cert to reload");
            continue;
        };
        match certificate
            .reload()
            .context("SIGHUP: TLS certificate not reloaded, the old one stays")
        {
            Ok(()) => tracing::info!("SIGHUP: TLS certificate reloaded"),
            Err(error) => tracing::error!("{error:#}"),
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
