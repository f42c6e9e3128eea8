//! One client connection: pgwire's handler traits over one `Session`.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::execution::SendableRecordBatchStream;
use futures::{Sink, SinkExt, StreamExt, stream};
use pgwire::api::auth::StartupHandler;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::copy::CopyHandler;
use pgwire::api::copy::{send_copy_both_response, send_copy_in_response, send_copy_out_response};
use pgwire::api::portal::{Format, Portal, PortalExecutionState};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler, send_execution_response, send_query_response};
use pgwire::api::results::{
    DescribeResponse,
    CopyEncoder, CopyResponse, DataRowEncoder, FieldInfo, QueryResponse, Response, Tag,
};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{ClientInfo, ClientPortalStore, DEFAULT_NAME, PgWireConnectionState, PgWireServerHandlers, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::data::{NoData, ParameterDescription, RowDescription};
use pgwire::messages::extendedquery::{Bind, BindComplete, Describe, Execute, TARGET_TYPE_BYTE_PORTAL, TARGET_TYPE_BYTE_STATEMENT};
use pgwire::messages::response::EmptyQueryResponse;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::sync::Mutex;

use super::encode::{BatchEncoder, CopyTextWriter, describe, field_infos, pg_type};
use super::cancel::CancelRequests;
use super::interrupt::{Interrupt, Peer};
use super::params;
use super::startup::{Registered, Shared};
use crate::copy::{CopyFormat, CopyOptions, CopyUpload};
use crate::error::Error;
use crate::metrics::METRICS;
use crate::commands::Run;
use crate::session::{Description, Output, Session};
use crate::sql::TransactionKind;

/// Per-connection state: the session, what the server's connections share, and the COPY upload
/// in flight, if any.
pub struct Connection {
    session: Arc<Session>,
    shared: Arc<Shared>,
    parser: Arc<Parser>,
    upload: Mutex<Option<CopyUpload>>,
    /// This connection's cancel requests, once it is registered (after authentication).
    cancel: std::sync::Mutex<Option<Registered>>,
    /// The client's socket, watched while a statement runs (see `Interrupt`).
    peer: Option<Peer>,
}

impl Connection {
    pub fn new(session: Session, shared: Arc<Shared>, peer: Option<Peer>) -> Arc<Self> {
        let session = Arc::new(session);
        let parser = Arc::new(Parser { session: session.clone(), max_bytes: shared.limits.max_message_bytes });
        Arc::new(Self { parser, session, shared, upload: Mutex::new(None), cancel: std::sync::Mutex::new(None), peer })
    }

    fn set_cancel(&self, registered: Registered) {
        *self.cancel.lock().unwrap_or_else(|p| p.into_inner()) = Some(registered);
    }

    /// What stops this connection's next statement early: a cancel request for it, or the
    /// session's statement_timeout.
    fn interrupt(&self) -> Interrupt {
        let cancel = self.cancel.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|(rx, _)| rx.clone());
        Interrupt::new(cancel, self.session.statement_timeout(), self.peer)
    }

    /// Refuses a message over `max_message_bytes` (54000) before anything is parsed from it.
    fn check_size(&self, bytes: usize, what: &str) -> Result<(), Error> {
        check_size(bytes, self.shared.limits.max_message_bytes, what)
    }
}

fn check_size(bytes: usize, max: usize, what: &str) -> Result<(), Error> {
    if bytes > max {
        return Err(Error::ProgramLimit(format!(
            "{what} is {bytes} bytes, over this server's max_message_bytes of {max}"
        )));
    }
    Ok(())
}

/// Counts a statement when its work is done: on drop, so a stream cut short by the client or a
/// cancel still counts, with its error if it had one.
struct QueryTimer {
    kind: &'static str,
    started: std::time::Instant,
    sqlstate: std::sync::Mutex<Option<&'static str>>,
}

impl QueryTimer {
    fn start(kind: &'static str) -> Arc<Self> {
        Arc::new(Self { kind, started: std::time::Instant::now(), sqlstate: std::sync::Mutex::new(None) })
    }

    fn failed(&self, e: &Error) {
        *self.sqlstate.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.sqlstate());
    }
}

impl Drop for QueryTimer {
    fn drop(&mut self) {
        let state = *self.sqlstate.get_mut().unwrap_or_else(|p| p.into_inner());
        METRICS.record_query(self.kind, self.started.elapsed(), state);
    }
}

pub(crate) fn pg_error(e: Error) -> PgWireError {
    PgWireError::UserError(Box::new(error_info(&e)))
}

fn error_info(e: &Error) -> ErrorInfo {
    ErrorInfo::new("ERROR".to_string(), e.sqlstate().to_string(), e.message())
}

/// Wraps a row stream so that every batch is encoded as DataRows as it arrives.
/// What ReadyForQuery reports: idle, in a transaction block, or in a failed one.
fn transaction_status(session: &Session) -> pgwire::messages::response::TransactionStatus {
    use pgwire::messages::response::TransactionStatus;
    let block = session.block();
    match (block.is_open(), block.is_failed()) {
        (false, _) => TransactionStatus::Idle,
        (true, false) => TransactionStatus::Transaction,
        (true, true) => TransactionStatus::Error,
    }
}

fn row_stream(
    batches: SendableRecordBatchStream,
    fields: Arc<Vec<FieldInfo>>,
    timer: Arc<QueryTimer>,
    block: Arc<crate::catalog::Block>,
) -> impl futures::Stream<Item = PgWireResult<pgwire::messages::data::DataRow>> + Send {
    batches.flat_map(move |batch| {
        let rows: Vec<PgWireResult<_>> = match batch.map_err(Error::from) {
            Err(e) => {
                // A query that fails while its rows stream aborts its transaction block too.
                block.fail();
                timer.failed(&e);
                vec![Err(pg_error(e))]
            }
            Ok(batch) => match BatchEncoder::new(&batch) {
                Err(e) => vec![Err(e)],
                Ok(enc) => {
                    let mut encoder = DataRowEncoder::new(fields.clone());
                    let mut out = Vec::with_capacity(enc.num_rows());
                    let mut bytes = 0u64;
                    for r in 0..enc.num_rows() {
                        match enc.encode_row(r, &mut encoder) {
                            Ok(()) => {
                                let row = encoder.take_row();
                                bytes += row.data.len() as u64;
                                out.push(Ok(row));
                            }
                            Err(e) => {
                                out.push(Err(e));
                                break;
                            }
                        }
                    }
                    METRICS.rows_out.inc_by(out.len() as u64);
                    METRICS.bytes_out.inc_by(bytes);
                    out
                }
            },
        };
        stream::iter(rows)
    })
}

/// COPY TO STDOUT: one CopyData message per row (pgwire counts rows by message); a CSV header
/// rides with the first row so that the count stays right.
fn copy_out(batches: SendableRecordBatchStream, options: &CopyOptions) -> Response {
    let (format, ncols, data) = copy_data(batches, options);
    Response::CopyOut(CopyResponse::new(format, ncols, data))
}

/// COPY TO a server file: the bytes COPY TO STDOUT would send, written to the file.
async fn copy_to_file(batches: SendableRecordBatchStream, options: &CopyOptions, path: &std::path::Path) -> PgWireResult<Response> {
    use tokio::io::AsyncWriteExt;
    let io = |e: std::io::Error| pg_error(Error::from(e));
    let (_, _, data) = copy_data(batches, options);
    futures::pin_mut!(data);
    let mut file = tokio::fs::File::create(path).await.map_err(io)?;
    let mut rows = 0usize;
    while let Some(row) = data.next().await {
        file.write_all(&row?.data).await.map_err(io)?;
        rows += 1;
    }
    file.flush().await.map_err(io)?;
    Ok(Response::Execution(Tag::new("COPY").with_rows(rows)))
}

/// COPY's format code, column count and one CopyData message per row.
fn copy_data(
    batches: SendableRecordBatchStream,
    options: &CopyOptions,
) -> (i8, usize, impl futures::Stream<Item = PgWireResult<CopyData>> + Send + 'static) {
    let fields = Arc::new(field_infos(&batches.schema(), None));
    let ncols = fields.len();
    let format = if options.is_binary() { 1 } else { 0 };
    let mut encoder = match options.format {
        CopyFormat::Binary => RowEncoder::Binary(CopyEncoder::new_binary(fields)),
        CopyFormat::Text | CopyFormat::Csv => {
            let csv = options.format == CopyFormat::Csv;
            let types = fields.iter().map(|f| f.datatype().clone()).collect();
            let mut w = CopyTextWriter::new(types, csv, options.delimiter, options.quote, options.escape, &options.null);
            let names: Vec<String> = fields.iter().map(|f| f.name().to_string()).collect();
            let header = (csv && options.header).then(|| w.header(&names));
            RowEncoder::Text(w, header)
        }
    };
    let data = batches.flat_map(move |batch| {
        let mut out: Vec<PgWireResult<CopyData>> = Vec::new();
        match batch.map_err(Error::from) {
            Err(e) => out.push(Err(pg_error(e))),
            Ok(batch) => match BatchEncoder::new(&batch) {
                Err(e) => out.push(Err(e)),
                Ok(enc) => {
                    for r in 0..enc.num_rows() {
                        match encoder.row(&enc, r) {
                            Ok(row) => out.push(Ok(row)),
                            Err(e) => {
                                out.push(Err(e));
                                break;
                            }
                        }
                    }
                }
            },
        }
        stream::iter(out)
    });
    (format, ncols, data)
}

enum RowEncoder {
    Binary(CopyEncoder),
    /// The writer, and a header line still to send before the first row.
    Text(CopyTextWriter, Option<bytes::Bytes>),
}

impl RowEncoder {
    fn row(&mut self, enc: &BatchEncoder, r: usize) -> PgWireResult<CopyData> {
        match self {
            RowEncoder::Binary(e) => {
                enc.encode_row(r, e)?;
                Ok(e.take_copy())
            }
            RowEncoder::Text(w, header) => {
                enc.encode_row(r, w)?;
                let row = w.take_row();
                Ok(CopyData::new(match header.take() {
                    Some(h) => [h, row].concat().into(),
                    None => row,
                }))
            }
        }
    }
}

impl Connection {
    /// Turns one statement's output into a pgwire response; rows stay under `interrupt` while
    /// they stream, and `timer` counts the statement when they are done.
    async fn respond(
        &self,
        output: Output,
        format: Option<&Format>,
        interrupt: &Interrupt,
        timer: Arc<QueryTimer>,
    ) -> PgWireResult<Response> {
        Ok(match output {
            Output::Rows(stream) => {
                let fields = describe(&stream.schema(), format);
                let stream = interrupt.guard_stream(stream);
                Response::Query(QueryResponse::new(fields.clone(), row_stream(stream, fields, timer, self.session.block().clone())))
            }
            Output::Affected { verb, rows } => {
                let tag = Tag::new(verb);
                let tag = if verb == "INSERT" { tag.with_oid(0) } else { tag };
                Response::Execution(tag.with_rows(rows as usize))
            }
            Output::Command(tag) => Response::Execution(Tag::new(&tag)),
            Output::Transaction(kind) => match kind {
                TransactionKind::Begin => Response::TransactionStart(Tag::new(kind.tag())),
                TransactionKind::Commit | TransactionKind::Rollback => Response::TransactionEnd(Tag::new(kind.tag())),
                _ => Response::Execution(Tag::new(kind.tag())),
            },
            Output::CopyIn(copy) => {
                let format = if copy.options.is_binary() { 1 } else { 0 };
                let columns = copy.columns;
                let upload = self.session.start_upload(*copy);
                *self.upload.lock().await = Some(upload);
                Response::CopyIn(CopyResponse::new(format, columns, stream::empty()))
            }
            Output::CopyOut { stream, options } => copy_out(interrupt.guard_stream(stream), &options),
            Output::CopyOutFile { stream, options, path } => {
                copy_to_file(interrupt.guard_stream(stream), &options, &path).await?
            }
        })
    }
}

#[async_trait]
impl SimpleQueryHandler for Connection {
    /// pgwire's own, except for the transaction state ReadyForQuery reports: the session's
    /// block says it (`transaction_status`). pgwire infers it from the responses, which cannot
    /// tell a ROLLBACK TO that clears a failure, or a COMMIT that failed and ended the block.
    /// Cancellation is ours (`interrupt`), not pgwire's.
    async fn on_query<C>(&self, client: &mut C, query: pgwire::messages::simplequery::Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        if query.query.chars().all(|c| c == ';' || c.is_whitespace()) {
            client.feed(PgWireBackendMessage::EmptyQueryResponse(EmptyQueryResponse::new())).await?;
        } else {
            for response in SimpleQueryHandler::do_query(self, client, &query.query).await? {
                match response {
                    Response::EmptyQuery => {
                        client.feed(PgWireBackendMessage::EmptyQueryResponse(EmptyQueryResponse::new())).await?;
                    }
                    Response::Query(results) => send_query_response(client, results, true).await?,
                    Response::Execution(tag) | Response::TransactionStart(tag) | Response::TransactionEnd(tag) => {
                        send_execution_response(client, tag).await?
                    }
                    Response::Error(e) => client.feed(PgWireBackendMessage::ErrorResponse((*e).into())).await?,
                    Response::CopyIn(r) => {
                        send_copy_in_response(client, r).await?;
                        client.set_state(PgWireConnectionState::CopyInProgress(false));
                    }
                    Response::CopyOut(r) => send_copy_out_response(client, r).await?,
                    Response::CopyBoth(r) => {
                        send_copy_both_response(client, r).await?;
                        client.set_state(PgWireConnectionState::CopyInProgress(false));
                    }
                }
            }
        }
        // During COPY FROM STDIN, ReadyForQuery waits for the data (`on_copy_done`).
        if !matches!(client.state(), PgWireConnectionState::CopyInProgress(_)) {
            client.set_state(PgWireConnectionState::ReadyForQuery);
            let status = transaction_status(&self.session);
            client.set_transaction_status(status);
            client.send(PgWireBackendMessage::ReadyForQuery(pgwire::messages::response::ReadyForQuery::new(status))).await?;
        }
        Ok(())
    }

    async fn do_query<C>(&self, _client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statements = match self.check_size(query.len(), "the query").and_then(|()| crate::sql::parse(query)) {
            Ok(s) => s,
            Err(e) => {
                QueryTimer::start("other").failed(&e);
                self.session.block().fail();
                return Ok(vec![Response::Error(Box::new(error_info(&e)))]);
            }
        };
        // One interrupt for the whole query string, as PostgreSQL times a simple Query message.
        let interrupt = self.interrupt();
        let mut responses = Vec::with_capacity(statements.len());
        for stmt in statements {
            let command = match crate::commands::classify(stmt) {
                Ok(command) => command,
                Err(e) => {
                    QueryTimer::start("other").failed(&e);
                    self.session.block().fail();
                    responses.push(Response::Error(Box::new(error_info(&e))));
                    break;
                }
            };
            let timer = QueryTimer::start(command.kind());
            match interrupt.guard(crate::commands::run(&self.session, command.as_ref(), None)).await {
                Ok(output) => {
                    let is_copy_in = matches!(output, Output::CopyIn(_));
                    responses.push(self.respond(output, None, &interrupt, timer).await?);
                    if is_copy_in {
                        break; // the rest of the query string waits for the COPY data
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "statement failed");
                    timer.failed(&e);
                    responses.push(Response::Error(Box::new(error_info(&e))));
                    break;
                }
            }
        }
        Ok(responses)
    }
}

/// A statement prepared by the extended protocol: parsed once, described once.
#[derive(Debug, Clone)]
pub struct Prepared {
    description: Description,
    /// What each Execute runs, classified once (`SELECT * FROM online_features(...)` goes
    /// straight to the index), with the same checks as any statement.
    command: Arc<dyn Run>,
}

/// Parses and describes statements for the extended protocol, in the connection's session.
pub struct Parser {
    session: Arc<Session>,
    max_bytes: usize,
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(&self, _client: &C, sql: &str, _types: &[Option<Type>]) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let parsed = async {
            check_size(sql.len(), self.max_bytes, "the query")?;
            let Some(stmt) = crate::sql::parse_one(sql)? else { return Ok(None) };
            let command: Arc<dyn Run> = Arc::from(crate::commands::classify(stmt)?);
            if self.session.block().is_failed() && !command.after_failure() {
                return Err(Error::InFailedTransaction);
            }
            let description = crate::error::catch_panic(command.describe(&self.session)).await?;
            Ok(Some(Prepared { description, command }))
        };
        // As in PostgreSQL, a statement that fails to parse aborts the transaction block.
        parsed.await.map_err(|e| {
            self.session.block().fail();
            pg_error(e)
        })
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        Ok(stmt.description.params.iter().map(|t| t.as_ref().map(pg_type).unwrap_or(Type::UNKNOWN)).collect())
    }

    fn get_result_schema(&self, stmt: &Prepared, format: Option<&Format>) -> PgWireResult<Vec<FieldInfo>> {
        Ok(stmt.description.result.as_ref().map(|s| field_infos(s, format)).unwrap_or_default())
    }
}

#[async_trait]
impl ExtendedQueryHandler for Connection {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        self.parser.clone()
    }

    /// pgwire's own, with the transaction state from the session's block (see `on_query`).
    async fn on_sync<C>(&self, client: &mut C, _message: pgwire::messages::extendedquery::Sync) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        client.portal_store().rm_portal(DEFAULT_NAME);
        let status = transaction_status(&self.session);
        client.set_transaction_status(status);
        client.send(PgWireBackendMessage::ReadyForQuery(pgwire::messages::response::ReadyForQuery::new(status))).await?;
        client.flush().await?;
        Ok(())
    }

    /// pgwire's default, except that BindComplete is queued rather than flushed: it goes out
    /// with the Execute's rows when Sync flushes, one packet per round trip instead of two (what
    /// PostgreSQL does; a prepared lookup is otherwise dominated by the extra send).
    async fn on_bind<C>(&self, client: &mut C, message: Bind) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let bytes = message.parameters.iter().map(|p| p.as_ref().map_or(0, |b| b.len())).sum();
        self.check_size(bytes, "the bind message's parameters").map_err(pg_error)?;
        let statement_name = message.statement_name.as_deref().unwrap_or(DEFAULT_NAME);
        let portal_name = message.portal_name.as_deref().unwrap_or(DEFAULT_NAME);
        match client.portal_store().get_statement(statement_name) {
            Some(Entry::Value(statement)) => {
                let portal = Portal::try_new(&message, statement)?;
                client.portal_store().put_portal(Arc::new(portal));
            }
            Some(Entry::Empty) => {
                if !message.parameters.is_empty() {
                    return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                        "ERROR".to_owned(),
                        "08P01".to_owned(),
                        format!(
                            "bind message supplies {} parameters, but prepared statement {statement_name:?} requires 0",
                            message.parameters.len()
                        ),
                    ))));
                }
                client.portal_store().put_empty_portal(portal_name);
            }
            None => return Err(PgWireError::StatementNotFound(statement_name.to_owned())),
        }
        client.feed(PgWireBackendMessage::BindComplete(BindComplete::new())).await?;
        Ok(())
    }

    /// pgwire's default, except that the answer is queued for Sync's flush (see `on_bind`).
    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        let (params, fields) = match message.target_type {
            TARGET_TYPE_BYTE_STATEMENT => match client.portal_store().get_statement(name) {
                Some(Entry::Value(stmt)) => {
                    let r = self.do_describe_statement(client, &stmt).await?;
                    (Some(r.parameters.clone()), (!r.is_no_data()).then(|| r.fields.clone()))
                }
                Some(Entry::Empty) => (Some(vec![]), None),
                None => return Err(PgWireError::StatementNotFound(name.to_owned())),
            },
            TARGET_TYPE_BYTE_PORTAL => match client.portal_store().get_portal(name) {
                Some(Entry::Value(portal)) => {
                    let r = self.do_describe_portal(client, &portal).await?;
                    (None, (!r.is_no_data()).then(|| r.fields.clone()))
                }
                Some(Entry::Empty) => (None, None),
                None => return Err(PgWireError::PortalNotFound(name.to_owned())),
            },
            other => return Err(PgWireError::InvalidTargetType(other)),
        };
        if let Some(types) = params {
            let oids = types.iter().map(|t| t.oid()).collect();
            client.feed(PgWireBackendMessage::ParameterDescription(ParameterDescription::new(oids))).await?;
        }
        match fields {
            Some(f) => {
                let row = RowDescription::new(f.iter().map(Into::into).collect());
                client.feed(PgWireBackendMessage::RowDescription(row)).await?
            }
            None => client.feed(PgWireBackendMessage::NoData(NoData::new())).await?,
        }
        Ok(())
    }

    /// Streams results. pgwire 0.42's default collects every row of a portal into memory before
    /// sending when the client asks for all rows (max_rows = 0, what drivers do), so a large
    /// SELECT would hold the whole result. Row-limited fetches keep pgwire's portal handling.
    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        let portal = match client.portal_store().get_portal(name) {
            Some(Entry::Value(p)) if message.max_rows == 0 => p,
            _ => return self._on_execute(client, message).await,
        };
        if !matches!(*portal.state().lock().await, PortalExecutionState::Initial)
            || !matches!(client.state(), PgWireConnectionState::ReadyForQuery)
        {
            return self._on_execute(client, message).await;
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        let response = ExtendedQueryHandler::do_query(self, client, &portal, 0).await;
        *portal.state().lock().await = PortalExecutionState::Finished;
        let result = match response {
            Ok(Response::Query(results)) => send_query_response(client, results, false).await,
            Ok(Response::Execution(tag) | Response::TransactionStart(tag) | Response::TransactionEnd(tag)) => {
                send_execution_response(client, tag).await
            }
            Ok(Response::EmptyQuery) => client
                .send(PgWireBackendMessage::EmptyQueryResponse(EmptyQueryResponse::new()))
                .await
                .map_err(PgWireError::from),
            Ok(Response::Error(e)) => {
                client.send(PgWireBackendMessage::ErrorResponse((*e).into())).await.map_err(PgWireError::from)
            }
            Ok(Response::CopyIn(r)) => {
                client.set_state(PgWireConnectionState::CopyInProgress(true));
                send_copy_in_response(client, r).await
            }
            Ok(Response::CopyOut(r)) => send_copy_out_response(client, r).await,
            Ok(Response::CopyBoth(r)) => {
                client.set_state(PgWireConnectionState::CopyInProgress(true));
                send_copy_both_response(client, r).await
            }
            Err(e) => Err(e),
        };
        if !matches!(client.state(), PgWireConnectionState::CopyInProgress(_)) {
            client.set_state(PgWireConnectionState::ReadyForQuery);
            client.set_transaction_status(transaction_status(&self.session));
        }
        result
    }

    async fn do_query<C>(&self, _client: &mut C, portal: &Portal<Prepared>, _max_rows: usize) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let prepared = &portal.statement.statement;
        let inferred = &prepared.description.params;
        let client_types = &portal.statement.parameter_types;
        let mut values = Vec::with_capacity(portal.parameters.len());
        for (i, raw) in portal.parameters.iter().enumerate() {
            let target = inferred.get(i).cloned().flatten();
            let declared = client_types
                .get(i)
                .cloned()
                .flatten()
                .filter(|t| *t != Type::UNKNOWN)
                .or_else(|| target.as_ref().map(pg_type))
                .unwrap_or(Type::TEXT);
            let v = params::decode(raw.as_deref(), &declared, portal.parameter_format.is_binary(i), target.as_ref())
                .map_err(|e| {
                    self.session.block().fail();
                    pg_error(e)
                })?;
            values.push(v);
        }
        let timer = QueryTimer::start(prepared.command.kind());
        let interrupt = self.interrupt();
        let work = async move {
            let params = if values.is_empty() { None } else { Some(values) };
            crate::commands::run(&self.session, prepared.command.as_ref(), params).await
        };
        match interrupt.guard(work).await {
            Ok(output) => self.respond(output, Some(&portal.result_column_format), &interrupt, timer).await,
            Err(e) => {
                timer.failed(&e);
                Err(pg_error(e))
            }
        }
    }
}

#[async_trait]
impl CopyHandler for Connection {
    async fn on_copy_data<C>(&self, _client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.check_size(copy_data.data.len(), "a COPY data message").map_err(pg_error)?;
        if let Some(upload) = self.upload.lock().await.as_mut() {
            upload.push(&copy_data.data).await;
        }
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let Some(upload) = self.upload.lock().await.take() else {
            return Err(pg_error(Error::FeatureNotSupported("no COPY in progress".into())));
        };
        let rows = upload.finish().await.map_err(|e| {
            self.session.block().fail();
            client.set_transaction_status(transaction_status(&self.session));
            pg_error(e)
        })?;
        client
            .send(PgWireBackendMessage::CommandComplete(Tag::new("COPY").with_rows(rows as usize).into()))
            .await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Some(upload) = self.upload.lock().await.take() {
            upload.abort().await;
        }
        self.session.block().fail();
        client.set_transaction_status(transaction_status(&self.session));
        PgWireError::UserError(Box::new(ErrorInfo::new(
            "ERROR".into(),
            "57014".into(),
            format!("COPY from stdin failed: {}", fail.message),
        )))
    }
}

/// pgwire builds a connection's handlers from this; each connection has its own `Connection`.
/// Cancel requests arrive on connections of their own and are routed through the server-wide
/// registry to the connection running the query.
pub struct Handlers {
    connection: Arc<Connection>,
    cancel: Arc<CancelRequests>,
}

impl Handlers {
    pub fn new(connection: Arc<Connection>) -> Self {
        let cancel = Arc::new(CancelRequests(connection.shared.cancels.clone()));
        Self { connection, cancel }
    }
}

#[async_trait]
impl StartupHandler for Connection {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Some(registered) = self.shared.startup(client, message, &self.session).await? {
            self.set_cancel(registered);
        }
        Ok(())
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.connection.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.connection.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.connection.clone()
    }

    fn copy_handler(&self) -> Arc<impl CopyHandler> {
        self.connection.clone()
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancel.clone()
    }
}
