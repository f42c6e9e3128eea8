//! Text to statements: PostgreSQL syntax, plus Delta's time-travel clauses and hindsight's own
//! statements.
//!
//! A query string is first parsed as datafusion-pg-catalog parses it (PostgreSQL dialect, with
//! the substitutions that let psql's and BI tools' catalog queries plan). Only when that fails is
//! it parsed with `HindsightDialect`, which is PostgreSQL plus `VERSION AS OF` / `TIMESTAMP AS
//! OF`, and with our statements (`CREATE DATASET`, `REPRODUCE DATASET`, `DESCRIBE HISTORY`,
//! `VACUUM`, `OPTIMIZE`) recognised at the start of each statement, the way DataFusion's `DFParser` adds its
//! own. So plain PostgreSQL keeps exactly the parse it had.

use std::any::TypeId;
use std::sync::LazyLock;

use datafusion::sql::sqlparser::ast::{self, ObjectName, Query};
use datafusion::sql::sqlparser::dialect::{Dialect, PostgreSqlDialect, Precedence};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Location, Token};
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;

use crate::error::{Error, Result};

static PG: LazyLock<PostgresCompatibilityParser> = LazyLock::new(PostgresCompatibilityParser::new);

/// datafusion-pg-catalog's rewrites that keep a statement's meaning, for statements that do not
/// read the catalog. Its `RemoveSubqueryFromProjection` is left out: made for catalog queries
/// (whose correlated subqueries DataFusion could not plan), it replaces every correlated scalar
/// subquery in a select list with NULL and gives every other one a LIMIT 1, so
/// `SELECT c.id, (SELECT count(*) FROM o WHERE o.cid = c.id) FROM c` answered NULL on every row.
static USER_RULES: LazyLock<Vec<Box<dyn datafusion_pg_catalog::sql::rules::SqlStatementRewriteRule>>> = LazyLock::new(|| {
    use datafusion_pg_catalog::sql::rules::*;
    vec![
        Box::new(AliasDuplicatedProjectionRewrite),
        Box::new(ResolveUnqualifiedIdentifier),
        Box::new(RewriteArrayAnyAllOperation),
        Box::new(StripCallableQualifier),
        Box::new(FixArrayLiteral),
        Box::new(CurrentUserVariableToSessionUserFunctionCall),
        Box::new(StripCollate),
        Box::new(RewritePgCatalogOperator),
        Box::new(FixVersionColumnName),
    ]
});

/// Whether a statement reads PostgreSQL's catalog: a `pg_*` relation, `pg_catalog.*`,
/// `information_schema.*`, or a cast to an OID alias type (`'t'::regclass`).
fn reads_catalog(stmt: &ast::Statement) -> bool {
    use std::ops::ControlFlow;
    let relation = ast::visit_relations(stmt, |name| {
        let parts: Vec<String> = name.0.iter().map(|p| p.to_string().trim_matches('"').to_ascii_lowercase()).collect();
        let catalog = parts.iter().any(|p| p == "pg_catalog" || p == "information_schema")
            || parts.last().is_some_and(|t| t.starts_with("pg_"));
        if catalog { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    });
    let oid_cast = ast::visit_expressions(stmt, |e| match e {
        ast::Expr::Cast { data_type, .. } if data_type.to_string().to_ascii_lowercase().starts_with("reg") => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    });
    relation.is_break() || oid_cast.is_break()
}

/// The version `RESTORE` goes back to.
#[derive(Debug, Clone)]
pub enum RestoreTo {
    Version(u64),
    Timestamp(ast::Expr),
}

/// A statement: standard SQL for DataFusion, or one of hindsight's own.
#[derive(Debug, Clone)]
pub enum Statement {
    Sql(Box<ast::Statement>),
    /// `CREATE DATASET name AS query`: the query as the user wrote it (what is stored, and
    /// parsed again, the same way, by REPRODUCE).
    CreateDataset { name: ObjectName, query: String },
    /// `REPRODUCE DATASET name`
    ReproduceDataset { name: ObjectName },
    /// `DESCRIBE HISTORY t [LIMIT n]`
    DescribeHistory { table: ObjectName, limit: Option<u64> },
    /// `VACUUM t [RETAIN n HOURS] [DRY RUN]`
    Vacuum { table: ObjectName, retain_hours: Option<u64>, dry_run: bool },
    /// `OPTIMIZE t [ZORDER BY (c, ...)]`
    Optimize { table: ObjectName, zorder: Vec<String> },
    /// `RESTORE [TABLE] t TO VERSION AS OF n | TIMESTAMP AS OF expr`
    Restore { table: ObjectName, to: RestoreTo },
    /// `CREATE FEATURE VIEW name ON table | AS query ENTITY (k, ...) TIMESTAMP ts [CREATED c]
    /// [TTL [INTERVAL] '...']`
    CreateFeatureView(FeatureViewSpec),
    /// `DROP FEATURE VIEW [IF EXISTS] name`
    DropFeatureView { name: String, if_exists: bool },
    /// `SHOW FEATURE VIEWS`
    ShowFeatureViews,
    /// `CREATE EVALUATION name SCHEDULE '<cron>' [WINDOW ...] [LAG ...] [ON COMMIT TO t] AS query`
    CreateEvaluation(EvaluationSpec),
    /// `DROP EVALUATION [IF EXISTS] name`
    DropEvaluation { name: String, if_exists: bool },
    /// `SHOW EVALUATIONS`
    ShowEvaluations,
    /// `RUN EVALUATION name [FOR WINDOW start, end]`
    RunEvaluation { name: String, window: Option<(ast::Expr, ast::Expr)> },
    /// `BACKFILL EVALUATION name FROM start TO end`
    BackfillEvaluation { name: String, from: ast::Expr, to: ast::Expr },
}

/// An evaluation as written; `evaluation::definition` validates it.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluationSpec {
    pub name: String,
    pub schedule: String,
    pub window: Option<String>,
    pub lag: Option<String>,
    pub on_commit: Option<ObjectName>,
    /// The query's text as written, `$window_start` and `$window_end` included.
    pub query: String,
}

/// A feature view as written; `features::views` validates it.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureViewSpec {
    pub name: String,
    pub source: ViewSource,
    pub entity: Vec<String>,
    pub timestamp: String,
    pub created: Option<String>,
    pub ttl: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ViewSource {
    Table(ObjectName),
    /// The query's text as written.
    Query(String),
}

impl From<ast::Statement> for Statement {
    fn from(mut s: ast::Statement) -> Self {
        crate::sql::pg_catalog::aggregate_catalog_subqueries(&mut s);
        Statement::Sql(Box::new(s))
    }
}

/// A parsed statement, once its expressions are known to be shallow enough to plan.
fn checked(mut stmt: ast::Statement) -> Result<Statement> {
    crate::limits::depth::balance_and_check(&mut stmt)?;
    Ok(Statement::from(stmt))
}

/// Parses a query string into statements (a simple query may hold several).
pub fn parse(sql: &str) -> Result<Vec<Statement>> {
    crate::limits::depth::check_tokens(sql)?;
    let sql = &*search_path_members(sql);
    // A user's statement: PostgreSQL's syntax, and only the compatibility rewrites that keep
    // its meaning (see `USER_RULES`). A statement over the catalog (psql's `\d`, BI tools'
    // metadata queries) goes through all of datafusion-pg-catalog's rewrites and substitutions.
    if let Ok(stmts) = Parser::parse_sql(&PostgreSqlDialect {}, sql) {
        if !stmts.iter().any(reads_catalog) {
            return stmts
                .into_iter()
                .map(|mut s| {
                    crate::sql::semantics::rewrites::subquery_membership(&mut s);
                    checked(USER_RULES.iter().fold(s, |s, rule| rule.rewrite(s)))
                })
                .collect();
        }
    }
    if let Ok(stmts) = PG.parse(sql) {
        return stmts.into_iter().map(checked).collect();
    }
    let dialect = HindsightDialect;
    let mut parser = Parser::new(&dialect).try_with_sql(sql)?;
    let mut out = Vec::new();
    loop {
        while parser.consume_token(&Token::SemiColon) {}
        if parser.peek_token_ref().token == Token::EOF {
            break;
        }
        out.push(parse_statement(&mut parser, sql)?);
        let next = parser.peek_token();
        if next.token != Token::SemiColon && next.token != Token::EOF {
            return Err(parser.expected::<()>("end of statement", next).unwrap_err().into());
        }
    }
    Ok(out)
}

/// Grafana's PostgreSQL data source asks whether a schema is on the search path with
/// `quote_ident(table_schema) IN (SELECT ... FROM generate_series(...) AS i,
/// string_to_array(...) s)`, in WHERE and in ORDER BY. DataFusion plans neither an array-valued
/// function as a FROM item nor a subquery in ORDER BY, and datafusion-pg-catalog's stand-in
/// matches no schema, so Grafana's column lists for unqualified tables came back empty. The same
/// test as one expression replaces Grafana's text first.
fn search_path_members(sql: &str) -> std::borrow::Cow<'_, str> {
    const GRAFANA: &str = r#"quote_ident(table_schema) IN (
        SELECT CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
        FROM generate_series(array_lower(string_to_array(current_setting('search_path'),','),1),
                             array_upper(string_to_array(current_setting('search_path'),','),1)) as i,
             string_to_array(current_setting('search_path'),',') s)"#;
    const PLANNABLE: &str = r#"array_has(string_to_array(replace(replace(current_setting('search_path'), ' ', ''),
        '"$user"', current_user), ','), quote_ident(table_schema))"#;
    if !sql.contains("current_setting('search_path')") {
        return sql.into();
    }
    let tokens = |text: &str| datafusion::sql::sqlparser::tokenizer::Tokenizer::new(&PostgreSqlDialect {}, text).tokenize().ok();
    let (Some(all), Some(needle)) = (tokens(sql), tokens(GRAFANA)) else { return sql.into() };
    let solid = |t: &Token| !matches!(t, Token::Whitespace(_));
    let needle: Vec<&Token> = needle.iter().filter(|t| solid(t)).collect();
    let positions: Vec<usize> = (0..all.len()).filter(|&i| solid(&all[i])).collect();
    let mut out = String::with_capacity(sql.len());
    let (mut copied, mut k) = (0, 0);
    while k + needle.len() <= positions.len() {
        if (0..needle.len()).all(|j| &all[positions[k + j]] == needle[j]) {
            all[copied..positions[k]].iter().for_each(|t| out.push_str(&t.to_string()));
            out.push_str(PLANNABLE);
            copied = positions[k + needle.len() - 1] + 1;
            k += needle.len();
        } else {
            k += 1;
        }
    }
    if copied == 0 {
        return sql.into();
    }
    all[copied..].iter().for_each(|t| out.push_str(&t.to_string()));
    out.into()
}

/// Parses a query as `CREATE DATASET` stored it, for REPRODUCE.
pub fn parse_query(text: &str) -> Result<Box<Query>> {
    match parse(text)?.as_slice() {
        [Statement::Sql(s)] => match s.as_ref() {
            ast::Statement::Query(q) => Ok(q.clone()),
            other => Err(Error::Syntax(format!("expected a query, found: {other}"))),
        },
        _ => Err(Error::Syntax("expected one query".into())),
    }
}

fn parse_statement(parser: &mut Parser, sql: &str) -> Result<Statement> {
    if words(parser, &["CREATE", "DATASET"]) {
        let name = parser.parse_object_name(false)?;
        parser.expect_keyword_is(Keyword::AS)?;
        let start = parser.peek_token_ref().span.start;
        parser.parse_query()?;
        let end = parser.peek_token_ref().span.start;
        let query = slice(sql, start, end).trim().to_string();
        return Ok(Statement::CreateDataset { name, query });
    }
    if words(parser, &["REPRODUCE", "DATASET"]) {
        return Ok(Statement::ReproduceDataset { name: parser.parse_object_name(false)? });
    }
    if words(parser, &["DESCRIBE", "HISTORY"]) {
        let table = parser.parse_object_name(true)?;
        let limit = if parser.parse_keyword(Keyword::LIMIT) { Some(parser.parse_literal_uint()?) } else { None };
        return Ok(Statement::DescribeHistory { table, limit });
    }
    if words(parser, &["CREATE", "FEATURE", "VIEW"]) {
        return Ok(Statement::CreateFeatureView(feature_view(parser, sql)?));
    }
    if words(parser, &["DROP", "FEATURE", "VIEW"]) {
        let if_exists = words(parser, &["IF", "EXISTS"]);
        return Ok(Statement::DropFeatureView { name: crate::sql::normalize_ident(&parser.parse_identifier()?), if_exists });
    }
    if words(parser, &["SHOW", "FEATURE", "VIEWS"]) {
        return Ok(Statement::ShowFeatureViews);
    }
    if words(parser, &["CREATE", "EVALUATION"]) {
        return Ok(Statement::CreateEvaluation(evaluation(parser, sql)?));
    }
    if words(parser, &["DROP", "EVALUATION"]) {
        let if_exists = words(parser, &["IF", "EXISTS"]);
        return Ok(Statement::DropEvaluation { name: crate::sql::normalize_ident(&parser.parse_identifier()?), if_exists });
    }
    if words(parser, &["SHOW", "EVALUATIONS"]) {
        return Ok(Statement::ShowEvaluations);
    }
    if words(parser, &["RUN", "EVALUATION"]) {
        let name = crate::sql::normalize_ident(&parser.parse_identifier()?);
        let window = if words(parser, &["FOR", "WINDOW"]) {
            let start = parser.parse_expr()?;
            parser.expect_token(&Token::Comma)?;
            Some((start, parser.parse_expr()?))
        } else {
            None
        };
        return Ok(Statement::RunEvaluation { name, window });
    }
    if words(parser, &["BACKFILL", "EVALUATION"]) {
        let name = crate::sql::normalize_ident(&parser.parse_identifier()?);
        parser.expect_keyword_is(Keyword::FROM)?;
        let from = parser.parse_expr()?;
        parser.expect_keyword_is(Keyword::TO)?;
        return Ok(Statement::BackfillEvaluation { name, from, to: parser.parse_expr()? });
    }
    if words(parser, &["VACUUM"]) {
        let table = parser.parse_object_name(true)?;
        let retain_hours = if words(parser, &["RETAIN"]) {
            let n = parser.parse_literal_uint()?;
            if !words(parser, &["HOURS"]) && !words(parser, &["HOUR"]) {
                return Err(parser.expected::<()>("HOURS", parser.peek_token()).unwrap_err().into());
            }
            Some(n)
        } else {
            None
        };
        let dry_run = words(parser, &["DRY", "RUN"]);
        return Ok(Statement::Vacuum { table, retain_hours, dry_run });
    }
    if words(parser, &["OPTIMIZE"]) {
        let table = parser.parse_object_name(true)?;
        let zorder = if words(parser, &["ZORDER", "BY"]) {
            parser.expect_token(&Token::LParen)?;
            let cols = parser.parse_comma_separated(|p| p.parse_identifier())?;
            parser.expect_token(&Token::RParen)?;
            cols.iter().map(crate::sql::normalize_ident).collect()
        } else {
            vec![]
        };
        return Ok(Statement::Optimize { table, zorder });
    }
    if words(parser, &["RESTORE"]) {
        words(parser, &["TABLE"]);
        let table = parser.parse_object_name(true)?;
        parser.expect_keyword_is(Keyword::TO)?;
        let to = if words(parser, &["VERSION", "AS", "OF"]) {
            RestoreTo::Version(parser.parse_literal_uint()?)
        } else if words(parser, &["TIMESTAMP", "AS", "OF"]) {
            RestoreTo::Timestamp(parser.parse_expr()?)
        } else {
            return Err(parser.expected::<()>("VERSION AS OF or TIMESTAMP AS OF", parser.peek_token()).unwrap_err().into());
        };
        return Ok(Statement::Restore { table, to });
    }
    let mut stmt = parser.parse_statement()?;
    crate::limits::depth::balance_and_check(&mut stmt)?;
    checked(PG.rewrite(stmt))
}

fn feature_view(parser: &mut Parser, sql: &str) -> Result<FeatureViewSpec> {
    let ident = |parser: &mut Parser| -> Result<String> { Ok(crate::sql::normalize_ident(&parser.parse_identifier()?)) };
    let name = ident(parser)?;
    let source = if parser.parse_keyword(Keyword::ON) {
        ViewSource::Table(parser.parse_object_name(true)?)
    } else if parser.parse_keyword(Keyword::AS) {
        // The query runs up to the ENTITY clause: find it by tokens, outside parentheses, since
        // a query parser would take `ENTITY (k)` for a table alias.
        let start = parser.peek_token_ref().span.start;
        let mut depth = 0i32;
        loop {
            let t = parser.peek_token_ref();
            match &t.token {
                Token::EOF => return Err(Error::Syntax("CREATE FEATURE VIEW ... AS <query> needs ENTITY (...) after the query".into())),
                Token::Word(w) if depth == 0 && w.quote_style.is_none() && w.value.eq_ignore_ascii_case("ENTITY") => break,
                Token::LParen => depth += 1,
                Token::RParen => depth -= 1,
                _ => {}
            }
            parser.next_token();
        }
        let end = parser.peek_token_ref().span.start;
        let text = slice(sql, start, end).trim().to_string();
        parse_query(&text)?;
        ViewSource::Query(text)
    } else {
        return Err(parser.expected::<()>("ON table or AS query", parser.peek_token()).unwrap_err().into());
    };
    if !words(parser, &["ENTITY"]) {
        return Err(parser.expected::<()>("ENTITY (key, ...)", parser.peek_token()).unwrap_err().into());
    }
    parser.expect_token(&Token::LParen)?;
    let mut entity = vec![ident(parser)?];
    while parser.consume_token(&Token::Comma) {
        entity.push(ident(parser)?);
    }
    parser.expect_token(&Token::RParen)?;
    if !words(parser, &["TIMESTAMP"]) {
        return Err(parser.expected::<()>("TIMESTAMP column", parser.peek_token()).unwrap_err().into());
    }
    let timestamp = ident(parser)?;
    let created = if words(parser, &["CREATED"]) { Some(ident(parser)?) } else { None };
    let ttl = if words(parser, &["TTL"]) {
        words(parser, &["INTERVAL"]);
        Some(parser.parse_literal_string()?)
    } else {
        None
    };
    Ok(FeatureViewSpec { name, source, entity, timestamp, created, ttl })
}

fn evaluation(parser: &mut Parser, sql: &str) -> Result<EvaluationSpec> {
    let name = crate::sql::normalize_ident(&parser.parse_identifier()?);
    if !words(parser, &["SCHEDULE"]) {
        return Err(parser.expected::<()>("SCHEDULE '<cron>'", parser.peek_token()).unwrap_err().into());
    }
    let schedule = parser.parse_literal_string()?;
    let (mut window, mut lag, mut on_commit) = (None, None, None);
    loop {
        if words(parser, &["WINDOW"]) {
            words(parser, &["INTERVAL"]);
            window = Some(parser.parse_literal_string()?);
        } else if words(parser, &["LAG"]) {
            words(parser, &["INTERVAL"]);
            lag = Some(parser.parse_literal_string()?);
        } else if words(parser, &["ON", "COMMIT", "TO"]) {
            on_commit = Some(parser.parse_object_name(true)?);
        } else {
            break;
        }
    }
    parser.expect_keyword_is(Keyword::AS)?;
    let start = parser.peek_token_ref().span.start;
    parser.parse_query()?;
    let end = parser.peek_token_ref().span.start;
    let query = slice(sql, start, end).trim().to_string();
    Ok(EvaluationSpec { name, schedule, window, lag, on_commit, query })
}

/// Consumes the given words (keywords or not, any case) if the next tokens are exactly these.
fn words(parser: &mut Parser, expected: &[&str]) -> bool {
    let matches = expected.iter().enumerate().all(|(i, w)| {
        matches!(&parser.peek_nth_token_ref(i).token, Token::Word(word) if word.quote_style.is_none() && word.value.eq_ignore_ascii_case(w))
    });
    if matches {
        for _ in expected {
            parser.next_token();
        }
    }
    matches
}

/// The text between two token locations (lines and columns count from 1, columns in chars).
fn slice(sql: &str, start: Location, end: Location) -> &str {
    let offset = |loc: Location| -> usize {
        if loc.line == 0 {
            return sql.len();
        }
        let mut line_start = 0;
        for (i, line) in sql.split_inclusive('\n').enumerate() {
            if i as u64 + 1 == loc.line {
                return line_start
                    + line.char_indices().nth(loc.column.saturating_sub(1) as usize).map(|(b, _)| b).unwrap_or(line.len());
            }
            line_start += line.len();
        }
        sql.len()
    };
    let (s, e) = (offset(start), offset(end));
    if s <= e { &sql[s..e] } else { "" }
}

/// PostgreSQL, plus the table-version clauses (`VERSION AS OF`, `TIMESTAMP AS OF`,
/// `FOR SYSTEM_TIME AS OF`). Everything else is PostgreSqlDialect's answer, and the parser's
/// PostgreSQL-only paths stay on because we report PostgreSqlDialect's type id.
#[derive(Debug)]
pub struct HindsightDialect;

macro_rules! delegate {
    ($($name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        $(fn $name(&self $(, $arg: $ty)*) -> $ret { PostgreSqlDialect {}.$name($($arg),*) })*
    };
}

impl Dialect for HindsightDialect {
    fn dialect(&self) -> TypeId {
        TypeId::of::<PostgreSqlDialect>()
    }

    fn supports_table_versioning(&self) -> bool {
        true
    }

    fn get_next_precedence(&self, parser: &Parser) -> Option<Result<u8, ParserError>> {
        PostgreSqlDialect {}.get_next_precedence(parser)
    }

    delegate! {
        identifier_quote_style(&self, identifier: &str) -> Option<char>;
        is_delimited_identifier_start(&self, ch: char) -> bool;
        is_identifier_start(&self, ch: char) -> bool;
        is_identifier_part(&self, ch: char) -> bool;
        supports_unicode_string_literal(&self) -> bool;
        is_reserved_for_identifier(&self, kw: Keyword) -> bool;
        is_custom_operator_part(&self, ch: char) -> bool;
        supports_filter_during_aggregation(&self) -> bool;
        supports_group_by_expr(&self) -> bool;
        prec_value(&self, prec: Precedence) -> u8;
        allow_extract_custom(&self) -> bool;
        allow_extract_single_quotes(&self) -> bool;
        supports_create_index_with_clause(&self) -> bool;
        supports_explain_with_utility_options(&self) -> bool;
        supports_listen_notify(&self) -> bool;
        supports_factorial_operator(&self) -> bool;
        supports_bitwise_shift_operators(&self) -> bool;
        supports_comment_on(&self) -> bool;
        supports_load_extension(&self) -> bool;
        supports_named_fn_args_with_colon_operator(&self) -> bool;
        supports_named_fn_args_with_expr_name(&self) -> bool;
        supports_empty_projections(&self) -> bool;
        supports_nested_comments(&self) -> bool;
        supports_string_escape_constant(&self) -> bool;
        supports_numeric_literal_underscores(&self) -> bool;
        supports_array_typedef_with_brackets(&self) -> bool;
        supports_geometric_types(&self) -> bool;
        supports_set_names(&self) -> bool;
        supports_alter_column_type_using(&self) -> bool;
        supports_notnull_operator(&self) -> bool;
        supports_interval_options(&self) -> bool;
        supports_insert_table_alias(&self) -> bool;
        supports_create_table_like_parenthesized(&self) -> bool;
        supports_select_wildcard_with_alias(&self) -> bool;
        supports_comma_separated_trim(&self) -> bool;
        supports_xml_expressions(&self) -> bool;
        supports_comment_optimizer_hint(&self) -> bool;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_postgres_keeps_its_parse_and_time_travel_parses() {
        let s = parse("SELECT * FROM t VERSION AS OF 3 AS a JOIN u TIMESTAMP AS OF now() b ON a.x = b.x").unwrap();
        let Statement::Sql(s) = &s[0] else { panic!() };
        let text = s.to_string();
        assert!(text.contains("VERSION AS OF 3"), "{text}");
        assert!(text.contains("TIMESTAMP AS OF now()"), "{text}");
        // `version` stays usable as an alias.
        assert!(parse("SELECT version.x FROM t version").is_ok());
    }

    #[test]
    fn our_statements_and_their_text() {
        let sql = "CREATE DATASET d AS\n  SELECT a, b\n  FROM t WHERE a > 1 ;  REPRODUCE DATASET d; describe history t limit 3; VACUUM t RETAIN 168 HOURS DRY RUN";
        let s = parse(sql).unwrap();
        assert_eq!(s.len(), 4);
        match &s[0] {
            Statement::CreateDataset { query, .. } => assert_eq!(query, "SELECT a, b\n  FROM t WHERE a > 1"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(&s[2], Statement::DescribeHistory { limit: Some(3), .. }));
        assert!(matches!(&s[3], Statement::Vacuum { retain_hours: Some(168), dry_run: true, .. }));
    }

    #[test]
    fn feature_views() {
        let sql = "CREATE FEATURE VIEW Driver AS SELECT d.id, (x + 1) AS y FROM t d WHERE d.x IN (1, 2) ENTITY (id) TIMESTAMP ts CREATED c TTL INTERVAL '30 days'; \
                   create feature view v2 on public.t entity (a, \"B\") timestamp ts; DROP FEATURE VIEW IF EXISTS v2; SHOW FEATURE VIEWS";
        let s = parse(sql).unwrap();
        let Statement::CreateFeatureView(v) = &s[0] else { panic!("{:?}", s[0]) };
        assert_eq!(v.name, "driver");
        assert_eq!(v.source, ViewSource::Query("SELECT d.id, (x + 1) AS y FROM t d WHERE d.x IN (1, 2)".into()));
        assert_eq!((v.created.as_deref(), v.ttl.as_deref()), (Some("c"), Some("30 days")));
        let Statement::CreateFeatureView(v) = &s[1] else { panic!() };
        assert_eq!(v.entity, ["a", "B"]);
        assert!(matches!(&s[2], Statement::DropFeatureView { if_exists: true, .. }));
        assert!(matches!(&s[3], Statement::ShowFeatureViews));
    }

    #[test]
    fn evaluations() {
        let sql = "CREATE EVALUATION weekly SCHEDULE '0 6 * * 1' LAG INTERVAL '7 days' WINDOW '7 days' ON COMMIT TO public.catalog AS \
                   SELECT roc_auc(p, y) FROM t WHERE ts >= $window_start AND ts < $window_end; \
                   RUN EVALUATION weekly FOR WINDOW '2026-01-01', TIMESTAMP '2026-01-08'; BACKFILL EVALUATION weekly FROM '2026-01-01' TO now(); \
                   SHOW EVALUATIONS; DROP EVALUATION IF EXISTS weekly";
        let s = parse(sql).unwrap();
        let Statement::CreateEvaluation(e) = &s[0] else { panic!("{:?}", s[0]) };
        assert_eq!((e.schedule.as_str(), e.window.as_deref(), e.lag.as_deref()), ("0 6 * * 1", Some("7 days"), Some("7 days")));
        assert_eq!(e.query, "SELECT roc_auc(p, y) FROM t WHERE ts >= $window_start AND ts < $window_end");
        assert!(matches!(&s[1], Statement::RunEvaluation { window: Some(_), .. }));
        assert!(matches!(&s[2], Statement::BackfillEvaluation { .. }));
        assert!(matches!(&s[3], Statement::ShowEvaluations));
        assert!(matches!(&s[4], Statement::DropEvaluation { if_exists: true, .. }));
    }
}

