//! Server configuration: command-line flags, then `HINDSIGHT_*` environment variables, then a
//! TOML file, then defaults. clap resolves the first two; this module merges in the file.
//!
//! Owns: the settings a server starts with. Must not: open the warehouse or bind sockets.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::security::paths::FileDirectories;
use crate::security::tls::TlsConfig;
use crate::security::{UserEntry, Users};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:5433";
pub const DEFAULT_WAREHOUSE: &str = "./warehouse";
/// The database name clients connect to; any other name is accepted and means the same warehouse.
pub use crate::catalog::DATABASE;

/// What a `hindsight serve` runs with, after every source has been merged.
#[derive(Debug, Clone)]
pub struct Config {
    pub warehouse: String,
    pub listen: SocketAddr,
    pub max_connections: usize,
    /// Time-travel retention set on every table the warehouse creates (see `catalog`).
    pub retention_days: u64,
    /// Users who may connect, with SCRAM verifiers. None: `trust`, allowed only on loopback.
    pub users: Users,
    pub tls: Option<TlsConfig>,
    /// Serve without authentication on a non-loopback address (the operator said so).
    pub insecure_trust: bool,
    pub limits: Limits,
    /// Where Prometheus scrapes `/metrics`, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// Small files a write may leave in a table before it is compacted (0: never).
    pub auto_compact_files: usize,
    /// The memory pool all statements share (`limits::memory`).
    pub memory_pool_bytes: usize,
}

/// What one session may use; `Limits::default()` is unlimited apart from message size.
#[derive(Debug, Clone)]
pub struct Limits {
    /// A session's default `statement_timeout` (`SET statement_timeout` changes it per session).
    pub statement_timeout: Option<Duration>,
    /// DataFusion memory pool per session (one statement runs at a time on a connection, so
    /// this is the per-query limit). Sorts and aggregations spill to disk before failing.
    pub memory_limit: Option<usize>,
    /// Largest query text, parameter set or COPY data message accepted.
    pub max_message_bytes: usize,
    /// Where admins may COPY to and from server-side files; none by default.
    pub file_directories: FileDirectories,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            statement_timeout: None,
            memory_limit: None,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            file_directories: FileDirectories::default(),
        }
    }
}

pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 << 20;

/// The TOML file's shape. Every key is optional; flags and environment variables win.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub warehouse: Option<String>,
    pub listen: Option<String>,
    pub max_connections: Option<usize>,
    pub retention_days: Option<u64>,
    pub insecure_trust: Option<bool>,
    pub statement_timeout_ms: Option<u64>,
    pub memory_limit_mb: Option<u64>,
    pub memory_pool_mb: Option<u64>,
    pub auto_compact_files: Option<usize>,
    pub max_message_bytes: Option<usize>,
    pub metrics_listen: Option<String>,
    #[serde(default)]
    pub file_directories: Vec<PathBuf>,
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub users: BTreeMap<String, UserEntry>,
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
    pub insecure_trust: bool,
    pub statement_timeout_ms: Option<u64>,
    pub memory_limit_mb: Option<u64>,
    pub memory_pool_mb: Option<u64>,
    pub auto_compact_files: Option<usize>,
    pub metrics_listen: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_require: bool,
    pub tls_client_ca: Option<PathBuf>,
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
        let mut tls = match (overrides.tls_cert, overrides.tls_key) {
            (Some(cert), Some(key)) => Some(TlsConfig::new(cert, key)),
            (None, None) => file.tls,
            _ => return Err(Error::Config("--tls-cert and --tls-key go together".into())),
        };
        if overrides.tls_require || overrides.tls_client_ca.is_some() {
            let Some(t) = tls.as_mut() else {
                return Err(Error::Config("--tls-require and --tls-client-ca need a TLS certificate and key".into()));
            };
            t.require |= overrides.tls_require;
            if overrides.tls_client_ca.is_some() {
                t.client_ca = overrides.tls_client_ca;
            }
        }
        let metrics_listen = match overrides.metrics_listen.or(file.metrics_listen) {
            Some(a) => Some(a.parse().map_err(|e| Error::Config(format!("metrics address {a:?}: {e}")))?),
            None => None,
        };
        let limits = Limits {
            statement_timeout: overrides
                .statement_timeout_ms
                .or(file.statement_timeout_ms)
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis),
            memory_limit: overrides.memory_limit_mb.or(file.memory_limit_mb).map(|mb| (mb as usize) << 20),
            max_message_bytes: file.max_message_bytes.unwrap_or(DEFAULT_MAX_MESSAGE_BYTES),
            file_directories: FileDirectories::new(&file.file_directories)?,
        };
        Ok(Config {
            users: Users::from_entries(&file.users)?,
            tls,
            insecure_trust: overrides.insecure_trust || file.insecure_trust.unwrap_or(false),
            limits,
            metrics_listen,
            warehouse: overrides
                .warehouse
                .or(file.warehouse)
                .unwrap_or_else(|| DEFAULT_WAREHOUSE.to_string()),
            listen,
            max_connections: overrides.max_connections.or(file.max_connections).unwrap_or(256),
            memory_pool_bytes: overrides
                .memory_pool_mb
                .or(file.memory_pool_mb)
                .map_or_else(crate::limits::memory::default_pool_bytes, |mb| (mb as usize) << 20),
            auto_compact_files: overrides
                .auto_compact_files
                .or(file.auto_compact_files)
                .unwrap_or(crate::catalog::DEFAULT_AUTO_COMPACT_FILES),
            retention_days: overrides
                .retention_days
                .or(file.retention_days)
                .unwrap_or(crate::catalog::DEFAULT_RETENTION_DAYS),
        })
    }

    /// `trust` is for a server only this machine can reach; anything else needs users, unless
    /// the operator explicitly asked for an open server.
    pub fn check_exposure(&self) -> Result<()> {
        if self.users.is_empty() && !self.listen.ip().is_loopback() && !self.insecure_trust {
            return Err(Error::Config(format!(
                "refusing to listen on {} without authentication: add users with `hindsight user add NAME --role ROLE` \
                 (and point --config at that file), or pass --insecure-trust to serve everyone who can reach the port",
                self.listen
            )));
        }
        Ok(())
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

/// `hindsight user add` / `user remove`: edits the `[users]` of a config file in place, keeping
/// everything else in it (comments too). The file holds verifiers, never passwords.
pub mod users_file {
    use std::path::Path;

    use toml_edit::{DocumentMut, Item, Table, value};

    use crate::error::{Error, Result};
    use crate::security::Role;
    use crate::security::scram::Verifier;

    fn load(path: &Path) -> Result<DocumentMut> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::Config(format!("cannot read {}: {e}", path.display()))),
        };
        text.parse().map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    /// Written next to the old file and renamed over it, so a crash leaves one or the other.
    fn save(path: &Path, doc: &DocumentMut) -> Result<()> {
        let tmp = path.with_extension("toml.tmp");
        std::fs::write(&tmp, doc.to_string())
            .and_then(|()| restrict(&tmp))
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| Error::Config(format!("cannot write {}: {e}", path.display())))
    }

    #[cfg(unix)]
    fn restrict(path: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
    }

    #[cfg(not(unix))]
    fn restrict(_: &Path) -> std::io::Result<()> {
        Ok(())
    }

    /// Adds the user, or replaces its role and verifier. Returns whether it existed.
    pub fn add(path: &Path, name: &str, role: Role, verifier: &Verifier) -> Result<bool> {
        if name.is_empty() || name.len() > 63 {
            return Err(Error::Config("a user name has 1 to 63 characters".into()));
        }
        let mut doc = load(path)?;
        let users = doc.entry("users").or_insert_with(|| {
            let mut t = Table::new();
            t.set_implicit(true);
            Item::Table(t)
        });
        let users = users
            .as_table_mut()
            .ok_or_else(|| Error::Config(format!("{}: `users` is not a table", path.display())))?;
        let existed = users.contains_key(name);
        let mut user = Table::new();
        user.insert("role", value(role.as_str()));
        user.insert("scram", value(verifier.to_string()));
        users.insert(name, Item::Table(user));
        save(path, &doc)?;
        Ok(existed)
    }

    /// Removes the user; false if there was none.
    pub fn remove(path: &Path, name: &str) -> Result<bool> {
        let mut doc = load(path)?;
        let removed = doc.get_mut("users").and_then(Item::as_table_mut).and_then(|u| u.remove(name)).is_some();
        if removed {
            save(path, &doc)?;
        }
        Ok(removed)
    }
}
