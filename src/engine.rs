//! The engine: what one process holds once, whoever talks to it.
//!
//! Owns: the warehouse, the online feature indexes, and a template DataFusion `SessionState`
//! with every extension that does not depend on a connection registered once (functions,
//! aggregates, table functions, the query planner and analyzer rules). The server, the
//! scheduler, the demo writer and `hindsight sql` share one `Engine`; each connection's
//! `Session` is cut from the template and adds only what is its own (settings, identity,
//! `as_of`, its memory limit).
//! Must not: hold anything per connection, speak a protocol, or know sessions: background work
//! plans through the `BackgroundPlanner` it is given.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use datafusion::catalog::MemoryCatalogProviderList;
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::{AggregateUDF, ScalarUDF, WindowUDF};
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::catalog::{DATABASE as CATALOG, DEFAULT_SCHEMA, Warehouse};
use crate::error::Result;
use crate::features::online::{OnlineFunction, OnlineStore};
use crate::sql::Planner;

/// Makes the planner that work no client asked for runs in (the online index's builds and
/// refreshes): in practice `Session::background`, an admin session without limits. Passed in,
/// so that the engine, which sessions are cut from, does not depend on them.
pub type BackgroundPlanner = fn(&Arc<Engine>) -> Result<Arc<dyn Planner>>;

pub struct Engine {
    warehouse: Arc<Warehouse>,
    online: Arc<OnlineStore>,
    template: SessionState,
    /// The template's functions in an order that registers back into the same maps (see
    /// `registration_order`), worked out once rather than for every session.
    functions: Functions,
    sessions: AtomicU64,
}

struct Functions {
    scalar: Vec<Arc<ScalarUDF>>,
    aggregate: Vec<Arc<AggregateUDF>>,
    window: Vec<Arc<WindowUDF>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("warehouse", &self.warehouse.root().as_str()).finish()
    }
}

impl Engine {
    pub fn new(warehouse: Arc<Warehouse>, background: BackgroundPlanner) -> Result<Arc<Self>> {
        let online = Arc::new(OnlineStore::default());
        let template = template_state(&online)?;
        let functions = Functions {
            scalar: registration_order(template.scalar_functions(), |f| (f.name(), f.aliases())),
            aggregate: registration_order(template.aggregate_functions(), |f| (f.name(), f.aliases())),
            window: registration_order(template.window_functions(), |f| (f.name(), f.aliases())),
        };
        let engine = Arc::new(Engine { warehouse, online: online.clone(), template, functions, sessions: AtomicU64::new(0) });
        // The store builds its indexes in planners of this engine: it holds it weakly.
        let weak = Arc::downgrade(&engine);
        online.attach(Box::new(move || {
            let engine = weak.upgrade().ok_or_else(|| crate::error::Error::Internal("the engine has shut down".into()))?;
            background(&engine)
        }));
        Ok(engine)
    }

    pub fn warehouse(&self) -> &Arc<Warehouse> {
        &self.warehouse
    }

    /// The latest feature values of every feature view, kept in memory.
    pub fn online(&self) -> &Arc<OnlineStore> {
        &self.online
    }

    /// A copy of the template for one session: its own catalogs (the template has none) and
    /// its own runtime (memory pool), everything else shared.
    pub(crate) fn session_state(&self, runtime: Arc<datafusion::execution::runtime_env::RuntimeEnv>) -> SessionState {
        let id = self.sessions.fetch_add(1, Ordering::Relaxed);
        let mut builder = SessionStateBuilder::new_from_existing(self.template.clone())
            .with_session_id(format!("hindsight-{}-{id}", std::process::id()))
            .with_catalog_list(Arc::new(MemoryCatalogProviderList::new()))
            .with_runtime_env(runtime);
        *builder.scalar_functions() = Some(self.functions.scalar.clone());
        *builder.aggregate_functions() = Some(self.functions.aggregate.clone());
        *builder.window_functions() = Some(self.functions.window.clone());
        builder.build()
    }
}

/// The configuration every session starts from.
fn config() -> SessionConfig {
    let mut config = SessionConfig::new()
        .with_default_catalog_and_schema(CATALOG, DEFAULT_SCHEMA)
        .with_create_default_catalog_and_schema(false)
        .with_information_schema(false);
    // Delta stores plain UTF-8; reading it as Utf8View costs a conversion on every write back.
    config.options_mut().sql_parser.map_string_types_to_utf8view = false;
    config.options_mut().sql_parser.dialect = datafusion::config::Dialect::PostgreSQL;
    config.options_mut().execution.time_zone = Some(crate::sql::semantics::SESSION_ZONE.into());
    // Round-robin batches scramble a scan's row order, which ASOF JOIN and
    // historical_features promise to keep for their left side (the spine). Large files still
    // scan in parallel, split into byte ranges read in order.
    config.options_mut().optimizer.enable_round_robin_repartition = false;
    // PostgreSQL honours ORDER BY in a subquery; a spine query's order is the output's.
    config.options_mut().sql_parser.enable_subquery_sort_elimination = false;
    config
}

/// Every extension that is the same for all sessions, registered in the order in which later
/// ones wrap earlier ones (`exact` and `limits` wrap DataFusion's functions of the same name).
fn template_state(online: &Arc<OnlineStore>) -> Result<SessionState> {
    let ctx = SessionContext::new_with_config(config());
    crate::sql::pg_catalog::install_functions(&ctx, CATALOG)?;
    {
        let state = ctx.state_ref();
        let mut state = state.write();
        datafusion_pg_functions::register_all(&mut *state);
        // PostgreSQL's types for literals and date arithmetic, before DataFusion's type coercion.
        let mut analyzer_rules = state.analyzer().rules.clone();
        let coercion = analyzer_rules.iter().position(|r| r.name() == "type_coercion").unwrap_or(0);
        analyzer_rules.insert(coercion, Arc::new(crate::sql::semantics::types::PostgresTypes));
        // delta-rs operations plan their own extension nodes (metrics, validation) in our
        // session, so its planner must be ours too.
        *state = SessionStateBuilder::new_from_existing(state.clone())
            .with_query_planner(Arc::new(crate::features::asof::HindsightPlanner))
            .with_analyzer_rules(analyzer_rules)
            .with_physical_optimizer_rule(Arc::new(crate::limits::yielding::YieldAfterAmplifiers))
            .build();
        state.add_analyzer_rule(Arc::new(crate::features::asof::AsofJoinRule));
        state.add_analyzer_rule(Arc::new(crate::sql::semantics::arithmetic::PostgresArithmetic));
    }
    ctx.register_udf(crate::sql::settings::version_udf());
    for udf in crate::features::asof::marker_udfs() {
        ctx.register_udf(udf);
    }
    let udafs = crate::evaluation::metrics::udafs().into_iter().chain(crate::evaluation::classes::udafs()).chain(crate::evaluation::drift::udafs());
    for udaf in udafs {
        ctx.register_udaf(udaf);
    }
    crate::sql::semantics::functions::install(&ctx);
    #[cfg(debug_assertions)]
    ctx.register_udf(debug_panic_udf());
    ctx.register_udtf(crate::features::online::FUNCTION, Arc::new(OnlineFunction::new(online.clone())));
    Ok(ctx.state())
}

/// An order in which registering `map`'s functions rebuilds `map` exactly.
///
/// A session state is rebuilt from a list of functions, each registered under its name and
/// aliases, later ones winning. `SessionStateBuilder::new_from_existing` lists a state's map in
/// hash order; where we registered a function over DataFusion's of the same name (say
/// `percentile_cont`) and DataFusion's is still listed under one of its aliases, the two would
/// then win at random. Here a function comes after every other that claims a name it owns.
fn registration_order<F: ?Sized>(map: &HashMap<String, Arc<F>>, names: impl Fn(&F) -> (&str, &[String])) -> Vec<Arc<F>> {
    let key = |f: &Arc<F>| Arc::as_ptr(f) as *const () as usize;
    let mut functions: Vec<Arc<F>> = Vec::new();
    let mut seen = HashSet::new();
    for f in map.values() {
        if seen.insert(key(f)) {
            functions.push(f.clone());
        }
    }
    // Deterministic among equals: by name.
    functions.sort_by(|a, b| names(a).0.cmp(names(b).0));
    let index: HashMap<usize, usize> = functions.iter().enumerate().map(|(i, f)| (key(f), i)).collect();
    // before[i]: the functions that must be registered before function i.
    let mut before = vec![HashSet::new(); functions.len()];
    for (i, f) in functions.iter().enumerate() {
        let (name, aliases) = names(f);
        for claimed in std::iter::once(name).chain(aliases.iter().map(String::as_str)) {
            if let Some(owner) = map.get(claimed).and_then(|o| index.get(&key(o))) {
                if *owner != i {
                    before[*owner].insert(i);
                }
            }
        }
    }
    let mut order = Vec::with_capacity(functions.len());
    let mut placed = vec![false; functions.len()];
    while order.len() < functions.len() {
        let ready = (0..functions.len()).find(|&i| !placed[i] && before[i].iter().all(|&j| placed[j]));
        // A cycle cannot come from registering one function after another; if one did, the
        // rest keep their sorted order.
        let i = ready.unwrap_or_else(|| (0..functions.len()).find(|&i| !placed[i]).unwrap_or(0));
        placed[i] = true;
        order.push(functions[i].clone());
    }
    order
}

/// `hindsight_debug_panic(condition)`, in debug builds only: panics on a row where the condition
/// holds, so that tests can prove a bug in an operator costs the statement, not the connection.
/// It stands in for the bugs we do not know of; release builds do not have it.
#[cfg(debug_assertions)]
fn debug_panic_udf() -> datafusion::logical_expr::ScalarUDF {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::DataType;
    use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
    use datafusion::scalar::ScalarValue;
    create_udf(
        "hindsight_debug_panic",
        vec![DataType::Boolean],
        DataType::Boolean,
        Volatility::Volatile,
        Arc::new(|args: &[ColumnarValue]| {
            let hit = match &args[0] {
                ColumnarValue::Scalar(ScalarValue::Boolean(Some(b))) => *b,
                ColumnarValue::Scalar(_) => false,
                ColumnarValue::Array(a) => a.as_boolean().true_count() > 0,
            };
            if hit {
                panic!("hindsight_debug_panic was asked to panic");
            }
            Ok(ColumnarValue::Scalar(ScalarValue::Boolean(Some(false))))
        }),
    )
}

#[cfg(test)]
impl Engine {
    pub(crate) fn template(&self) -> &SessionState {
        &self.template
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_aggregate_we_register_is_in_pg_proc() {
        let listed: Vec<&str> = crate::sql::pg_catalog::FUNCTIONS.iter().map(|f| f.0).collect();
        let udafs = crate::evaluation::metrics::udafs()
            .into_iter()
            .chain(crate::evaluation::classes::udafs())
            .chain(crate::evaluation::drift::udafs());
        for udaf in udafs {
            assert!(listed.contains(&udaf.name()), "{} is missing from pg_proc", udaf.name());
        }
        assert!(listed.contains(&crate::features::online::FUNCTION));
        assert!(listed.contains(&crate::catalog::history::FUNCTION));
    }
}
