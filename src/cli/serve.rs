//! `vidgate serve`: the gateway as an HTTP service.

use std::net::SocketAddr;

use anyhow::Context;

use vidgate::config::Config;
use vidgate::gateway::Gateway;
use vidgate::serve::App;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address and port to listen on (default: server.bind, 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR:PORT")]
    pub bind: Option<SocketAddr>,
}

/// Serve `config`; on SIGHUP, `reread` gives the config anew and the service
/// reloads it (a config it refuses is logged, and the one in force stays).
pub async fn run(
    args: ServeArgs,
    config: Config,
    reread: impl Fn() -> anyhow::Result<Config> + Send + 'static,
) -> anyhow::Result<()> {
    config.validate().context("the config")?;
    let bind = match args.bind {
        Some(b) => b,
        None => config.server.bind.parse().context("server.bind")?,
    };
    let grace = std::time::Duration::from_secs_f64(config.server.shutdown_grace_s);
    // The instance is known in a shared journal by the address it serves on.
    let mut config = config;
    config.server.bind = bind.to_string();
    let gateway = Gateway::from_config(config)?;
    let app = App::new(gateway);
    let resumed = app.runs.restore().await.context("restoring the runs kept in the journal")?;
    if resumed > 0 {
        tracing::info!(runs = resumed, "resuming the unfinished runs");
    }
    vidgate::serve::native::retention::spawn(app.clone());
    vidgate::serve::native::retention::spawn_pruning(app.clone());
    vidgate::serve::runs::spawn_adoption(app.runs.clone());
    reload_on_hangup(app.clone(), reread);
    let runs = app.runs.clone();
    let drained = tokio_util::sync::CancellationToken::new();
    let stopped = drained.clone();
    let server = vidgate::serve::serve(app, bind, async move {
        stop_signal().await;
        tracing::info!(grace_s = grace.as_secs_f64(), "stopping: no new runs are taken; running runs may finish");
        runs.drain(grace).await;
        stopped.cancel();
    });
    tokio::select! {
        r = server => r.with_context(|| format!("serving on {bind}")),
        // Open event streams may hold the server past the grace: a short
        // wait for the answers under way, then out.
        () = async {
            drained.cancelled().await;
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        } => Ok(()),
    }
}

/// On each SIGHUP, read the config again and serve with it.
fn reload_on_hangup(app: App, reread: impl Fn() -> anyhow::Result<Config> + Send + 'static) {
    #[cfg(unix)]
    {
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "SIGHUP cannot be caught: the config is read at start only");
                return;
            }
        };
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                match reread().and_then(|config| Ok(app.reload(config)?)) {
                    Ok(reload) => tracing::info!(%reload, "config reloaded"),
                    Err(e) => {
                        tracing::error!(error = %format!("{e:#}"), "config reload refused; the config in force stays")
                    }
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = (app, reread);
}

/// SIGTERM or Ctrl-C.
async fn stop_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
