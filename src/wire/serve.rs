//! One connection's message loop: pgwire's own (`process_socket`), with one addition: when the
//! server shuts down, a connection waiting for its next statement is told so with PostgreSQL's
//! FATAL `57P01` ("terminating connection due to administrator command") and closed at once;
//! a statement already running finishes first (the server's drain time bounds it).

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use pgwire::api::{ClientInfo, PgWireConnectionState, PgWireServerHandlers};
use pgwire::error::ErrorInfo;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::TlsAcceptor;
use pgwire::tokio::server::{negotiate_tls, process_error, process_message};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// As pgwire's: a client that has not finished its startup in this time is dropped.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Serves one connection until the client leaves, a FATAL error, or `shutdown` turns true while
/// the connection is idle.
pub async fn serve(socket: TcpStream, tls: Option<TlsAcceptor>, handlers: super::Handlers, mut shutdown: watch::Receiver<bool>) -> std::io::Result<()> {
    let startup_timeout = tokio::time::sleep(STARTUP_TIMEOUT);
    tokio::pin!(startup_timeout);
    let socket = tokio::select! {
        _ = &mut startup_timeout => return Ok(()),
        socket = negotiate_tls(socket, tls) => socket?,
    };
    // A client that asked for TLS directly when the server has none.
    let Some(mut socket) = socket else { return Ok(()) };
    let startup = handlers.startup_handler();
    let simple = handlers.simple_query_handler();
    let extended = handlers.extended_query_handler();
    let copy = handlers.copy_handler();
    let cancel = handlers.cancel_handler();
    let errors = handlers.error_handler();
    loop {
        let msg = match socket.state() {
            PgWireConnectionState::AwaitingStartup | PgWireConnectionState::AuthenticationInProgress => tokio::select! {
                _ = &mut startup_timeout => None,
                msg = socket.next() => msg,
            },
            PgWireConnectionState::ReadyForQuery => tokio::select! {
                // What the client already sent is served first: the rest of an extended-protocol
                // exchange (its Sync) after a statement that was running at shutdown.
                biased;
                msg = socket.next() => msg,
                // Already true when a statement that was running at shutdown has just ended.
                _ = async { drop(shutdown.wait_for(|stop| *stop).await) } => {
                    let info = ErrorInfo::new("FATAL".into(), "57P01".into(), "terminating connection due to administrator command".into());
                    let _ = socket.send(PgWireBackendMessage::ErrorResponse(info.into())).await;
                    let _ = socket.close().await;
                    return Ok(());
                }
            },
            _ => socket.next().await,
        };
        let Some(Ok(msg)) = msg else { break };
        // The client is leaving; some (asyncpg) wait for the server to close first.
        if matches!(msg, PgWireFrontendMessage::Terminate(_)) {
            break;
        }
        let is_extended_query = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => msg.is_extended_query(),
        };
        let is_cancel_request = matches!(msg, PgWireFrontendMessage::CancelRequest(_));
        if let Err(mut e) = process_message(msg, &mut socket, startup.clone(), simple.clone(), extended.clone(), copy.clone(), cancel.clone()).await {
            pgwire::api::ErrorHandler::on_error(errors.as_ref(), &socket, &mut e);
            let fatal = e.is_fatal();
            process_error(&mut socket, e, is_extended_query).await?;
            if fatal {
                break;
            }
        }
        if is_cancel_request {
            break;
        }
    }
    Ok(())
}
