//! The `tollgate` command: parse the CLI, set up logging, and hand over to the library.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tollgate::config::Config;
use tollgate::server::{self, Listeners};

#[derive(Parser)]
#[command(
    name = "tollgate",
    version,
    about = "OAuth 2.0 gateway: enforces bearer tokens and issues them"
)]
struct Cli {
    /// Path of the config file.
    #[arg(long, global = true, default_value = "gateway.toml")]
    config: PathBuf,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve (the default).
    Run,
    /// Validate the config and print a summary, or every error as FILE:LINE:COL: message.
    Check,
    /// Read a secret or password on stdin and print its argon2id PHC string.
    HashSecret,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Check => check(&cli.config),
        Command::HashSecret => report(hash_secret()),
        Command::Run => {
            init_logging(cli.log_format);
            report(serve(cli.config))
        }
    }
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tollgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a person at a terminal, never into journald or a log file.
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

fn check(path: &std::path::Path) -> ExitCode {
    match Config::load(path) {
        Ok(config) => {
            print!("{}", config.summary());
            ExitCode::SUCCESS
        }
        Err(e) => {
            for line in &e.0 {
                eprintln!("{line}");
            }
            ExitCode::FAILURE
        }
    }
}

fn hash_secret() -> anyhow::Result<()> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("reading the secret from stdin")?;
    let secret = input.strip_suffix('\n').unwrap_or(&input);
    let secret = secret.strip_suffix('\r').unwrap_or(secret);
    anyhow::ensure!(!secret.is_empty(), "no secret on stdin");
    let hash = tollgate::secret::hash(secret).map_err(anyhow::Error::msg)?;
    println!("{hash}");
    Ok(())
}

fn serve(path: PathBuf) -> anyhow::Result<()> {
    let config = match Config::load(&path) {
        Ok(config) => config,
        Err(e) => {
            for line in &e.0 {
                eprintln!("{line}");
            }
            anyhow::bail!("invalid config; nothing started");
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let public = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("binding the public listener on {}", config.server.listen))?;
        let admin = tokio::net::TcpListener::bind(config.admin.listen)
            .await
            .with_context(|| format!("binding the admin listener on {}", config.admin.listen))?;
        tracing::info!(listener = "public", addr = %public.local_addr()?, "listening");
        tracing::info!(listener = "admin", addr = %admin.local_addr()?, "listening");
        server::run(
            Listeners { public, admin },
            config,
            shutdown_signal(),
            hangups(),
        )
        .await
        .context("serving")
    })
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// One item per SIGHUP.
fn hangups() -> impl futures_util::Stream<Item = ()> + Unpin + Send {
    #[cfg(unix)]
    {
        let signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        Box::pin(futures_util::stream::unfold(signal, |signal| async move {
            let mut signal = signal?;
            signal.recv().await?;
            Some(((), Some(signal)))
        }))
    }
    #[cfg(not(unix))]
    {
        futures_util::stream::pending()
    }
}
