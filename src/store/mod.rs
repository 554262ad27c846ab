//! What is on disk: the tables and their columns, where their files are
//! and how they are named, the file formats, and finding the files again.
//!
//! The agent's writer (`output`) writes this format and every reader
//! (`report`, `export`) reads it; both depend on this module and neither
//! on the other. The decision a reader must know: this module knows
//! nothing of how data was collected. A table's row is a plain struct of
//! the values its columns read ([`schema`]), filled by the writer; names
//! of numbers (syscalls, I/O operations, devices, thread states, wait classes) are here
//! because they are what the files say.

pub mod catalog;
pub mod csv;
pub mod layout;
pub mod names;
pub mod parquet;
pub mod schema;
pub mod shipped;
pub mod thread_state;
pub mod timefmt;
pub mod user_time;
pub mod wait_class;
