//! `information_schema` as PostgreSQL clients expect it: `tables`, `columns` (with Postgres type
//! names, not Arrow's), `schemata` and `views`, built from the warehouse when queried.
//!
//! DataFusion has its own information_schema, but it reports Arrow types (`Int64`, `Utf8`),
//! which SQLAlchemy, JDBC metadata and BI tools do not understand.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::error::Result as DfResult;

use super::{SCHEMAS, TableName, Warehouse};
use crate::error::to_datafusion;

pub const NAME: &str = "information_schema";
const TABLES: [&str; 4] = ["tables", "columns", "schemata", "views"];

#[derive(Debug)]
pub struct InformationSchema {
    warehouse: Arc<Warehouse>,
    catalog: String,
}

impl InformationSchema {
    pub fn new(warehouse: Arc<Warehouse>, catalog: &str) -> Self {
        Self { warehouse, catalog: catalog.to_string() }
    }

    fn strings(v: Vec<String>) -> ArrayRef {
        Arc::new(StringArray::from(v))
    }

    async fn build(&self, name: &str) -> crate::Result<Option<RecordBatch>> {
        let text = |n: &str| Field::new(n, DataType::Utf8, true);
        let mut tables: Vec<(String, String)> = Vec::new();
        for s in SCHEMAS {
            for t in self.warehouse.list_tables(s).await? {
                tables.push((s.to_string(), t));
            }
        }
        let batch = match name {
            "tables" => {
                let schema = Arc::new(Schema::new(vec![
                    text("table_catalog"),
                    text("table_schema"),
                    text("table_name"),
                    text("table_type"),
                ]));
                let n = tables.len();
                RecordBatch::try_new(
                    schema,
                    vec![
                        Self::strings(vec![self.catalog.clone(); n]),
                        Self::strings(tables.iter().map(|t| t.0.clone()).collect()),
                        Self::strings(tables.iter().map(|t| t.1.clone()).collect()),
                        Self::strings(vec!["BASE TABLE".into(); n]),
                    ],
                )?
            }
            "columns" => {
                let schema = Arc::new(Schema::new(vec![
                    text("table_catalog"),
                    text("table_schema"),
                    text("table_name"),
                    text("column_name"),
                    Field::new("ordinal_position", DataType::Int32, false),
                    text("column_default"),
                    text("is_nullable"),
                    text("data_type"),
                    Field::new("character_maximum_length", DataType::Int32, true),
                    Field::new("numeric_precision", DataType::Int32, true),
                    Field::new("numeric_scale", DataType::Int32, true),
                    text("udt_name"),
                ]));
                let mut rows: Vec<(String, String, String, i32, bool, DataType)> = Vec::new();
                for (s, t) in &tables {
                    let name = TableName::new(s, t);
                    let table = match self.warehouse.load(&name).await {
                        Ok(Some(table)) => table,
                        Ok(None) => continue,
                        // A corrupt table fails where it is read; the listing of every other
                        // table goes on without its columns.
                        Err(crate::Error::DataCorrupted(_)) => continue,
                        Err(e) => return Err(e),
                    };
                    let arrow = TableProvider::schema(&super::HindsightTable::try_new(&self.warehouse, name, table).await?);
                    for (i, f) in arrow.fields().iter().enumerate() {
                        rows.push((s.clone(), t.clone(), f.name().clone(), i as i32 + 1, f.is_nullable(), f.data_type().clone()));
                    }
                }
                let n = rows.len();
                let (precision, scale): (Vec<Option<i32>>, Vec<Option<i32>>) = rows
                    .iter()
                    .map(|r| match r.5 {
                        DataType::Decimal128(p, s) => (Some(p as i32), Some(s as i32)),
                        DataType::Int16 => (Some(16), Some(0)),
                        DataType::Int32 => (Some(32), Some(0)),
                        DataType::Int64 => (Some(64), Some(0)),
                        DataType::Float32 => (Some(24), None),
                        DataType::Float64 => (Some(53), None),
                        _ => (None, None),
                    })
                    .unzip();
                RecordBatch::try_new(
                    schema,
                    vec![
                        Self::strings(vec![self.catalog.clone(); n]),
                        Self::strings(rows.iter().map(|r| r.0.clone()).collect()),
                        Self::strings(rows.iter().map(|r| r.1.clone()).collect()),
                        Self::strings(rows.iter().map(|r| r.2.clone()).collect()),
                        Arc::new(Int32Array::from(rows.iter().map(|r| r.3).collect::<Vec<_>>())),
                        Arc::new(StringArray::new_null(n)),
                        Self::strings(rows.iter().map(|r| if r.4 { "YES" } else { "NO" }.to_string()).collect()),
                        Self::strings(rows.iter().map(|r| data_type_name(&r.5)).collect()),
                        Arc::new(Int32Array::new_null(n)),
                        Arc::new(Int32Array::from(precision)),
                        Arc::new(Int32Array::from(scale)),
                        Self::strings(rows.iter().map(|r| super::pg_type(&r.5).name().to_string()).collect()),
                    ],
                )?
            }
            "schemata" => {
                let schema = Arc::new(Schema::new(vec![text("catalog_name"), text("schema_name"), text("schema_owner")]));
                let n = SCHEMAS.len();
                RecordBatch::try_new(
                    schema,
                    vec![
                        Self::strings(vec![self.catalog.clone(); n]),
                        Self::strings(SCHEMAS.iter().map(|s| s.to_string()).collect()),
                        Self::strings(vec!["hindsight".into(); n]),
                    ],
                )?
            }
            "views" => {
                let schema = Arc::new(Schema::new(vec![
                    text("table_catalog"),
                    text("table_schema"),
                    text("table_name"),
                    text("view_definition"),
                ]));
                RecordBatch::new_empty(schema)
            }
            _ => return Ok(None),
        };
        Ok(Some(batch))
    }
}

/// `information_schema.columns.data_type`: the SQL-standard spelling Postgres uses.
fn data_type_name(dt: &DataType) -> String {
    match dt {
        DataType::Decimal128(p, _) if *p <= 28 => "numeric".into(),
        DataType::List(_) | DataType::LargeList(_) => "ARRAY".into(),
        DataType::Dictionary(_, v) => data_type_name(v),
        other => super::pg_type_name(other),
    }
}

#[async_trait]
impl SchemaProvider for InformationSchema {
    fn table_names(&self) -> Vec<String> {
        TABLES.iter().map(|t| t.to_string()).collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let Some(batch) = self.build(name).await.map_err(to_datafusion)? else { return Ok(None) };
        let schema: SchemaRef = batch.schema();
        Ok(Some(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?)))
    }

    fn table_exist(&self, name: &str) -> bool {
        TABLES.contains(&name)
    }
}
