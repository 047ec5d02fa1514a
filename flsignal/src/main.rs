use anyhow::Context;
use clap::Parser;
use flsignal::config::{Config, LogFormat};
use flsignal::Server;
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    init_logging(config.log_format);
    raise_fd_limit(config.max_connections);
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let server = Server::bind(config).await?;
        tracing::info!(listen = %server.local_addr(), "flsignal ready");
        let shutdown = server.shutdown_token();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            shutdown.cancel();
        });
        server.run().await;
        anyhow::Ok(())
    })
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
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

/// Each connection is a file descriptor: ask for as many as allowed.
fn raise_fd_limit(max_connections: usize) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if (limit as usize) < max_connections + 64 => tracing::warn!(
            limit,
            max_connections,
            "the file descriptor limit is below --max-connections; connections beyond it are refused at accept"
        ),
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "cannot raise the file descriptor limit"),
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
