//! DataFusion catalog and schema providers over the warehouse.
//!
//! `table()` opens the latest committed version on every call, unless the name asks for another
//! (`t@v12`, `t@20250601000000000`) or the session reads the past (`SET hindsight.as_of`).
//! DataFusion resolves each table reference of a statement once, before planning, so a statement
//! reads one version per table reference.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result as DfResult};

use super::information_schema::{self, InformationSchema};
use super::versions::TableAt;
use super::{Block, HindsightTable, SCHEMAS, TableName, Warehouse};
use crate::error::{Error, to_datafusion};

/// The instant a session reads the whole warehouse at (`SET hindsight.as_of`); `None` reads the
/// latest versions. Shared between a session and its catalog.
#[derive(Debug, Default)]
pub struct AsOf(RwLock<Option<DateTime<Utc>>>);

impl AsOf {
    pub fn get(&self) -> Option<DateTime<Utc>> {
        *self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set(&self, t: Option<DateTime<Utc>>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = t;
    }
}

/// Table names per schema, for DataFusion's synchronous `table_names()`.
#[derive(Debug, Default)]
pub(super) struct NameCache(RwLock<HashMap<String, Vec<String>>>);

impl NameCache {
    pub(super) fn get(&self, schema: &str) -> Vec<String> {
        let map = self.0.read().unwrap_or_else(|p| p.into_inner());
        map.get(schema).cloned().unwrap_or_default()
    }

    pub(super) fn set(&self, schema: &str, names: Vec<String>) {
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        map.insert(schema.to_string(), names);
    }

    pub(super) fn add(&self, schema: &str, table: &str) {
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        let names = map.entry(schema.to_string()).or_default();
        if !names.iter().any(|n| n == table) {
            names.push(table.to_string());
            names.sort();
        }
    }

    pub(super) fn remove(&self, schema: &str, table: &str) {
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        if let Some(names) = map.get_mut(schema) {
            names.retain(|n| n != table);
        }
    }
}

/// The `hindsight` catalog: one schema provider per warehouse schema.
#[derive(Debug)]
pub struct WarehouseCatalog {
    warehouse: Arc<Warehouse>,
    as_of: Arc<AsOf>,
    block: Arc<Block>,
    /// Schemas registered by others (pg_catalog) live beside ours.
    extra: RwLock<HashMap<String, Arc<dyn SchemaProvider>>>,
}

impl WarehouseCatalog {
    pub fn new(warehouse: Arc<Warehouse>, as_of: Arc<AsOf>, block: Arc<Block>) -> Self {
        Self { warehouse, as_of, block, extra: RwLock::new(HashMap::new()) }
    }
}

impl CatalogProvider for WarehouseCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names: Vec<String> = SCHEMAS.iter().map(|s| s.to_string()).collect();
        names.push(information_schema::NAME.to_string());
        names.extend(self.extra.read().unwrap_or_else(|p| p.into_inner()).keys().cloned());
        names
    }

    fn deregister_schema(&self, name: &str, _cascade: bool) -> DfResult<Option<Arc<dyn SchemaProvider>>> {
        Ok(self.extra.write().unwrap_or_else(|p| p.into_inner()).remove(name))
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if SCHEMAS.contains(&name) {
            return Some(Arc::new(WarehouseSchema {
                warehouse: self.warehouse.clone(),
                schema: name.to_string(),
                as_of: self.as_of.clone(),
                block: self.block.clone(),
            }));
        }
        if name == information_schema::NAME {
            return Some(Arc::new(InformationSchema::new(self.warehouse.clone(), super::DATABASE)));
        }
        self.extra.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    fn register_schema(
        &self,
        name: &str,
        schema: Arc<dyn SchemaProvider>,
    ) -> DfResult<Option<Arc<dyn SchemaProvider>>> {
        if SCHEMAS.contains(&name) {
            return Err(DataFusionError::Plan(format!("schema {name} is part of the warehouse")));
        }
        Ok(self.extra.write().unwrap_or_else(|p| p.into_inner()).insert(name.to_string(), schema))
    }
}

/// One warehouse schema (`public`, `hindsight`, `datasets`, `eval`).
#[derive(Debug)]
pub struct WarehouseSchema {
    warehouse: Arc<Warehouse>,
    schema: String,
    as_of: Arc<AsOf>,
    /// The session's transaction block: the tables it wrote are read as it staged them.
    block: Arc<Block>,
}

#[async_trait]
impl SchemaProvider for WarehouseSchema {
    fn table_names(&self) -> Vec<String> {
        let names = self.warehouse.cached_table_names(&self.schema);
        if self.block.is_open() { self.block.table_names(&self.schema, names) } else { names }
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let (base, explicit) = TableAt::split(name);
        let at = match (explicit, self.as_of.get()) {
            (TableAt::Latest, Some(t)) => TableAt::Timestamp(t),
            (at, _) => at,
        };
        let name = TableName::new(&self.schema, base);
        if at == TableAt::Latest && self.block.is_open() {
            if self.block.has(&name) == Some(false) {
                return Ok(None);
            }
            if let Some(table) = self.block.table(&name).await.map_err(to_datafusion)? {
                let provider = HindsightTable::try_new(&self.warehouse, name, table).await.map_err(to_datafusion)?;
                return Ok(Some(Arc::new(provider.in_block(self.block.clone(), self.warehouse.clone()))));
            }
        }
        let table = match self.warehouse.load_at(&name, at).await {
            // Under the session's as_of, a table that did not exist yet is simply not there.
            Err(Error::NoSuchVersion(_)) if explicit == TableAt::Latest => return Ok(None),
            other => other.map_err(to_datafusion)?,
        };
        let Some(table) = table else { return Ok(None) };
        let provider = HindsightTable::try_new(&self.warehouse, name, table).await.map_err(to_datafusion)?.at(at);
        Ok(Some(Arc::new(provider.in_block(self.block.clone(), self.warehouse.clone()))))
    }

    fn table_exist(&self, name: &str) -> bool {
        let (base, _) = TableAt::split(name);
        self.table_names().iter().any(|n| n == base)
    }
}
