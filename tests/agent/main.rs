//! Integration tests: the real agent, real BPF programs, real workloads,
//! read back with the real DuckDB CLI and zstdcat/awk.

mod blockers;
mod cli;
mod containers;
mod export;
mod faults;
mod fleet;
mod groundtruth;
mod instant;
mod jit;
mod lifecycle;
mod load;
mod packaging;
mod passive;
mod peers;
mod python;
mod query;
mod readers;
mod readme;
mod relay;
mod report;
mod serve;
mod service;
mod ship;
mod ship_kill;
mod ship_profile;
mod sql;
mod sql_live;
mod stacks;
mod storage;
mod support;
mod titles;
mod top;
mod tracking;
mod waits;
mod where_sql;
