//! Server configuration: command-line flags, then `HINDSIGHT_*` environment variables, then a
//! TOML file, then defaults. clap resolves the first two; this module merges in the file.
//!
//! Owns: the settings a server starts with. Must not: open the warehouse or bind sockets.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:5433";
pub const DEFAULT_WAREHOUSE: &str = "./warehouse";
/// The database name clients connect to; any other name is accepted and means the same warehouse.
pub const DATABASE: &str = "hindsight";

/// What a `hindsight serve` runs with, after every source has been merged.
#[derive(Debug, Clone)]
pub struct Config {
    pub warehouse: String,
    pub listen: SocketAddr,
    pub max_connections: usize,
    /// Time-travel retention set on every table the warehouse creates (see `catalog`).
    pub retention_days: u64,
}

/// The TOML file's shape. Every key is optional; flags and environment variables win.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub warehouse: Option<String>,
    pub listen: Option<String>,
    pub max_connections: Option<usize>,
    pub retention_days: Option<u64>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }
}

/// Values that came from flags or the environment (clap has already merged those two).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub warehouse: Option<String>,
    pub listen: Option<String>,
    pub max_connections: Option<usize>,
    pub retention_days: Option<u64>,
    pub config_file: Option<PathBuf>,
}

impl Config {
    pub fn resolve(overrides: Overrides) -> Result<Self> {
        let file = match &overrides.config_file {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let listen = overrides
            .listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen = listen
            .parse()
            .map_err(|e| Error::Config(format!("listen address {listen:?}: {e}")))?;
        Ok(Config {
            warehouse: overrides
                .warehouse
                .or(file.warehouse)
                .unwrap_or_else(|| DEFAULT_WAREHOUSE.to_string()),
            listen,
            max_connections: overrides.max_connections.or(file.max_connections).unwrap_or(256),
            retention_days: overrides
                .retention_days
                .or(file.retention_days)
                .unwrap_or(crate::catalog::DEFAULT_RETENTION_DAYS),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_file_and_defaults_fill_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.toml");
        std::fs::write(&path, "warehouse = \"/from/file\"\nlisten = \"127.0.0.1:7000\"\n").unwrap();
        let cfg = Config::resolve(Overrides {
            listen: Some("127.0.0.1:9000".into()),
            config_file: Some(path),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(cfg.warehouse, "/from/file");
        assert_eq!(cfg.listen.port(), 9000);
        assert_eq!(cfg.max_connections, 256);
    }

    #[test]
    fn unknown_keys_in_the_file_are_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.toml");
        std::fs::write(&path, "wharehouse = \"x\"\n").unwrap();
        let err = Config::resolve(Overrides { config_file: Some(path), ..Default::default() });
        assert!(err.unwrap_err().to_string().contains("unknown field"));
    }
}
