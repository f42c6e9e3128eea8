//! The `hindsight` binary: parse the command line, set up logging, run a command. No logic.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use datafusion::arrow::util::pretty::pretty_format_batches;
use futures::TryStreamExt;
use hindsight::catalog::Warehouse;
use hindsight::config::{Config, Overrides};
use hindsight::security::Role;
use hindsight::security::scram::Verifier;
use hindsight::security::tls::Tls;
use hindsight::server::Server;
use hindsight::engine::Engine;
use hindsight::session::{Output, Session};

/// jemalloc rather than glibc's malloc. Under 64 clients of mixed reads and writes glibc's
/// per-thread arenas held 241 MiB from the system for 37 MiB in use, and kept growing; jemalloc
/// returns what it no longer uses, and served 42% more statements in the same time.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(name = "hindsight", version, about = "A SQL-native feature store and evaluation engine over Delta Lake")]
struct Cli {
    /// Log lines as text or as JSON objects (one per line, for log shippers).
    #[arg(long, env = "HINDSIGHT_LOG_FORMAT", default_value = "text", global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the warehouse over the PostgreSQL wire protocol.
    Serve {
        /// Warehouse root: a folder or a URL (file://, s3://, gs://, az://).
        #[arg(long, env = "HINDSIGHT_WAREHOUSE")]
        warehouse: Option<String>,
        /// Address to listen on.
        #[arg(long, env = "HINDSIGHT_LISTEN")]
        listen: Option<String>,
        /// Most connections served at once.
        #[arg(long, env = "HINDSIGHT_MAX_CONNECTIONS")]
        max_connections: Option<usize>,
        /// Days of history every new table keeps for time travel (default 2557, seven years).
        #[arg(long, env = "HINDSIGHT_RETENTION_DAYS")]
        retention_days: Option<u64>,
        /// A TOML file with the same settings (flags and environment win).
        #[arg(long, env = "HINDSIGHT_CONFIG")]
        config: Option<PathBuf>,
        /// Write the demo warehouse first (tables that already exist are left alone).
        #[arg(long)]
        demo: bool,
        /// Do not run scheduled evaluations in this server (another server on the warehouse
        /// does; RUN and BACKFILL EVALUATION still work).
        #[arg(long, env = "HINDSIGHT_NO_SCHEDULER")]
        no_scheduler: bool,
        /// Serve without authentication on a non-loopback address. Without users and without
        /// this flag, the server refuses to listen anywhere but loopback.
        #[arg(long, env = "HINDSIGHT_INSECURE_TRUST")]
        insecure_trust: bool,
        /// TLS certificate chain (PEM); with --tls-key.
        #[arg(long, env = "HINDSIGHT_TLS_CERT")]
        tls_cert: Option<PathBuf>,
        /// TLS private key (PEM: PKCS#8, RSA or EC); with --tls-cert.
        #[arg(long, env = "HINDSIGHT_TLS_KEY")]
        tls_key: Option<PathBuf>,
        /// Refuse connections that do not use TLS.
        #[arg(long, env = "HINDSIGHT_TLS_REQUIRE")]
        tls_require: bool,
        /// Require a client certificate signed by a CA in this PEM file (implies --tls-require).
        #[arg(long, env = "HINDSIGHT_TLS_CLIENT_CA")]
        tls_client_ca: Option<PathBuf>,
        /// Memory all statements together may hold for sorts, joins, aggregates and large
        /// values, in MiB (default: half of the machine's or the cgroup's memory).
        #[arg(long, env = "HINDSIGHT_MEMORY_POOL_MB")]
        memory_pool_mb: Option<u64>,
        /// Serve Prometheus metrics at http://ADDR/metrics.
        #[arg(long, env = "HINDSIGHT_METRICS_LISTEN")]
        metrics_listen: Option<String>,
        /// Default statement_timeout in milliseconds (0: none); sessions may SET their own.
        #[arg(long, env = "HINDSIGHT_STATEMENT_TIMEOUT_MS")]
        statement_timeout_ms: Option<u64>,
        /// Memory one statement may use, in MiB, before it spills or fails with 53200.
        #[arg(long, env = "HINDSIGHT_MEMORY_LIMIT_MB")]
        memory_limit_mb: Option<u64>,
        /// Compact a table in the background once writes leave it this many small files
        /// (default 50; 0: never, only OPTIMIZE).
        #[arg(long, env = "HINDSIGHT_AUTO_COMPACT_FILES")]
        auto_compact_files: Option<usize>,
    },
    /// Manage the users in a config file (SCRAM-SHA-256 verifiers, never passwords).
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Write the credit-scoring demo tables into a warehouse.
    Demo {
        #[arg(long, env = "HINDSIGHT_WAREHOUSE")]
        warehouse: Option<String>,
        #[arg(long, env = "HINDSIGHT_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Run SQL in-process, without a server, and print the results.
    Sql {
        #[arg(short = 'c', long = "command")]
        command: String,
        #[arg(long, env = "HINDSIGHT_WAREHOUSE")]
        warehouse: Option<String>,
        #[arg(long, env = "HINDSIGHT_CONFIG")]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum UserAction {
    /// Add a user, or change its role and password. The password is read from
    /// HINDSIGHT_PASSWORD, else prompted for on a terminal, else read as a line from stdin.
    Add {
        name: String,
        #[arg(long)]
        role: Role,
        /// The config file to write (created if missing).
        #[arg(long, env = "HINDSIGHT_CONFIG", default_value = "hindsight.toml")]
        config: PathBuf,
    },
    /// Remove a user.
    Remove {
        name: String,
        #[arg(long, env = "HINDSIGHT_CONFIG", default_value = "hindsight.toml")]
        config: PathBuf,
    },
}

fn main() {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("HINDSIGHT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("hindsight=info,warn,buoyant_kernel=off,deltalake_core=error"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    // A panic is a bug that costs one statement (see `error::catch_panic`); it gets one log line,
    // not a backtrace on stderr for every malformed input a library panics on.
    std::panic::set_hook(Box::new(|info| tracing::error!(panic = %info, "panic")));
    let runtime = match hindsight::limits::runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(cli)) {
        eprintln!("error: {}", e.message());
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> hindsight::Result<()> {
    match cli.command {
        Command::Serve {
            warehouse,
            listen,
            max_connections,
            retention_days,
            config,
            demo,
            no_scheduler,
            insecure_trust,
            tls_cert,
            tls_key,
            tls_require,
            tls_client_ca,
            metrics_listen,
            statement_timeout_ms,
            memory_limit_mb,
            memory_pool_mb,
            auto_compact_files,
        } => {
            let config = Config::resolve(Overrides {
                warehouse,
                listen,
                max_connections,
                retention_days,
                config_file: config,
                insecure_trust,
                statement_timeout_ms,
                memory_limit_mb,
                memory_pool_mb,
                auto_compact_files,
                metrics_listen,
                tls_cert,
                tls_key,
                tls_require,
                tls_client_ca,
            })?;
            config.check_exposure()?;
            // Before anything is opened or bound: a TLS setup that fails stops the server.
            let tls = config.tls.as_ref().map(Tls::load).transpose()?;
            let warehouse = Warehouse::open_with_retention(&config.warehouse, config.retention_days).await?;
            warehouse.auto_compact().set_min_files(config.auto_compact_files);
            warehouse.set_memory_pool_bytes(config.memory_pool_bytes);
            let engine = Engine::new(warehouse.clone(), Session::background)?;
            if demo {
                hindsight::demo::write(&engine).await?;
            }
            let listener = tokio::net::TcpListener::bind(config.listen).await?;
            let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
            if let Some(addr) = config.metrics_listen {
                let metrics = tokio::net::TcpListener::bind(addr).await?;
                tracing::info!(listen = %metrics.local_addr()?, "metrics at /metrics");
                tokio::spawn(hindsight::metrics::serve(metrics, async {
                    let _ = metrics_stopped.await;
                }));
            }
            tracing::info!(
                listen = %listener.local_addr()?,
                warehouse = %warehouse.root(),
                auth = if config.users.is_empty() { "trust" } else { "scram-sha-256" },
                tls = tls.is_some(),
                memory_pool_mib = config.memory_pool_bytes >> 20,
                "hindsight {} ready: psql -h {} -p {} -U hindsight",
                env!("CARGO_PKG_VERSION"),
                config.listen.ip(),
                config.listen.port()
            );
            let (stop_scheduler, stopped) = tokio::sync::oneshot::channel::<()>();
            let scheduler = (!no_scheduler).then(|| {
                let s = hindsight::scheduler::Scheduler::new(engine.clone(), Default::default());
                tokio::spawn(s.run(async {
                    let _ = stopped.await;
                }))
            });
            let mut server = Server::new(engine)
                .with_max_connections(config.max_connections)
                .with_users(config.users.clone())
                .with_limits(config.limits.clone());
            if let Some(tls) = tls {
                server = server.with_tls(tls);
            }
            server.run(listener, hindsight::server::shutdown_signal()).await?;
            let _ = stop_metrics.send(());
            let _ = stop_scheduler.send(());
            if let Some(s) = scheduler {
                let _ = s.await;
            }
            tracing::info!("stopped");
            Ok(())
        }
        Command::User { action: UserAction::Add { name, role, config } } => {
            let password = read_password(&name)?;
            let verifier = Verifier::from_password(&password, hindsight::security::scram::ITERATIONS);
            let existed = hindsight::config::users_file::add(&config, &name, role, &verifier)?;
            println!("{} user {name} ({role}) in {}", if existed { "updated" } else { "added" }, config.display());
            Ok(())
        }
        Command::User { action: UserAction::Remove { name, config } } => {
            if hindsight::config::users_file::remove(&config, &name)? {
                println!("removed user {name} from {}", config.display());
                Ok(())
            } else {
                Err(hindsight::Error::Config(format!("no user {name} in {}", config.display())))
            }
        }
        Command::Demo { warehouse, config } => {
            let config = Config::resolve(Overrides { warehouse, config_file: config, ..Default::default() })?;
            let warehouse = Warehouse::open_with_retention(&config.warehouse, config.retention_days).await?;
            let written = hindsight::demo::write(&Engine::new(warehouse.clone(), Session::background)?).await?;
            println!("demo warehouse at {}: {}", warehouse.root(), written.join(", "));
            Ok(())
        }
        Command::Sql { command, warehouse, config } => {
            let config = Config::resolve(Overrides { warehouse, config_file: config, ..Default::default() })?;
            let warehouse = Warehouse::open_with_retention(&config.warehouse, config.retention_days).await?;
            let session = Session::admin(&Engine::new(warehouse, Session::background)?)?;
            for out in hindsight::commands::run_sql(&session, &command).await? {
                match out {
                    Output::Rows(stream) => {
                        let batches: Vec<_> = stream.try_collect().await?;
                        println!("{}", pretty_format_batches(&batches)?);
                    }
                    Output::Affected { verb, rows } => println!("{verb} {rows}"),
                    Output::Command(tag) => println!("{tag}"),
                    Output::Transaction(kind) => println!("{}", kind.tag()),
                    Output::CopyIn(_) | Output::CopyOut { .. } | Output::CopyOutFile { .. } => {
                        return Err(hindsight::Error::FeatureNotSupported(
                            "COPY needs a client connection; use psql against `hindsight serve`".into(),
                        ));
                    }
                }
            }
            Ok(())
        }
    }
}

/// From HINDSIGHT_PASSWORD, a terminal prompt (twice, unechoed), or one line of stdin (scripts).
fn read_password(user: &str) -> hindsight::Result<String> {
    use std::io::IsTerminal;
    let password = if let Ok(p) = std::env::var("HINDSIGHT_PASSWORD") {
        p
    } else if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("password for {user}: "))?;
        let again = rpassword::prompt_password("again: ")?;
        if first != again {
            return Err(hindsight::Error::Config("the passwords differ".into()));
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if password.is_empty() {
        return Err(hindsight::Error::Config("empty password".into()));
    }
    Ok(password)
}
