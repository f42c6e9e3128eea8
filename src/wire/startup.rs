//! Startup and authentication: `trust` or SCRAM-SHA-256, then the session learns who connected.
//!
//! pgwire runs the SCRAM exchange (`AuthDriver` and its SASL mechanisms); this file decides which
//! exchange a connection gets, binds the authenticated user's role to the session, and registers
//! the connection for cancel requests.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::driver::AuthOutcome;
use pgwire::api::auth::mechanism::AuthMechanismFactory;
use pgwire::api::auth::sasl::SaslMechanisms;
use pgwire::api::auth::sasl::scram::ScramAuth;
use pgwire::api::auth::{
    AuthDriver, DefaultServerParameterProvider, ServerParameterProvider, StartupHandler, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::ClientInfo;
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::{Authentication, PasswordMessageFamily};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use super::cancel::{Cancels, Registration};
use crate::config::Limits;
use crate::error::Result;
use crate::metrics::METRICS;
use crate::security::scram::ScramSource;
use crate::security::{Role, Users};
use crate::session::Session;
use crate::sql::settings::PG_VERSION;

/// What every connection of one server shares: how to authenticate, limits, and the registry
/// that routes cancel requests (which arrive on a connection of their own) to their query.
pub struct Shared {
    pub users: Arc<Users>,
    /// None: `trust`, everyone is an admin (only with no users configured).
    sasl: Option<Sasl>,
    driver: AuthDriver<Params>,
    pub cancels: Arc<Cancels>,
    pub limits: Limits,
    /// Refuse connections that are not TLS (`[tls] require`, or client certificates).
    require_tls: bool,
}

/// SCRAM as offered to a plaintext connection, and to a TLS one (which also gets
/// SCRAM-SHA-256-PLUS: channel binding hashes the server certificate, which a plaintext
/// connection never saw; offering it there made libpq refuse to connect with
/// `sslmode=disable`).
struct Sasl {
    plain: SaslMechanisms,
    tls: SaslMechanisms,
}

impl Shared {
    /// `cert_pem`: the TLS certificate, which turns on SCRAM-SHA-256-PLUS (channel binding) for
    /// TLS connections; `require_tls` refuses the others.
    pub fn new(users: Users, cert_pem: Option<&[u8]>, require_tls: bool, limits: Limits) -> Result<Self> {
        let users = Arc::new(users);
        let scram = |pem: Option<&[u8]>| -> Result<SaslMechanisms> {
            let mut scram = ScramAuth::new(Arc::new(ScramSource::new(users.clone())));
            scram.set_iterations(crate::security::scram::ITERATIONS);
            if let Some(pem) = pem {
                scram
                    .configure_certificate(pem)
                    .map_err(|e| crate::Error::Config(format!("TLS: channel binding: {e}")))?;
            }
            Ok(SaslMechanisms::new(vec![Arc::new(scram)]))
        };
        let sasl = if users.is_empty() { None } else { Some(Sasl { plain: scram(None)?, tls: scram(cert_pem)? }) };
        let params = Params { base: parameters(), users: users.clone() };
        // No pgwire connection manager: cancel requests go through `Cancels` (see cancel.rs).
        let driver = AuthDriver::new(params);
        Ok(Self { users, sasl, driver, cancels: Arc::default(), limits, require_tls })
    }
}

/// Whether a password message can be decoded without pgwire panicking on it: pgwire reads a
/// SASLInitialResponse's mechanism name, then a length and that many bytes, without checking
/// that they are there ("split_to out of bounds").
fn well_formed(message: &PgWireFrontendMessage) -> bool {
    let PgWireFrontendMessage::PasswordMessageFamily(PasswordMessageFamily::Raw(body)) = message else { return true };
    // Passwords are only ever exchanged by SCRAM here. Its first message is the mechanism's
    // name, a NUL, a length and that many bytes; its later ones are text without a NUL.
    if body.is_empty() {
        return false;
    }
    let Some(nul) = body.iter().position(|b| *b == 0) else { return true };
    let rest = &body[nul + 1..];
    if rest.len() < 4 {
        return false;
    }
    let len = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
    len == -1 || (len >= 0 && len as usize <= rest.len() - 4)
}

fn protocol_violation(message: &str) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("FATAL".into(), "08P01".into(), message.into())))
}

fn parameters() -> DefaultServerParameterProvider {
    let mut p = DefaultServerParameterProvider::default();
    p.server_version = PG_VERSION.to_string();
    p.date_style = "ISO, MDY".to_string();
    p.time_zone = "UTC".to_string();
    p
}

/// The ParameterStatus messages after authentication; `is_superuser` follows the user's role.
struct Params {
    base: DefaultServerParameterProvider,
    users: Arc<Users>,
}

impl ServerParameterProvider for Params {
    fn server_parameters<C: ClientInfo>(&self, client: &C) -> Option<HashMap<String, String>> {
        let mut params = self.base.server_parameters(client)?;
        let user = client.metadata().get("user").map_or("", String::as_str);
        let admin = self.users.role(user) == Some(Role::Admin);
        params.insert("is_superuser".into(), if admin { "on" } else { "off" }.into());
        Some(params)
    }
}

/// What a connection's cancel requests arrive on, once it is registered.
pub type Registered = (tokio::sync::watch::Receiver<u64>, Registration);

impl Shared {
    /// One startup message of a connection whose session is `session`: `Some` once the client
    /// has proved who it is, its role is bound to the session and it is registered for cancel
    /// requests.
    pub async fn startup<C>(&self, client: &mut C, message: PgWireFrontendMessage, session: &Session) -> PgWireResult<Option<Registered>>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !well_formed(&message) {
            METRICS.auth_failures.inc();
            return Err(protocol_violation("invalid SASL message: malformed SASLInitialResponse"));
        }
        let outcome = match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                if self.require_tls && !client.is_secure() {
                    METRICS.auth_failures.inc();
                    let user = client.metadata().get("user").cloned().unwrap_or_default();
                    return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                        "FATAL".into(),
                        "28000".into(),
                        format!(
                            "no encryption: this server accepts only TLS connections (user \"{user}\" from {}); \
                             connect with sslmode=require or stronger",
                            client.socket_addr().ip()
                        ),
                    ))));
                }
                if let Some(app) = client.metadata().get("application_name") {
                    session.settings().set("application_name", app.clone());
                }
                match &self.sasl {
                    None => Ok(AuthOutcome::Authenticated { identity: None, final_message: None }),
                    Some(sasl) => {
                        let offered = if client.is_secure() { &sasl.tls } else { &sasl.plain };
                        self.driver.begin_authentication(client, offered.create()).await
                    }
                }
            }
            PgWireFrontendMessage::PasswordMessageFamily(message) => {
                // A panic in the exchange is a malformed message (pgwire decodes some fields
                // unchecked); it ends this connection's startup, nothing else.
                use futures::FutureExt;
                match std::panic::AssertUnwindSafe(self.driver.advance_authentication(client, message)).catch_unwind().await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(protocol_violation("invalid SASL message")),
                }
            }
            _ => return Ok(None),
        };
        match outcome {
            Ok(AuthOutcome::InProgress) => Ok(None),
            Ok(AuthOutcome::Authenticated { final_message, .. }) => self.admit(client, final_message, session).await.map(Some),
            Err(e) => {
                METRICS.auth_failures.inc();
                tracing::info!(user = ?client.metadata().get("user"), peer = %client.socket_addr(), error = %e, "authentication failed");
                Err(e)
            }
        }
    }

    /// The client proved who it is: bind its role to the session and finish the startup.
    async fn admit<C>(&self, client: &mut C, final_message: Option<Authentication>, session: &Session) -> PgWireResult<Registered>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let user = client.metadata().get("user").cloned().unwrap_or_default();
        let Some(role) = self.users.role(&user) else {
            // Unreachable in practice: SCRAM only succeeds for configured users.
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".into(),
                "28000".into(),
                format!("role \"{user}\" does not exist"),
            ))));
        };
        session.set_identity(&user, role);
        self.driver.complete_authentication(client, final_message).await?;
        let (pid, secret) = client.pid_and_secret_key();
        Ok(self.cancels.register(pid, &secret))
    }
}

/// The handlers for a connection over `max_connections`: it learns why, as from PostgreSQL,
/// instead of seeing its socket closed.
pub struct TooManyConnections;

#[async_trait]
impl StartupHandler for TooManyConnections {
    async fn on_startup<C>(&self, _client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(_) => Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".into(),
                "53300".into(),
                "sorry, too many clients already".into(),
            )))),
            _ => Ok(()),
        }
    }
}

impl pgwire::api::PgWireServerHandlers for TooManyConnections {
    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::new(TooManyConnections)
    }
}
