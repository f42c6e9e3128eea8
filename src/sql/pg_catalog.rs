//! What clients read from `pg_catalog` beyond what datafusion-pg-catalog provides:
//! - `pg_proc` with hindsight's own functions in it, and the functions psql's `\df` (and
//!   DBeaver's function browser) call on it: `pg_function_is_visible`, `pg_get_function_result`,
//!   `pg_get_function_arguments` and `pg_get_function_identity_arguments`;
//! - `to_regtype(name)`, with which psycopg (and so SQLAlchemy) looks up types such as hstore;
//! - `pg_get_serial_sequence`, which SQLAlchemy's column reflection calls (with `json_build_object`,
//!   from `semantics::json`);
//! - a rewrite of the correlated scalar subqueries over catalog tables that reflection queries
//!   are full of, which DataFusion plans only when aggregated.
//!
//! datafusion-pg-catalog ships PostgreSQL's own pg_proc as a static table. Ours are built-ins too,
//! so they join it in `pg_catalog` (`\df roc*` and `\dfS` list them; a bare `\df` lists user
//! functions, of which hindsight has none, as in a fresh PostgreSQL database).
//!
//! `install` sets up the whole of pg_catalog for a session, as datafusion-pg-catalog's
//! `setup_pg_catalog` does, except that PostgreSQL's static tables are parsed once per process
//! and shared: `setup_pg_catalog` parses a fresh ~3 MiB copy for every connection.
//! Must not: know about the warehouse or sessions; the overlay only wraps the schema it is given.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int32Array, RecordBatch, StringArray, new_null_array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Int32Type, Schema};
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::config::ConfigOptions;
use datafusion::datasource::MemTable;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, Volatility, create_udf};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast;
use datafusion_pg_catalog::pg_catalog::PgCatalogStaticTables;
use datafusion_pg_catalog::pg_catalog::format_type::create_format_type_udf;

const PG_CATALOG: &str = "pg_catalog";
/// PostgreSQL's own oid for the pg_catalog namespace.
const PG_CATALOG_OID: i32 = 11;
/// Our functions' oids start here, far above the ones PostgreSQL ships.
const FIRST_OID: i32 = 90_000;

/// A built-in of ours, as `\df` shows it: (name, kind, arguments, result).
/// Kind is pg_proc's `prokind` ('a' aggregate, 'f' function); a result starting with "SETOF"
/// marks a table function.
pub(crate) const FUNCTIONS: &[(&str, char, &str, &str)] = &[
    ("roc_auc", 'a', "score double precision, label boolean", "double precision"),
    ("pr_auc", 'a', "score double precision, label boolean", "double precision"),
    ("log_loss", 'a', "score double precision, label boolean", "double precision"),
    ("brier", 'a', "score double precision, label boolean", "double precision"),
    ("rmse", 'a', "pred double precision, y double precision", "double precision"),
    ("mae", 'a', "pred double precision, y double precision", "double precision"),
    ("mape", 'a', "pred double precision, y double precision", "double precision"),
    ("r2", 'a', "pred double precision, y double precision", "double precision"),
    ("ndcg_at", 'a', "k integer, score double precision, relevance double precision", "double precision"),
    ("precision_at", 'a', "score double precision, label boolean, t double precision", "double precision"),
    ("recall_at", 'a', "score double precision, label boolean, t double precision", "double precision"),
    ("f1_at", 'a', "score double precision, label boolean, t double precision", "double precision"),
    ("confusion_at", 'a', "score double precision, label boolean, t double precision", "record"),
    ("accuracy", 'a', "pred anyelement, label anyelement", "double precision"),
    ("macro_f1", 'a', "pred anyelement, label anyelement", "double precision"),
    ("weighted_f1", 'a', "pred anyelement, label anyelement", "double precision"),
    ("ece", 'a', "score double precision, label boolean, bins integer", "double precision"),
    ("psi", 'a', "x anyelement, is_current boolean, bins integer DEFAULT 30", "double precision"),
    ("ks_stat", 'a', "x anyelement, is_current boolean", "double precision"),
    ("ks_pvalue", 'a', "x anyelement, is_current boolean", "double precision"),
    ("js_distance", 'a', "x anyelement, is_current boolean, bins integer DEFAULT 30", "double precision"),
    ("wasserstein", 'a', "x anyelement, is_current boolean", "double precision"),
    ("chi2_stat", 'a', "x anyelement, is_current boolean", "double precision"),
    ("chi2_pvalue", 'a', "x anyelement, is_current boolean", "double precision"),
    ("drift_test", 'a', "x anyelement, is_current boolean", "record"),
    (
        "historical_features",
        'f',
        "spine text, VARIADIC features text[], \"timestamp\" text DEFAULT NULL",
        "SETOF record",
    ),
    ("online_features", 'f', "view text, VARIADIC keys \"any\"", "SETOF record"),
    ("drift", 'f', "baseline text, current text, VARIADIC columns text[]", "SETOF record"),
    ("history", 'f', "table_name text", "SETOF record"),
];

/// pg_proc (PostgreSQL's rows and ours) and each function's (result, arguments) text, built once
/// per process: every session shares them.
struct Proc {
    table: Arc<MemTable>,
    texts: HashMap<i32, (String, String)>,
    /// Type oids by `typname` ("int4", "_int4") and by SQL name ("integer", "integer[]").
    types: HashMap<String, i32>,
}

static PROC: LazyLock<Result<Proc, String>> = LazyLock::new(|| Proc::build().map_err(|e| e.to_string()));

/// PostgreSQL's static catalog tables (pg_type, pg_proc, pg_operator, ...), parsed once.
static STATIC_TABLES: LazyLock<Result<Arc<PgCatalogStaticTables>, String>> =
    LazyLock::new(|| PgCatalogStaticTables::try_new().map(Arc::new).map_err(|e| e.to_string()));

fn static_tables() -> DfResult<&'static Arc<PgCatalogStaticTables>> {
    STATIC_TABLES.as_ref().map_err(|e| DataFusionError::Internal(format!("PostgreSQL's catalog tables: {e}")))
}

impl Proc {
    fn build() -> DfResult<Self> {
        let statics = static_tables()?;
        let source = &statics.pg_proc;
        // Our rows leave most columns NULL, so every column must admit NULL.
        let schema = Arc::new(Schema::new(
            source.schema().fields().iter().map(|f| Field::new(f.name(), f.data_type().clone(), true)).collect::<Vec<_>>(),
        ));
        let mut batches = Vec::new();
        let mut texts = HashMap::new();
        for batch in source.data() {
            texts.extend(describe(batch)?);
            batches.push(RecordBatch::try_new(schema.clone(), batch.columns().to_vec())?);
        }
        let ours = ours(&schema)?;
        for (i, (_, _, args, result)) in FUNCTIONS.iter().enumerate() {
            texts.insert(FIRST_OID + i as i32, (result.to_string(), args.to_string()));
        }
        batches.push(ours);
        let types = type_oids(&statics.pg_type)?;
        Ok(Self { table: Arc::new(MemTable::try_new(schema, vec![batches])?), texts, types })
    }
}

fn type_oids(pg_type: &datafusion_pg_catalog::pg_catalog::ArrowTable) -> DfResult<HashMap<String, i32>> {
    let mut types = HashMap::new();
    for batch in pg_type.data() {
        let (Some(oids), Some(names)) = (batch.column_by_name("oid"), batch.column_by_name("typname")) else {
            return Err(DataFusionError::Internal("pg_type has no oid or typname".into()));
        };
        let oids = cast(oids, &DataType::Int32)?;
        let names = cast(names, &DataType::Utf8)?;
        let sql_names = type_names(oids.clone())?;
        let (oids, names) = (oids.as_primitive::<Int32Type>(), names.as_string::<i32>());
        for row in 0..batch.num_rows() {
            if oids.is_valid(row) && names.is_valid(row) {
                types.insert(names.value(row).to_string(), oids.value(row));
                types.entry(sql_names.value(row).to_string()).or_insert(oids.value(row));
            }
        }
    }
    Ok(types)
}

/// Result and argument texts of PostgreSQL's functions, from their type oids.
fn describe(batch: &RecordBatch) -> DfResult<Vec<(i32, (String, String))>> {
    let column = |name: &str| {
        batch.column_by_name(name).ok_or_else(|| DataFusionError::Internal(format!("pg_proc has no {name}")))
    };
    let oids = cast(column("oid")?, &DataType::Int32)?;
    let oids = oids.as_primitive::<Int32Type>();
    let returns = cast(column("prorettype")?, &DataType::Int32)?;
    let sets = cast(column("proretset")?, &DataType::Boolean)?;
    let sets = sets.as_boolean();
    let args = cast(column("proargtypes")?, &DataType::Utf8)?;
    let args = args.as_string::<i32>();
    let returns = type_names(returns)?;
    let mut out = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        if oids.is_null(row) {
            continue;
        }
        let mut result = if returns.is_null(row) { String::new() } else { returns.value(row).to_string() };
        if sets.is_valid(row) && sets.value(row) {
            result = format!("SETOF {result}");
        }
        let arg_oids: Vec<i32> = if args.is_null(row) {
            Vec::new()
        } else {
            args.value(row).split_whitespace().filter_map(|t| t.parse().ok()).collect()
        };
        let names = type_names(Arc::new(Int32Array::from(arg_oids)))?;
        let arguments = (0..names.len()).map(|i| names.value(i)).collect::<Vec<_>>().join(", ");
        out.push((oids.value(row), (result, arguments)));
    }
    Ok(out)
}

/// PostgreSQL's names for type oids ("double precision", "integer"), as `format_type` gives them.
fn type_names(oids: ArrayRef) -> DfResult<StringArray> {
    let rows = oids.len();
    let typmods: ArrayRef = Arc::new(Int32Array::from(vec![-1; rows]));
    let args = ScalarFunctionArgs {
        arg_fields: vec![Arc::new(Field::new("oid", DataType::Int32, true)), Arc::new(Field::new("typmod", DataType::Int32, true))],
        args: vec![ColumnarValue::Array(oids), ColumnarValue::Array(typmods)],
        number_rows: rows,
        return_field: Arc::new(Field::new("format_type", DataType::Utf8, true)),
        config_options: Arc::new(ConfigOptions::default()),
    };
    let names = create_format_type_udf().invoke_with_args(args)?.into_array(rows)?;
    Ok(names.as_string::<i32>().clone())
}

/// Our functions as pg_proc rows: the columns `\df` and JDBC's getFunctions read are filled, the
/// rest NULL. Values are written as text and cast, so the rows follow whatever types the static
/// table uses.
fn ours(schema: &Arc<Schema>) -> DfResult<RecordBatch> {
    let n = FUNCTIONS.len();
    let text = |f: &dyn Fn(usize, &(&str, char, &str, &str)) -> String| -> ArrayRef {
        Arc::new(StringArray::from(FUNCTIONS.iter().enumerate().map(|(i, x)| f(i, x)).collect::<Vec<_>>()))
    };
    let columns = schema
        .fields()
        .iter()
        .map(|field| {
            let values = match field.name().as_str() {
                "oid" => text(&|i, _| (FIRST_OID + i as i32).to_string()),
                "proname" => text(&|_, f| f.0.to_string()),
                "pronamespace" => text(&|_, _| PG_CATALOG_OID.to_string()),
                "proowner" => text(&|_, _| "10".to_string()),
                "prokind" => text(&|_, f| f.1.to_string()),
                "proretset" => Arc::new(BooleanArray::from(FUNCTIONS.iter().map(|f| f.3.starts_with("SETOF")).collect::<Vec<_>>())),
                "provolatile" => text(&|_, _| "i".to_string()),
                "pronargs" => text(&|_, f| f.2.split(", ").count().to_string()),
                // `record`: our results are doubles or structs; \df shows the text below instead.
                "prorettype" => text(&|_, f| if f.3 == "double precision" { "701" } else { "2249" }.to_string()),
                "proargtypes" => text(&|_, _| String::new()),
                "prosrc" => text(&|_, f| f.0.to_string()),
                _ => return Ok(new_null_array(field.data_type(), n)),
            };
            cast(&values, field.data_type()).map_err(DataFusionError::from)
        })
        .collect::<DfResult<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// Adds pg_catalog, with our pg_proc, to the session's catalog `catalog_name` (per session: its
/// tables list that session's catalogs).
pub fn install_schema(ctx: &SessionContext, catalog_name: &str) -> DfResult<()> {
    use datafusion_pg_catalog::pg_catalog as pg;
    let proc = PROC.as_ref().map_err(|e| DataFusionError::Internal(format!("building pg_proc: {e}")))?;
    let statics = static_tables()?;
    let catalog = ctx
        .catalog(catalog_name)
        .ok_or_else(|| DataFusionError::Internal(format!("no catalog {catalog_name}")))?;
    let inner = Arc::new(pg::PgCatalogSchemaProvider::try_new(
        Arc::new(SkipCorrupt(ctx.state().catalog_list().clone())) as Arc<dyn datafusion::catalog::CatalogProviderList>,
        statics.clone(),
        pg::context::EmptyContextProvider,
    )?);
    catalog.register_schema(PG_CATALOG, Arc::new(WithProc { inner, proc: proc.table.clone() }))?;
    Ok(())
}

/// Registers the functions and planners that go with pg_catalog (once, in the engine's
/// template: none of them depends on a session).
pub fn install_functions(ctx: &SessionContext, catalog_name: &str) -> DfResult<()> {
    use datafusion_pg_catalog::pg_catalog::{self as pg, has_privilege_udf, pg_get_expr_udf, quote_ident_udf};
    let statics = static_tables()?;

    // What `setup_pg_catalog` registers besides the schema (the unit test
    // `install_registers_what_setup_pg_catalog_does` keeps the two lists in step).
    let mut udfs = vec![
        pg::create_current_database_udf(catalog_name),
        pg::create_current_schema_udf(),
        pg::create_current_schemas_udf(),
        pg::create_pg_get_userbyid_udf(),
        pg::create_pg_table_is_visible(),
        create_format_type_udf(),
        pg::create_session_user_udf(),
        pg_get_expr_udf::create_pg_get_expr_udf(),
        pg::create_pg_get_partkeydef_udf(),
        pg::create_pg_relation_is_publishable_udf(),
        pg::create_pg_get_statisticsobjdef_columns_udf(),
        pg::create_pg_encoding_to_char_udf(),
        pg::create_pg_backend_pid_udf(),
        pg::create_pg_relation_size_udf(),
        pg::create_pg_total_relation_size_udf(),
        pg::create_pg_stat_get_numscans(),
        pg::create_pg_get_constraintdef(),
        pg::create_pg_get_partition_ancestors_udf(),
        quote_ident_udf::create_quote_ident_udf(),
        quote_ident_udf::create_parse_ident_udf(),
        pg::array_bounds_udf::create_array_upper_udf(),
        pg::array_bounds_udf::create_array_lower_udf(),
    ];
    for name in ["has_table_privilege", "has_schema_privilege", "has_database_privilege", "has_any_column_privilege"] {
        udfs.push(has_privilege_udf::create_has_privilege_udf(name));
    }
    for udf in udfs {
        ctx.register_udf(udf);
    }
    ctx.register_udtf("pg_get_keywords", statics.pg_get_keywords.clone());
    {
        let state = ctx.state_ref();
        let existing = state.read().clone();
        *state.write() = datafusion::execution::SessionStateBuilder::new_from_existing(existing)
            .with_type_planner(Arc::new(pg::oid_type_planner::PgOidTypePlanner))
            .build();
    }
    pg::generate_series_arg_coercion::CoerceIntArgsToBigInt::widen(ctx);

    // Ours.
    ctx.register_udf(lookup_udf("pg_get_function_result", |t| &t.0));
    ctx.register_udf(lookup_udf("pg_get_function_arguments", |t| &t.1));
    ctx.register_udf(lookup_udf("pg_get_function_identity_arguments", |t| &t.1));
    for name in ["pg_function_is_visible", "pg_type_is_visible", "pg_collation_is_visible"] {
        ctx.register_udf(visible_udf(name));
    }
    ctx.register_udf(to_regtype_udf());
    ctx.register_udf(no_sequence_udf());
    Ok(())
}

/// `pg_get_serial_sequence(table, column)`: NULL, as for any column without a sequence; Delta
/// tables have none. SQLAlchemy's column reflection asks.
fn no_sequence_udf() -> ScalarUDF {
    let function = |args: &[ColumnarValue]| {
        let rows = ColumnarValue::values_to_arrays(args)?.first().map_or(1, |a| a.len());
        Ok(ColumnarValue::Array(new_null_array(&DataType::Utf8, rows)))
    };
    create_udf("pg_get_serial_sequence", vec![DataType::Utf8, DataType::Utf8], DataType::Utf8, Volatility::Stable, Arc::new(function))
}

/// `to_regtype('name')`: the type's oid, or NULL when there is no such type (as PostgreSQL).
fn to_regtype_udf() -> ScalarUDF {
    let function = move |args: &[ColumnarValue]| {
        let types = &PROC.as_ref().map_err(|e| DataFusionError::Internal(e.clone()))?.types;
        let names = ColumnarValue::values_to_arrays(args)?;
        let names = cast(&names[0], &DataType::Utf8)?;
        let out: Int32Array = names
            .as_string::<i32>()
            .iter()
            .map(|name| {
                let name = name?.trim().to_ascii_lowercase();
                let name = name.strip_prefix("pg_catalog.").unwrap_or(&name).trim_matches('"');
                types.get(name).copied()
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    };
    create_udf("to_regtype", vec![DataType::Utf8], DataType::Int32, Volatility::Stable, Arc::new(function))
}

/// A function of a function's oid giving one of its texts; NULL for an unknown oid, as PostgreSQL.
fn lookup_udf(name: &str, pick: fn(&(String, String)) -> &String) -> ScalarUDF {
    let function = move |args: &[ColumnarValue]| {
        let texts = &PROC.as_ref().map_err(|e| DataFusionError::Internal(e.clone()))?.texts;
        let oids = ColumnarValue::values_to_arrays(args)?;
        let oids = cast(&oids[0], &DataType::Int32)?;
        let oids = oids.as_primitive::<Int32Type>();
        let out: StringArray = oids.iter().map(|oid| oid.and_then(|o| texts.get(&o)).map(|t| pick(t).as_str())).collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    };
    create_udf(name, vec![DataType::Int32], DataType::Utf8, Volatility::Stable, Arc::new(function))
}

/// Every function, type and collation is usable unqualified: there are no user schemas of them
/// to hide.
fn visible_udf(name: &str) -> ScalarUDF {
    let function = |args: &[ColumnarValue]| {
        let oids = ColumnarValue::values_to_arrays(args)?;
        let out: BooleanArray = (0..oids[0].len()).map(|i| Some(oids[0].is_valid(i))).collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    };
    create_udf(name, vec![DataType::Int32], DataType::Boolean, Volatility::Stable, Arc::new(function))
}

/// The catalogs as pg_catalog lists them (`pg_class`, `pg_attribute`, so psql's `\d`): without
/// the tables whose log is corrupt, which fail alone, where they are read.
#[derive(Debug)]
struct SkipCorrupt<T: ?Sized>(Arc<T>);

impl datafusion::catalog::CatalogProviderList for SkipCorrupt<dyn datafusion::catalog::CatalogProviderList> {
    fn register_catalog(
        &self,
        name: String,
        catalog: Arc<dyn datafusion::catalog::CatalogProvider>,
    ) -> Option<Arc<dyn datafusion::catalog::CatalogProvider>> {
        self.0.register_catalog(name, catalog)
    }

    fn catalog_names(&self) -> Vec<String> {
        self.0.catalog_names()
    }

    fn catalog(&self, name: &str) -> Option<Arc<dyn datafusion::catalog::CatalogProvider>> {
        self.0.catalog(name).map(|c| Arc::new(SkipCorrupt(c)) as _)
    }
}

impl datafusion::catalog::CatalogProvider for SkipCorrupt<dyn datafusion::catalog::CatalogProvider> {
    fn schema_names(&self) -> Vec<String> {
        self.0.schema_names()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        self.0.schema(name).map(|s| Arc::new(SkipCorrupt(s)) as _)
    }
}

#[async_trait]
impl SchemaProvider for SkipCorrupt<dyn SchemaProvider> {
    fn table_names(&self) -> Vec<String> {
        self.0.table_names()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        match self.0.table(name).await {
            Err(e) if crate::error::datafusion_sqlstate(&e) == "XX001" => Ok(None),
            other => other,
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.0.table_exist(name)
    }
}

/// The pg_catalog schema datafusion-pg-catalog built, with our pg_proc in place of its own.
#[derive(Debug)]
struct WithProc {
    inner: Arc<dyn SchemaProvider>,
    proc: Arc<MemTable>,
}

#[async_trait]
impl SchemaProvider for WithProc {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if name == "pg_proc" {
            return Ok(Some(self.proc.clone()));
        }
        self.inner.table(name).await
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_registers_what_setup_pg_catalog_does() {
        let theirs = SessionContext::new();
        datafusion_pg_catalog::setup_pg_catalog(&theirs, "datafusion", datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider)
            .expect("setup_pg_catalog");
        let ours = SessionContext::new();
        install_functions(&ours, "datafusion").expect("install functions");
        install_schema(&ours, "datafusion").expect("install schema");
        let (theirs, ours) = (theirs.state(), ours.state());
        for name in theirs.scalar_functions().keys() {
            assert!(ours.scalar_functions().contains_key(name), "install misses the function {name}");
        }
        for name in theirs.table_functions().keys() {
            assert!(ours.table_functions().contains_key(name), "install misses the table function {name}");
        }
        let tables = |s: &datafusion::execution::SessionState| {
            let mut names = s.catalog_list().catalog("datafusion").and_then(|c| c.schema(PG_CATALOG)).map(|p| p.table_names()).unwrap_or_default();
            names.sort();
            names
        };
        assert_eq!(tables(&theirs), tables(&ours));
    }

    #[test]
    fn texts_cover_postgres_and_ours() {
        let proc = PROC.as_ref().expect("pg_proc builds");
        // 1395 is PostgreSQL's abs(double precision).
        assert_eq!(proc.texts.get(&1395), Some(&("double precision".to_string(), "double precision".to_string())));
        assert_eq!(proc.texts.get(&FIRST_OID).map(|t| t.1.as_str()), Some(FUNCTIONS[0].2));
        for (name, oid) in [("int4", 23), ("integer", 23), ("double precision", 701), ("_int4", 1007), ("integer[]", 1007)] {
            assert_eq!(proc.types.get(name), Some(&oid), "{name}");
        }
        assert_eq!(proc.types.get("hstore"), None);
    }

    #[test]
    fn the_tables_taken_as_empty_are() {
        let statics = PgCatalogStaticTables::try_new().expect("static tables");
        for (name, table) in EMPTY_TABLES.iter().zip([&statics.pg_attrdef, &statics.pg_sequence, &statics.pg_inherits, &statics.pg_trigger]) {
            assert_eq!(table.data().iter().map(RecordBatch::num_rows).sum::<usize>(), 0, "{name}");
        }
    }

    #[test]
    fn catalog_subqueries_are_aggregated_or_null() {
        let rewrite = |sql: &str| {
            let mut s = datafusion::sql::sqlparser::parser::Parser::parse_sql(&datafusion::sql::sqlparser::dialect::PostgreSqlDialect {}, sql).expect("parses").remove(0);
            aggregate_catalog_subqueries(&mut s);
            s.to_string()
        };
        assert_eq!(
            rewrite("SELECT (SELECT n.nspname FROM pg_catalog.pg_namespace n WHERE n.oid = c.relnamespace) FROM pg_class c"),
            "SELECT (SELECT first_value(n.nspname) FROM pg_catalog.pg_namespace n WHERE n.oid = c.relnamespace) FROM pg_class c"
        );
        assert_eq!(
            rewrite("SELECT CASE WHEN a.atthasdef THEN (SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d WHERE d.adrelid = a.attrelid) END FROM pg_attribute a"),
            "SELECT CASE WHEN a.atthasdef THEN NULL END FROM pg_attribute a"
        );
        let user = "SELECT (SELECT y FROM t WHERE t.k = u.k) FROM u";
        assert_eq!(rewrite(user), user);
    }
}

/// Makes `(SELECT e FROM pg_catalog.pg_x WHERE <correlated>)` plannable as
/// `(SELECT first_value(e) FROM ...)`. DataFusion decorrelates a scalar subquery only when it is
/// aggregated; PostgreSQL instead fails at run time if one gives more than one row. Only
/// subqueries that read nothing but catalog tables are touched: their rows are keyed by oid, so at
/// most one row matches and the two agree. A user's subquery keeps DataFusion's behaviour.
pub fn aggregate_catalog_subqueries(statement: &mut ast::Statement) {
    let _ = ast::visit_expressions_mut(statement, |expr| {
        if let ast::Expr::Subquery(query) = expr
            && let Some(replacement) = wrap_in_first_value(query)
        {
            *expr = replacement;
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

/// Catalog tables that are always empty here: Delta tables have no column defaults, sequences,
/// inheritance or triggers. A scalar subquery that must read a row of one is NULL.
const EMPTY_TABLES: [&str; 4] = ["pg_attrdef", "pg_sequence", "pg_inherits", "pg_trigger"];

fn wrap_in_first_value(query: &mut ast::Query) -> Option<ast::Expr> {
    let ast::SetExpr::Select(select) = query.body.as_mut() else { return None };
    let joined = |t: &ast::TableWithJoins| {
        std::iter::once(&t.relation).chain(t.joins.iter().filter(|j| matches!(j.join_operator, ast::JoinOperator::Join(_) | ast::JoinOperator::Inner(_))).map(|j| &j.relation)).any(|r| catalog_table(r).is_some_and(|n| EMPTY_TABLES.contains(&n.as_str())))
    };
    if select.from.iter().any(joined) {
        return Some(ast::Expr::value(ast::Value::Null));
    }
    let grouped = !matches!(&select.group_by, ast::GroupByExpr::Expressions(e, _) if e.is_empty());
    let only_catalog = !select.from.is_empty()
        && select.from.iter().all(|t| is_catalog_table(&t.relation) && t.joins.iter().all(|j| is_catalog_table(&j.relation)));
    if grouped || !only_catalog || select.projection.len() != 1 {
        return None;
    }
    let expr = match &mut select.projection[0] {
        ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => e,
        _ => return None,
    };
    if matches!(expr, ast::Expr::Function(_)) && expr.to_string().to_ascii_lowercase().starts_with("count(") {
        return None;
    }
    let inner = std::mem::replace(expr, ast::Expr::value(ast::Value::Null));
    *expr = super::build::call("first_value", vec![inner]);
    None
}

fn is_catalog_table(factor: &ast::TableFactor) -> bool {
    catalog_table(factor).is_some()
}

/// The name of the pg_catalog table a FROM item reads, if it reads one.
fn catalog_table(factor: &ast::TableFactor) -> Option<String> {
    let ast::TableFactor::Table { name, .. } = factor else { return None };
    let parts: Vec<String> = name.0.iter().map(|p| p.to_string().trim_matches('"').to_ascii_lowercase()).collect();
    let table = match parts.as_slice() {
        [table] => table,
        [schema, table] | [_, schema, table] if schema == PG_CATALOG => table,
        _ => return None,
    };
    table.starts_with("pg_").then(|| table.clone())
}
