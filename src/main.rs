//! The `tollgate` command: parse the CLI, set up logging, and hand over to the library.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use tollgate::cli;
use tollgate::config::Config;
use tollgate::server::{self, Listeners};

#[derive(Parser)]
#[command(
    name = "tollgate",
    version,
    about = "OAuth 2.0 gateway: enforces bearer tokens and issues them",
    after_help = cli::SECRETS_HELP
)]
struct Cli {
    /// Path of the config file.
    #[arg(long, global = true, default_value = "gateway.toml")]
    config: PathBuf,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Admin commands: the admin listener's URL (default: [admin].listen of --config, with
    /// https:// when [admin.tls] is set, else http://).
    #[arg(long, env = "TOLLGATE_ADMIN_URL")]
    admin_url: Option<String>,
    /// Admin commands: trust the CA certificates in this PEM file (besides the system's) for
    /// an https:// admin URL, e.g. the CA that signed [admin.tls]'s certificate.
    #[arg(long, env = "TOLLGATE_ADMIN_CA", value_name = "FILE")]
    admin_ca: Option<PathBuf>,
    /// Admin commands: an access token with the `admin` scope. Visible in `ps`: prefer
    /// --token-file or the environment.
    // Tokens and secrets are base64url and may start with "-": never read them as flags.
    #[arg(
        long,
        env = "TOLLGATE_ADMIN_TOKEN",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    token: Option<String>,
    /// Admin commands: read the admin token from this file (`-`: stdin).
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// Admin commands: get the token with this client's credentials instead (scope admin).
    #[arg(long = "client-id", env = "TOLLGATE_CLIENT_ID")]
    admin_client_id: Option<String>,
    /// Admin commands: that client's secret. Visible in `ps`: prefer --client-secret-file or
    /// the environment.
    #[arg(
        long = "client-secret",
        allow_hyphen_values = true,
        env = "TOLLGATE_CLIENT_SECRET",
        hide_env_values = true
    )]
    admin_client_secret: Option<String>,
    /// Admin commands: read the client secret from this file (`-`: stdin).
    #[arg(long = "client-secret-file", value_name = "PATH")]
    admin_client_secret_file: Option<PathBuf>,
    /// Admin commands: Tollgate's public URL, for the token endpoint (default: [server].public_url).
    #[arg(long, env = "TOLLGATE_URL")]
    url: Option<String>,
    /// Admin commands: print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
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
    /// Validate the config and print a summary (and any warnings), or every error as
    /// FILE:LINE:COL: message.
    Check {
        /// Fail (exit 1) on warnings too.
        #[arg(long)]
        strict: bool,
    },
    /// Read a secret or password on stdin and print its argon2id PHC string.
    HashSecret,
    /// Manage clients through the admin API.
    #[command(subcommand)]
    Clients(cli::ClientsCommand),
    /// Manage tokens through the admin API.
    #[command(subcommand)]
    Tokens(cli::TokensCommand),
    /// Outbound credentials (upstream tokens) through the admin API.
    #[command(subcommand)]
    Credentials(cli::CredentialsCommand),
    /// Manage scopes through the admin API (file scopes are read-only there).
    #[command(subcommand)]
    Scopes(cli::ScopesCommand),
    /// Ask the gateway why it would allow or refuse a token on a method and path.
    #[command(after_help = cli::SECRETS_HELP)]
    Explain {
        #[arg(long, default_value = "GET")]
        method: String,
        #[arg(long)]
        path: String,
        /// The token to explain. Visible in `ps`: prefer --explain-token-file.
        #[arg(
            long,
            allow_hyphen_values = true,
            required_unless_present = "explain_token_file",
            conflicts_with = "explain_token_file"
        )]
        explain_token: Option<String>,
        /// Read the token to explain from this file (`-`: stdin).
        #[arg(long, value_name = "PATH")]
        explain_token_file: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    refuse_a_secret_given_twice(&matches);
    match cli.command.take().unwrap_or(Command::Run) {
        Command::Check { strict } => check(&cli.config, strict),
        Command::HashSecret => report(hash_secret()),
        Command::Run => {
            let _flush_logs_on_exit = init_logging(cli.log_format);
            report(serve(cli.config))
        }
        Command::Clients(c) => report(admin(&cli, c.into())),
        Command::Tokens(t) => report(admin(&cli, t.into())),
        Command::Credentials(c) => report(admin(&cli, cli::Command::Credentials(c))),
        Command::Scopes(c) => report(admin(&cli, cli::Command::Scopes(c))),
        Command::Explain {
            method,
            path,
            explain_token,
            explain_token_file,
        } => {
            let mut secrets = cli::SecretFiles::default();
            let token = match (explain_token, explain_token_file) {
                (Some(token), _) => Ok(token),
                (None, Some(file)) => secrets.read(&file, "--explain-token-file"),
                // clap requires one of the two
                (None, None) => Err(cli::CliError::Usage("give --explain-token-file".into())),
            };
            report(token.map_err(Into::into).and_then(|token| {
                let command = cli::Command::Explain {
                    method,
                    path,
                    token,
                };
                admin_with(&cli, command, secrets)
            }))
        }
    }
}

/// Exits with a usage error when a secret is given both as an argument and as a file on the
/// command line: a contradiction. (A file on the command line beats the environment.)
fn refuse_a_secret_given_twice(matches: &clap::ArgMatches) {
    let pairs = [
        ("token", "token_file", "--token", "--token-file"),
        (
            "admin_client_secret",
            "admin_client_secret_file",
            "--client-secret",
            "--client-secret-file",
        ),
    ];
    for (value, file, value_flag, file_flag) in pairs {
        if matches.value_source(value) == Some(ValueSource::CommandLine)
            && matches.value_source(file) == Some(ValueSource::CommandLine)
        {
            let message = format!("the argument '{value_flag}' cannot be used with '{file_flag}'");
            Cli::command()
                .error(clap::error::ErrorKind::ArgumentConflict, message)
                .exit();
        }
    }
}

/// Runs an admin command; URLs not given come from the config file when it can be read.
fn admin(cli: &Cli, command: cli::Command) -> anyhow::Result<()> {
    admin_with(cli, command, cli::SecretFiles::default())
}

/// [`admin`], when a flag of the subcommand may have read a secret file (stdin) already.
fn admin_with(
    cli: &Cli,
    command: cli::Command,
    mut secrets: cli::SecretFiles,
) -> anyhow::Result<()> {
    let token = match &cli.token_file {
        Some(file) => Some(secrets.read(file, "--token-file")?),
        None => cli.token.clone(),
    };
    let client_secret = match &cli.admin_client_secret_file {
        Some(file) => Some(secrets.read(file, "--client-secret-file")?),
        None => cli.admin_client_secret.clone(),
    };
    let config = Config::load(&cli.config).ok();
    let admin_url = cli
        .admin_url
        .clone()
        .or_else(|| {
            config.as_ref().map(|c| {
                let scheme = if c.admin.tls.is_some() {
                    "https"
                } else {
                    "http"
                };
                format!("{scheme}://{}", c.admin.listen)
            })
        })
        .context("no admin URL: give --admin-url (TOLLGATE_ADMIN_URL) or a readable --config")?;
    let target = cli::Target {
        admin_url,
        token,
        client_id: cli.admin_client_id.clone(),
        client_secret,
        public_url: cli
            .url
            .clone()
            .or_else(|| config.as_ref().map(|c| c.server.public_url.clone())),
        oauth_path: config
            .as_ref()
            .map_or_else(|| "/oauth".to_owned(), |c| c.oauth.path.clone()),
        json: cli.json,
        admin_ca: cli.admin_ca.clone(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(cli::run(&target, command))?;
    Ok(())
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

/// Logs (the access log among them, one line per request at `info`) go to stderr through a
/// thread of their own: a request formats its line and queues it, and never waits on a write
/// to a pipe or journald; the thread writes queued lines in batches. Past 128,000 queued lines (a stalled reader), new lines are dropped
/// rather than stalling requests. The guard flushes what is queued when `main` returns.
fn init_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a person at a terminal, never into journald or a log file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // The log thread writes whatever is queued, then flushes: one write per batch of lines
    // under load, one per line when quiet.
    let stderr = std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr());
    let (writer, guard) = tracing_appender::non_blocking(stderr);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    guard
}

/// Warnings go to stderr as errors do, `FILE:LINE:COL: warning: ...`; with `strict` they
/// fail the check like errors, and the summary (which would say OK) is not printed.
fn check(path: &std::path::Path, strict: bool) -> ExitCode {
    match Config::load(path) {
        Ok(config) if strict && !config.warnings.is_empty() => {
            for line in &config.warnings {
                eprintln!("{line}");
            }
            eprintln!(
                "{}: {} warning(s), and --strict fails on warnings",
                path.display(),
                config.warnings.len()
            );
            ExitCode::FAILURE
        }
        Ok(config) => {
            print!("{}", config.summary());
            for line in &config.warnings {
                eprintln!("{line}");
            }
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
    let secret = cli::without_newline(&input);
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
    // The main runtime carries the admin listener, reloads, the file watcher and the store's
    // background work; the public listener has worker threads of its own (server::run).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let public = server::bind_public(config.server.listen, config.server.workers)
            .with_context(|| format!("binding the public listener on {}", config.server.listen))?;
        let admin = tokio::net::TcpListener::bind(config.admin.listen)
            .await
            .with_context(|| format!("binding the admin listener on {}", config.admin.listen))?;
        let public_addr = public
            .first()
            .map(|l| l.local_addr())
            .transpose()?
            .context("no public socket")?;
        tracing::info!(listener = "public", addr = %public_addr, workers = public.len(), "listening");
        let admin_tls = config.admin.tls.is_some();
        tracing::info!(listener = "admin", addr = %admin.local_addr()?, tls = admin_tls, "listening");
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Tokens and secrets are base64url, so one in 32 starts with "-"; they must still parse
    /// as values, not flags.
    #[test]
    fn hyphen_leading_tokens_and_secrets_are_values() {
        let cli = Cli::try_parse_from([
            "tollgate",
            "--token",
            "-dtoken",
            "--client-secret",
            "-secret",
            "explain",
            "--path",
            "/x",
            "--explain-token",
            "-explained",
        ])
        .expect("parses");
        assert_eq!(cli.token.as_deref(), Some("-dtoken"));
        assert_eq!(cli.admin_client_secret.as_deref(), Some("-secret"));
        match cli.command {
            Some(Command::Explain { explain_token, .. }) => {
                assert_eq!(explain_token.as_deref(), Some("-explained"))
            }
            _ => panic!("explain expected"),
        }
    }
}
