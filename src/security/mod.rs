//! Who may connect and what each may do: users and their SCRAM verifiers, roles, TLS, and the
//! directories server-side files may live in (`paths`).
//!
//! Owns: the user list (from the config file), the role a statement needs, the TLS acceptor,
//! path confinement. Must not: speak the protocol (`wire` drives the handshake with what this
//! module provides) or run statements (`session` asks `roles` before it does).

pub mod paths;
pub mod roles;
pub mod scram;
pub mod tls;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

use crate::error::{Error, Result};


/// What a user may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// SELECT, time travel, historical and online features, REPRODUCE DATASET, SHOW.
    Reader,
    /// Also INSERT, UPDATE, DELETE, MERGE and COPY FROM STDIN.
    Writer,
    /// Also DDL, feature views, evaluations, datasets, VACUUM and server-side files.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Admin => "admin",
        }
    }

    /// Refuses `what` unless this role is at least `needed` (SQLSTATE 42501).
    pub fn check(self, needed: Role, what: &str) -> Result<()> {
        if self >= needed {
            Ok(())
        } else {
            Err(Error::InsufficientPrivilege(format!(
                "permission denied: {what} needs the {} role; this user has {}",
                needed.as_str(),
                self.as_str()
            )))
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "reader" => Ok(Role::Reader),
            "writer" => Ok(Role::Writer),
            "admin" => Ok(Role::Admin),
            other => Err(Error::Config(format!("unknown role {other:?}: use reader, writer or admin"))),
        }
    }
}

/// One `[users.NAME]` table of the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    pub role: Role,
    /// PostgreSQL's verifier format: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
    pub scram: String,
}

/// The configured users, their verifiers checked once at startup.
#[derive(Debug, Default, Clone)]
pub struct Users {
    users: BTreeMap<String, (Role, scram::Verifier)>,
}

impl Users {
    pub fn from_entries(entries: &BTreeMap<String, UserEntry>) -> Result<Self> {
        let mut users = BTreeMap::new();
        for (name, entry) in entries {
            let verifier = scram::Verifier::parse(&entry.scram)
                .map_err(|e| Error::Config(format!("users.{name}.scram: {e}")))?;
            users.insert(name.clone(), (entry.role, verifier));
        }
        Ok(Self { users })
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// What `user` may do once connected: with no users configured (`trust`) everyone is an
    /// admin; otherwise the user's role, if it is one.
    pub fn role(&self, user: &str) -> Option<Role> {
        if self.is_empty() {
            return Some(Role::Admin);
        }
        self.users.get(user).map(|(r, _)| *r)
    }

    pub fn verifier(&self, user: &str) -> Option<&scram::Verifier> {
        self.users.get(user).map(|(_, v)| v)
    }
}
