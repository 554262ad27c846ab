//! Integration tests: the real agent, real BPF programs, real workloads,
//! read back with the real DuckDB CLI and zstdcat/awk.

mod cli;
mod faults;
mod groundtruth;
mod lifecycle;
mod load;
mod readme;
mod report;
mod sql;
mod stacks;
mod storage;
mod support;
