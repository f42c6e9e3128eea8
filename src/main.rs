//! The `hindsight` binary: parse the command line, set up logging, run a command. No logic.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use datafusion::arrow::util::pretty::pretty_format_batches;
use futures::TryStreamExt;
use hindsight::catalog::Warehouse;
use hindsight::config::{Config, Overrides};
use hindsight::session::{Output, Session};

#[derive(Parser)]
#[command(name = "hindsight", version, about = "A SQL-native feature store and evaluation engine over Delta Lake")]
struct Cli {
    #[command(subcommand)]
    command: Command,
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

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HINDSIGHT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("hindsight=info,warn,buoyant_kernel=off,deltalake_core=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Cli::parse()).await {
        eprintln!("error: {}", e.message());
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> hindsight::Result<()> {
    match cli.command {
        Command::Serve { warehouse, listen, max_connections, retention_days, config, demo, no_scheduler } => {
            let config =
                Config::resolve(Overrides { warehouse, listen, max_connections, retention_days, config_file: config })?;
            let warehouse = Warehouse::open_with_retention(&config.warehouse, config.retention_days).await?;
            if demo {
                hindsight::demo::write(&warehouse).await?;
            }
            let listener = tokio::net::TcpListener::bind(config.listen).await?;
            tracing::info!(
                listen = %listener.local_addr()?,
                warehouse = %warehouse.root(),
                "hindsight {} ready: psql -h {} -p {} -U hindsight",
                env!("CARGO_PKG_VERSION"),
                config.listen.ip(),
                config.listen.port()
            );
            let (stop_scheduler, stopped) = tokio::sync::oneshot::channel::<()>();
            let scheduler = (!no_scheduler).then(|| {
                let s = hindsight::scheduler::Scheduler::new(warehouse.clone(), Default::default());
                tokio::spawn(s.run(async {
                    let _ = stopped.await;
                }))
            });
            hindsight::server::run(listener, warehouse, config.max_connections, hindsight::server::shutdown_signal())
                .await?;
            let _ = stop_scheduler.send(());
            if let Some(s) = scheduler {
                let _ = s.await;
            }
            tracing::info!("stopped");
            Ok(())
        }
        Command::Demo { warehouse, config } => {
            let config = Config::resolve(Overrides { warehouse, config_file: config, ..Default::default() })?;
            let warehouse = Warehouse::open_with_retention(&config.warehouse, config.retention_days).await?;
            let written = hindsight::demo::write(&warehouse).await?;
            println!("demo warehouse at {}: {}", warehouse.root(), written.join(", "));
            Ok(())
        }
        Command::Sql { command, warehouse, config } => {
            let config = Config::resolve(Overrides { warehouse, config_file: config, ..Default::default() })?;
            let warehouse = Warehouse::open_with_retention(&config.warehouse, config.retention_days).await?;
            let session = Session::new(warehouse)?;
            for out in session.run_sql(&command).await? {
                match out {
                    Output::Rows(stream) => {
                        let batches: Vec<_> = stream.try_collect().await?;
                        println!("{}", pretty_format_batches(&batches)?);
                    }
                    Output::Affected { verb, rows } => println!("{verb} {rows}"),
                    Output::Command(tag) => println!("{tag}"),
                    Output::CopyIn(_) | Output::CopyOut { .. } => {
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
