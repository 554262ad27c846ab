//! taskscope: an always-on thread-state sampling agent for Linux.
//!
//! CO-RE eBPF hooks keep one entry per thread up to date in an mmap-able
//! array map (`bpf`); the agent's sampler thread scans that table at a
//! fixed rate without a syscall per thread (`agent`); a writer thread
//! enriches the rows and writes rotating, compressed files (`output`) in
//! the format of `store`, whose columns all come from one table per table.
//! The readers (`report`, `export`) read those files through `store`
//! alone, and `query` answers SQL over them (DataFusion); `cli` parses the command line and runs the command; `files`,
//! `error` and `logging` are the base. The modules form layers that only
//! point down (`layers`, a test, keeps them so).
//!
//! The one decision a reader must know: the kernel side never emits
//! per-event output. Hooks only overwrite the thread's entry, so the cost of
//! sampling depends on the number of threads and the frequency, never on how
//! busy the machine is.

pub mod agent;
pub mod bpf;
pub mod cli;
pub mod error;
pub mod export;
pub mod files;
#[cfg(test)]
mod layers;
pub mod logging;
pub mod output;
pub mod query;
pub mod report;
pub mod serve;
pub mod ship;
pub mod store;
pub mod top;
