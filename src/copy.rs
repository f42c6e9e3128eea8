//! COPY: options, the streaming decoder of `COPY ... FROM STDIN` data, and the upload that turns
//! the decoded batches into exactly one Delta commit.
//!
//! Owns: the text and CSV input formats (PostgreSQL's rules: `\N` and backslash escapes for text;
//! quotes, and an unquoted empty field as NULL, for CSV), and line numbers for errors.
//! Must not: speak the wire protocol (the `wire` module feeds bytes in) or know Delta internals
//! (the upload is an ordinary DataFusion INSERT of a one-shot stream).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringBuilder, new_null_array};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::FormatOptions;
use datafusion::error::DataFusionError;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{CopyLegacyCsvOption, CopyLegacyOption, CopyOption};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::catalog::{OneShotStream, TableName};
use crate::error::{Error, Result};

/// Rows per decoded batch: large enough for fast Parquet writes, small enough to stream.
const BATCH_ROWS: usize = 65_536;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormat {
    Text,
    Csv,
    Binary,
}

/// The options of one COPY statement, with PostgreSQL's defaults per format.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    pub format: CopyFormat,
    pub delimiter: u8,
    pub null: String,
    pub header: bool,
    pub quote: u8,
    pub escape: u8,
}

impl CopyOptions {
    pub fn from_ast(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> Result<Self> {
        let mut format = CopyFormat::Text;
        let (mut delimiter, mut null, mut header, mut quote, mut escape) = (None, None, false, None, None);
        for o in options {
            match o {
                CopyOption::Format(f) => {
                    format = match f.value.to_ascii_lowercase().as_str() {
                        "text" => CopyFormat::Text,
                        "csv" => CopyFormat::Csv,
                        "binary" => CopyFormat::Binary,
                        other => return Err(Error::InvalidParameter(format!("COPY format \"{other}\" not recognized"))),
                    }
                }
                CopyOption::Delimiter(c) => delimiter = Some(ascii(*c, "DELIMITER")?),
                CopyOption::Null(s) => null = Some(s.clone()),
                CopyOption::Header(h) => header = *h,
                CopyOption::Quote(c) => quote = Some(ascii(*c, "QUOTE")?),
                CopyOption::Escape(c) => escape = Some(ascii(*c, "ESCAPE")?),
                CopyOption::Encoding(e) if e.eq_ignore_ascii_case("utf8") || e.eq_ignore_ascii_case("utf-8") => {}
                CopyOption::Freeze(_) => {}
                other => return Err(Error::FeatureNotSupported(format!("COPY option {other} is not supported"))),
            }
        }
        for o in legacy {
            match o {
                CopyLegacyOption::Binary => format = CopyFormat::Binary,
                CopyLegacyOption::Delimiter(c) => delimiter = Some(ascii(*c, "DELIMITER")?),
                CopyLegacyOption::Null(s) => null = Some(s.clone()),
                CopyLegacyOption::Header => header = true,
                CopyLegacyOption::Csv(opts) => {
                    format = CopyFormat::Csv;
                    for c in opts {
                        match c {
                            CopyLegacyCsvOption::Header => header = true,
                            CopyLegacyCsvOption::Quote(q) => quote = Some(ascii(*q, "QUOTE")?),
                            CopyLegacyCsvOption::Escape(e) => escape = Some(ascii(*e, "ESCAPE")?),
                            other => {
                                return Err(Error::FeatureNotSupported(format!("COPY option {other} is not supported")));
                            }
                        }
                    }
                }
                other => return Err(Error::FeatureNotSupported(format!("COPY option {other} is not supported"))),
            }
        }
        let csv = format == CopyFormat::Csv;
        let quote = quote.unwrap_or(b'"');
        Ok(Self {
            format,
            delimiter: delimiter.unwrap_or(if csv { b',' } else { b'\t' }),
            null: null.unwrap_or_else(|| if csv { String::new() } else { "\\N".into() }),
            header,
            quote,
            escape: escape.unwrap_or(quote),
        })
    }
}

impl CopyOptions {
    pub fn is_binary(&self) -> bool {
        self.format == CopyFormat::Binary
    }
}

fn ascii(c: char, what: &str) -> Result<u8> {
    if c.is_ascii() {
        Ok(c as u8)
    } else {
        Err(Error::InvalidParameter(format!("COPY {what} must be a single one-byte character")))
    }
}

/// Decodes COPY text or CSV bytes, arriving in arbitrary chunks, into batches of `schema`.
pub struct CopyDecoder {
    table: String,
    schema: SchemaRef,
    /// For each target column, its index in `schema` (COPY t (b, a) reorders and omits).
    targets: Vec<usize>,
    opts: CopyOptions,
    pending: Vec<u8>,
    builders: Vec<StringBuilder>,
    /// The input line each buffered row started on, for error messages.
    row_lines: Vec<u64>,
    line: u64,
    header_pending: bool,
    finished: bool,
    field: Vec<u8>,
}

impl CopyDecoder {
    pub fn new(table: &TableName, schema: SchemaRef, columns: &[String], opts: CopyOptions) -> Result<Self> {
        if opts.format == CopyFormat::Binary {
            return Err(Error::FeatureNotSupported("COPY FROM STDIN in binary format is not supported; use text or csv".into()));
        }
        let targets = if columns.is_empty() {
            (0..schema.fields().len()).collect()
        } else {
            columns
                .iter()
                .map(|c| {
                    schema.index_of(c).map_err(|_| {
                        Error::UndefinedColumn(format!("column \"{c}\" of relation \"{table}\" does not exist"))
                    })
                })
                .collect::<Result<Vec<_>>>()?
        };
        let header_pending = opts.header;
        Ok(Self {
            table: table.to_string(),
            builders: targets.iter().map(|_| StringBuilder::new()).collect(),
            schema,
            targets,
            opts,
            pending: Vec::new(),
            row_lines: Vec::new(),
            line: 0,
            header_pending,
            finished: false,
            field: Vec::new(),
        })
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Feeds a chunk; returns the batches that became complete.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<RecordBatch>> {
        self.pending.extend_from_slice(chunk);
        let mut out = Vec::new();
        let mut start = 0;
        loop {
            if self.finished {
                break;
            }
            let Some((fields, consumed, lines)) = self.next_row(start, false)? else { break };
            start += consumed;
            self.take_row(fields, lines)?;
            if self.row_lines.len() >= BATCH_ROWS {
                out.push(self.flush()?);
            }
        }
        self.pending.drain(..start);
        Ok(out)
    }

    /// Ends the input: the last row may lack its newline. Returns the final batch, if any.
    pub fn finish(&mut self) -> Result<Option<RecordBatch>> {
        if !self.finished && !self.pending.is_empty() {
            let mut start = 0;
            while let Some((fields, consumed, lines)) = self.next_row(start, true)? {
                start += consumed;
                self.take_row(fields, lines)?;
                if self.finished || start >= self.pending.len() {
                    break;
                }
            }
            self.pending.clear();
        }
        if self.row_lines.is_empty() { Ok(None) } else { Ok(Some(self.flush()?)) }
    }

    fn take_row(&mut self, fields: Option<Vec<Option<(usize, usize)>>>, lines: u64) -> Result<()> {
        let first_line = self.line + 1;
        self.line += lines;
        let Some(fields) = fields else { return Ok(()) }; // header or end marker
        if fields.len() != self.targets.len() {
            let what = if fields.len() < self.targets.len() { "missing data for a column" } else { "extra data after last expected column" };
            return Err(self.error(first_line, format!("{what} (expected {} fields, found {})", self.targets.len(), fields.len())));
        }
        for (b, f) in self.builders.iter_mut().zip(&fields) {
            match f {
                None => b.append_null(),
                Some((s, e)) => {
                    let text = std::str::from_utf8(&self.field[*s..*e]).map_err(|_| Error::CopyData {
                        table: self.table.clone(),
                        line: first_line,
                        message: "invalid byte sequence for encoding \"UTF8\"".into(),
                    })?;
                    b.append_value(text);
                }
            }
        }
        self.field.clear();
        self.row_lines.push(first_line);
        Ok(())
    }

    fn error(&self, line: u64, message: String) -> Error {
        Error::CopyData { table: self.table.clone(), line, message }
    }

    /// Parses one row starting at `pending[start..]`. Returns the field spans (into `self.field`),
    /// the bytes consumed and the number of newlines crossed; `None` if the row is incomplete.
    /// A row of `None` fields means "skip" (the header line or the `\.` end marker).
    #[allow(clippy::type_complexity)]
    fn next_row(&mut self, start: usize, at_eof: bool) -> Result<Option<(Option<Vec<Option<(usize, usize)>>>, usize, u64)>> {
        let buf = &self.pending[start..];
        if buf.is_empty() {
            return Ok(None);
        }
        let row = match self.opts.format {
            CopyFormat::Csv => parse_csv_row(buf, &self.opts, at_eof, &mut self.field),
            _ => parse_text_row(buf, &self.opts, at_eof, &mut self.field),
        };
        let Some(row) = row else { return Ok(None) };
        let row = row.map_err(|m| self.error(self.line + 1, m))?;
        if row.end_marker {
            self.finished = true;
            self.field.clear();
            return Ok(Some((None, row.consumed, row.lines)));
        }
        if self.header_pending {
            self.header_pending = false;
            self.field.clear();
            return Ok(Some((None, row.consumed, row.lines)));
        }
        Ok(Some((Some(row.fields), row.consumed, row.lines)))
    }

    /// Turns the buffered rows into a batch of the table's types, naming the first bad line.
    fn flush(&mut self) -> Result<RecordBatch> {
        let rows = self.row_lines.len();
        let mut columns: Vec<ArrayRef> = self.schema.fields().iter().map(|f| new_null_array(f.data_type(), rows)).collect();
        for (b, &target) in self.builders.iter_mut().zip(&self.targets) {
            let strings = b.finish();
            let field = self.schema.field(target);
            let typed = cast_strict(&strings, field.data_type()).map_err(|bad_row| {
                let value = strings.value(bad_row);
                Error::CopyData {
                    table: self.table.clone(),
                    line: self.row_lines[bad_row],
                    message: format!(
                        "invalid input syntax for type {} in column \"{}\": \"{}\"",
                        crate::catalog::pg_type_name(field.data_type()),
                        field.name(),
                        value
                    ),
                }
            })?;
            if typed.null_count() > 0 && !field.is_nullable() {
                let row = (0..rows).find(|&i| typed.is_null(i)).unwrap_or(0);
                return Err(Error::CopyData {
                    table: self.table.clone(),
                    line: self.row_lines[row],
                    message: format!("null value in column \"{}\" violates not-null constraint", field.name()),
                });
            }
            columns[target] = typed;
        }
        self.row_lines.clear();
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

/// Casts strings to `to`; on failure returns the index of the first value that does not parse.
fn cast_strict(strings: &datafusion::arrow::array::StringArray, to: &DataType) -> std::result::Result<ArrayRef, usize> {
    let strict = CastOptions { safe: false, format_options: FormatOptions::default() };
    match cast_with_options(strings, to, &strict) {
        Ok(a) => Ok(a),
        Err(_) => {
            let lenient = cast_with_options(strings, to, &CastOptions::default()).map_err(|_| 0usize)?;
            Err((0..strings.len()).find(|&i| strings.is_valid(i) && lenient.is_null(i)).unwrap_or(0))
        }
    }
}

struct ParsedRow {
    fields: Vec<Option<(usize, usize)>>,
    consumed: usize,
    lines: u64,
    end_marker: bool,
}

/// PostgreSQL text format: delimiter-separated, `\N` for NULL, backslash escapes, one line a row.
fn parse_text_row(buf: &[u8], opts: &CopyOptions, at_eof: bool, out: &mut Vec<u8>) -> Option<std::result::Result<ParsedRow, String>> {
    let (line, consumed) = match memchr(b'\n', buf) {
        Some(i) => (&buf[..i], i + 1),
        None if at_eof => (buf, buf.len()),
        None => return None,
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line == b"\\." {
        return Some(Ok(ParsedRow { fields: vec![], consumed, lines: 1, end_marker: true }));
    }
    let mut fields = Vec::new();
    for raw in line.split(|&b| b == opts.delimiter) {
        if raw == opts.null.as_bytes() {
            fields.push(None);
            continue;
        }
        let s = out.len();
        let mut i = 0;
        while i < raw.len() {
            let b = raw[i];
            if b == b'\\' && i + 1 < raw.len() {
                i += 1;
                out.push(match raw[i] {
                    b'n' => b'\n',
                    b't' => b'\t',
                    b'r' => b'\r',
                    b'b' => 8,
                    b'f' => 12,
                    b'v' => 11,
                    other => other,
                });
            } else {
                out.push(b);
            }
            i += 1;
        }
        fields.push(Some((s, out.len())));
    }
    Some(Ok(ParsedRow { fields, consumed, lines: 1, end_marker: false }))
}

/// CSV as PostgreSQL reads it: quoted fields may hold delimiters and newlines; an unquoted empty
/// field (or the NULL string, unquoted) is NULL, a quoted empty field is the empty string.
fn parse_csv_row(buf: &[u8], opts: &CopyOptions, at_eof: bool, out: &mut Vec<u8>) -> Option<std::result::Result<ParsedRow, String>> {
    let (q, esc, delim) = (opts.quote, opts.escape, opts.delimiter);
    let mut fields = Vec::new();
    let mut i = 0;
    let mut lines = 0u64;
    let mark = out.len();
    // `\.` alone on a line ends the data, as psql sends it.
    if buf.starts_with(b"\\.\n") || buf.starts_with(b"\\.\r\n") || (at_eof && (buf == b"\\." || buf == b"\\.\r")) {
        let consumed = memchr(b'\n', buf).map(|p| p + 1).unwrap_or(buf.len());
        return Some(Ok(ParsedRow { fields, consumed, lines: 1, end_marker: true }));
    }
    loop {
        let s = out.len();
        let mut quoted = false;
        let mut in_quotes = false;
        loop {
            if i >= buf.len() {
                if !at_eof {
                    out.truncate(mark);
                    return None;
                }
                if in_quotes {
                    return Some(Err("unterminated CSV quoted field".into()));
                }
                break;
            }
            let b = buf[i];
            if in_quotes {
                if b == esc && esc != q && i + 1 < buf.len() && (buf[i + 1] == q || buf[i + 1] == esc) {
                    out.push(buf[i + 1]);
                    i += 2;
                    continue;
                }
                if b == q {
                    if esc == q && i + 1 < buf.len() && buf[i + 1] == q {
                        out.push(q);
                        i += 2;
                        continue;
                    }
                    if esc == q && i + 1 >= buf.len() && !at_eof {
                        out.truncate(mark);
                        return None; // cannot tell a closing quote from a doubled one yet
                    }
                    in_quotes = false;
                    i += 1;
                    continue;
                }
                if b == b'\n' {
                    lines += 1;
                }
                out.push(b);
                i += 1;
            } else if b == q {
                in_quotes = true;
                quoted = true;
                i += 1;
            } else if b == delim || b == b'\n' || b == b'\r' {
                break;
            } else {
                out.push(b);
                i += 1;
            }
        }
        let value = &out[s..];
        if !quoted && value == opts.null.as_bytes() {
            out.truncate(s);
            fields.push(None);
        } else {
            fields.push(Some((s, out.len())));
        }
        if i >= buf.len() {
            lines += 1;
            return Some(Ok(ParsedRow { fields, consumed: i, lines, end_marker: false }));
        }
        match buf[i] {
            b if b == delim => i += 1,
            b'\r' => {
                i += 1;
                if i < buf.len() && buf[i] == b'\n' {
                    i += 1;
                } else if i >= buf.len() && !at_eof {
                    out.truncate(mark);
                    return None;
                }
                lines += 1;
                return Some(Ok(ParsedRow { fields, consumed: i, lines, end_marker: false }));
            }
            _ => {
                i += 1;
                lines += 1;
                return Some(Ok(ParsedRow { fields, consumed: i, lines, end_marker: false }));
            }
        }
    }
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

/// Messages from the connection to the upload task.
enum Chunk {
    Batch(RecordBatch),
    /// The client sent CopyDone: the upload may commit.
    Done,
}

/// One `COPY ... FROM STDIN` in flight: batches go to a task that writes them as one commit.
/// If the sender goes away without `finish` (client gone, error), the upload fails and nothing
/// is committed.
pub struct CopyUpload {
    decoder: CopyDecoder,
    tx: Option<mpsc::Sender<Chunk>>,
    task: JoinHandle<Result<u64>>,
    failed: Option<Error>,
}

impl CopyUpload {
    /// Starts the writer task for `table` in the given session context.
    pub fn start(ctx: &SessionContext, table: &TableName, decoder: CopyDecoder) -> Self {
        let (tx, rx) = mpsc::channel::<Chunk>(4);
        let schema = decoder.schema();
        let stream = futures::stream::unfold((rx, false), |(mut rx, done)| async move {
            if done {
                return None;
            }
            match rx.recv().await {
                Some(Chunk::Batch(b)) => Some((Ok(b), (rx, false))),
                Some(Chunk::Done) => None,
                None => Some((
                    Err(DataFusionError::Execution("COPY was aborted before it finished".into())),
                    (rx, true),
                )),
            }
        });
        let stream = Box::pin(RecordBatchStreamAdapter::new(schema, stream));
        let ctx = ctx.clone();
        let target = format!("\"{}\".\"{}\"", table.schema, table.table);
        let task = tokio::spawn(async move {
            let source = ctx.read_table(Arc::new(OneShotStream::table(stream)?))?;
            let batches = source
                .write_table(&target, datafusion::dataframe::DataFrameWriteOptions::new())
                .await?;
            Ok(count_of(&batches))
        });
        Self { decoder, tx: Some(tx), task, failed: None }
    }

    /// Feeds client bytes. After the first error, further data is ignored and the error is kept
    /// for `finish`, as PostgreSQL reports a COPY error once.
    pub async fn push(&mut self, data: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        match self.decoder.push(data) {
            Ok(batches) => {
                for b in batches {
                    self.send(Chunk::Batch(b)).await;
                }
            }
            Err(e) => self.fail(e),
        }
    }

    async fn send(&mut self, chunk: Chunk) {
        if let Some(tx) = &self.tx {
            if tx.send(chunk).await.is_err() {
                // The writer stopped early; its error comes out of `finish`.
                self.tx = None;
            }
        }
    }

    fn fail(&mut self, e: Error) {
        self.failed = Some(e);
        self.tx = None; // dropping the sender aborts the upload
    }

    /// Client sent CopyDone: flush the last rows, commit, and return the row count.
    pub async fn finish(mut self) -> Result<u64> {
        if self.failed.is_none() {
            match self.decoder.finish() {
                Ok(Some(b)) => self.send(Chunk::Batch(b)).await,
                Ok(None) => {}
                Err(e) => self.fail(e),
            }
        }
        if self.failed.is_none() {
            self.send(Chunk::Done).await;
        }
        self.tx = None;
        let result = match self.task.await {
            Ok(result) => result,
            Err(e) if e.is_panic() => Err(Error::from_panic(e.into_panic())),
            Err(e) => Err(Error::Io(std::io::Error::other(e))),
        };
        match self.failed {
            Some(e) => Err(e),
            None => result,
        }
    }

    /// Client sent CopyFail: abort without committing.
    pub async fn abort(mut self) {
        self.tx = None;
        let _ = self.task.await;
    }
}

/// The row count a DataFusion DML plan reports in its single `count` row.
pub fn count_of(batches: &[RecordBatch]) -> u64 {
    batches
        .iter()
        .filter_map(|b| {
            b.column(0).as_any().downcast_ref::<datafusion::arrow::array::UInt64Array>().map(|a| a.iter().flatten().sum::<u64>())
        })
        .sum()
}

/// The schema COPY writes: the table's own, so that every batch lands without a cast.
pub fn copy_schema(table_schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new(table_schema.fields().iter().map(|f| Field::new(f.name(), f.data_type().clone(), true)).collect::<Vec<_>>()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};

    fn decoder(format: CopyFormat, header: bool) -> CopyDecoder {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        let mut opts = CopyOptions::from_ast(&[], &[]).unwrap();
        if format == CopyFormat::Csv {
            opts = CopyOptions { format, delimiter: b',', null: String::new(), header, quote: b'"', escape: b'"' };
        }
        opts.header = header;
        CopyDecoder::new(&TableName::new("public", "t"), schema, &[], opts).unwrap()
    }

    #[test]
    fn csv_across_chunk_boundaries_with_quotes_and_nulls() {
        let mut d = decoder(CopyFormat::Csv, true);
        let input = b"id,name\n1,\"a,\"\"b\"\"\nc\"\n2,\n3,\"\"\n";
        let mut batches = Vec::new();
        for chunk in input.chunks(3) {
            batches.extend(d.push(chunk).unwrap());
        }
        batches.extend(d.finish().unwrap());
        let b = &batches[0];
        let ids = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        let names = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(ids.values(), &[1, 2, 3]);
        assert_eq!(names.value(0), "a,\"b\"\nc");
        assert!(names.is_null(1));
        assert_eq!(names.value(2), "");
    }

    #[test]
    fn text_format_escapes_and_end_marker() {
        let mut d = decoder(CopyFormat::Text, false);
        let mut batches = d.push(b"1\ttab\\there\n2\t\\N\n\\.\n9\tignored\n").unwrap();
        batches.extend(d.finish().unwrap());
        let names = batches[0].column(1).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(batches[0].num_rows(), 2);
        assert_eq!(names.value(0), "tab\there");
        assert!(names.is_null(1));
    }

    #[test]
    fn a_bad_value_names_its_line() {
        let mut d = decoder(CopyFormat::Csv, true);
        d.push(b"id,name\n1,a\n2,b\nx,c\n").unwrap();
        let err = d.finish().unwrap_err().to_string();
        assert!(err.contains("line 4"), "{err}");
        assert!(err.contains("\"x\""), "{err}");
    }

    #[test]
    fn a_short_row_names_its_line() {
        let mut d = decoder(CopyFormat::Csv, false);
        let err = d.push(b"1,a\n2\n").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
    }
}
