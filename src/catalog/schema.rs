//! DataFusion catalog and schema providers over the warehouse.
//!
//! `table()` opens the latest committed version on every call. DataFusion resolves each table
//! reference of a statement once, before planning, so a statement reads one version per table.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result as DfResult};

use super::information_schema::{self, InformationSchema};
use super::{HindsightTable, SCHEMAS, TableName, Warehouse};
use crate::error::to_datafusion;

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
    /// Schemas registered by others (pg_catalog) live beside ours.
    extra: RwLock<HashMap<String, Arc<dyn SchemaProvider>>>,
}

impl WarehouseCatalog {
    pub fn new(warehouse: Arc<Warehouse>) -> Self {
        Self { warehouse, extra: RwLock::new(HashMap::new()) }
    }
}

impl CatalogProvider for WarehouseCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names: Vec<String> = SCHEMAS.iter().map(|s| s.to_string()).collect();
        names.push(information_schema::NAME.to_string());
        names.extend(self.extra.read().unwrap_or_else(|p| p.into_inner()).keys().cloned());
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if SCHEMAS.contains(&name) {
            return Some(Arc::new(WarehouseSchema {
                warehouse: self.warehouse.clone(),
                schema: name.to_string(),
            }));
        }
        if name == information_schema::NAME {
            return Some(Arc::new(InformationSchema::new(self.warehouse.clone(), crate::config::DATABASE)));
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
}

#[async_trait]
impl SchemaProvider for WarehouseSchema {
    fn table_names(&self) -> Vec<String> {
        self.warehouse.cached_table_names(&self.schema)
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let name = TableName::new(&self.schema, name);
        let Some(table) = self.warehouse.load(&name).await.map_err(to_datafusion)? else {
            return Ok(None);
        };
        let provider = HindsightTable::try_new(name, table).await.map_err(to_datafusion)?;
        Ok(Some(Arc::new(provider)))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.warehouse.cached_table_names(&self.schema).iter().any(|n| n == name)
    }
}
