//! What bounds one statement, so that no query can take the server down with it.
//!
//! Owns: the threads statements run on and how deep they may recurse (`depth`), the memory pool
//! every session allocates from (`memory`), the functions whose output can outgrow their input
//! (`functions`), which engine settings a session may change and to what (`settings`), and that a
//! computing statement yields often enough to be stopped (`yielding`).
//! Must not: plan or run statements itself; `session` and `sql` call in here at their edges.
//!
//! The principle, as in PostgreSQL: a statement over a bound fails with its own error (54001
//! statement too complex, 53200 out of memory, 54000 a value too large) and every other
//! session carries on.

pub mod depth;
pub mod functions;
pub mod memory;
pub mod settings;
pub mod yielding;

/// Stack of every thread that plans or runs a statement. Parsing, planning, DataFusion's
/// expression formatting and delta-rs's predicate conversion all recurse once per level of an
/// expression, unguarded; tokio's default of 2 MiB overflowed (and aborted the process) at a
/// few hundred levels in a debug build and about 2,000 in a release build. The memory is
/// reserved, not used: a thread touches only the pages it recurses into.
pub const THREAD_STACK_BYTES: usize = 64 << 20;

/// The multi-threaded runtime `hindsight` runs on, with stacks of [`THREAD_STACK_BYTES`] for
/// its workers and its blocking pool (where DataFusion and object_store do some of their work).
///
/// Twice as many workers as cores (at least 4; `TOKIO_WORKER_THREADS` overrides): an operator
/// may compute for a second without yielding (a sort spilling, a merge of large batches), and
/// with one worker per core every other connection's next step then waits for it. With more
/// workers than cores the kernel time-slices them, so a `SELECT 1` on another connection is
/// answered in milliseconds while a bomb runs, as PostgreSQL's backends are.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        builder.worker_threads((cores * 2).max(4));
    }
    builder.enable_all().thread_stack_size(THREAD_STACK_BYTES).build()
}
