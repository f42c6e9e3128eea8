//! SCRAM-SHA-256 verifiers: made by `hindsight user add`, read from the config file, and handed to
//! pgwire's SCRAM exchange. A verifier lets the server check a client's proof without ever
//! holding the password; its format is PostgreSQL's, so one can be copied from `pg_authid`.

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use pgwire::api::auth::sasl::scram::{ScramSecret, gen_salted_password};
use pgwire::api::auth::{AuthSource, LoginInfo, Password};
use pgwire::error::{PgWireError, PgWireResult};

use super::Users;

/// PostgreSQL's default, and the minimum RFC 7677 asks for.
pub const ITERATIONS: usize = 4096;
const PREFIX: &str = "SCRAM-SHA-256$";

#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    pub iterations: usize,
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").field("iterations", &self.iterations).finish_non_exhaustive()
    }
}

impl Verifier {
    /// Derives a verifier with a fresh random salt. The password is normalised with SASLprep, as
    /// libpq does on the client side.
    pub fn from_password(password: &str, iterations: usize) -> Self {
        let salt: [u8; 16] = rand::random();
        Self::derive(password, &salt, iterations)
    }

    fn derive(password: &str, salt: &[u8], iterations: usize) -> Self {
        let salted = gen_salted_password(password, salt, iterations);
        match ScramSecret::verifier_from_salted_password(salt.to_vec(), salted, iterations) {
            ScramSecret::Verifier { salt, iterations, stored_key, server_key } => {
                Self { iterations, salt, stored_key, server_key }
            }
            // verifier_from_salted_password only ever builds a Verifier.
            ScramSecret::SaltedPassword { .. } => unreachable!("pgwire returned a salted password"),
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("not a SCRAM-SHA-256 verifier (expected {PREFIX}<iterations>:<salt>$<StoredKey>:<ServerKey>)");
        let rest = text.trim().strip_prefix(PREFIX).ok_or_else(bad)?;
        let (head, keys) = rest.split_once('$').ok_or_else(bad)?;
        let (iterations, salt) = head.split_once(':').ok_or_else(bad)?;
        let (stored, server) = keys.split_once(':').ok_or_else(bad)?;
        let iterations: usize = iterations.parse().map_err(|_| bad())?;
        if iterations < ITERATIONS {
            return Err(format!("{iterations} iterations is below SCRAM's minimum of {ITERATIONS}"));
        }
        let b64 = |s: &str| STANDARD.decode(s).map_err(|e| format!("{}: {e}", bad()));
        let v = Self { iterations, salt: b64(salt)?, stored_key: b64(stored)?, server_key: b64(server)? };
        if v.stored_key.len() != 32 || v.server_key.len() != 32 {
            return Err(bad());
        }
        Ok(v)
    }

    fn secret(&self) -> ScramSecret {
        ScramSecret::Verifier {
            salt: self.salt.clone(),
            iterations: self.iterations,
            stored_key: self.stored_key.clone(),
            server_key: self.server_key.clone(),
        }
    }
}

impl std::fmt::Display for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{PREFIX}{}:{}${}:{}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(&self.stored_key),
            STANDARD.encode(&self.server_key)
        )
    }
}

/// The users as pgwire's SCRAM exchange asks for them.
#[derive(Debug)]
pub struct ScramSource {
    users: Arc<Users>,
    /// Answers for names that are not users: the exchange runs to the proof and fails there, as
    /// PostgreSQL's mock authentication does, so a client cannot tell which names exist.
    mock: Verifier,
}

impl ScramSource {
    pub fn new(users: Arc<Users>) -> Self {
        let random: [u8; 32] = rand::random();
        Self { users, mock: Verifier::derive(&STANDARD.encode(random), b"hindsight-mock-salt", ITERATIONS) }
    }
}

#[async_trait]
impl AuthSource for ScramSource {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        // Only SCRAM is offered, and it asks for `get_scram_secret`.
        Err(PgWireError::InvalidPassword(login.user().unwrap_or_default().to_owned()))
    }

    async fn get_scram_secret(&self, login: &LoginInfo) -> PgWireResult<(ScramSecret, Option<()>)> {
        let verifier = login.user().and_then(|u| self.users.verifier(u)).unwrap_or(&self.mock);
        Ok((verifier.secret(), None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verifier_prints_and_parses_back() {
        let v = Verifier::from_password("correct horse", ITERATIONS);
        let text = v.to_string();
        assert!(text.starts_with("SCRAM-SHA-256$4096:"), "{text}");
        assert_eq!(Verifier::parse(&text).unwrap(), v);
        assert!(Verifier::parse("md5abc").is_err());
        assert!(Verifier::parse(&text.replace("$4096:", "$10:")).unwrap_err().contains("minimum"));
    }
}
