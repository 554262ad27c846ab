//! The single source of truth for every output column.
//!
//! Each table is a list of [`Column`]s: name, type, description and the
//! function that extracts the value from a row. The CSV header, the CSV
//! fields, the docs (`taskscope schema`, the README's schema section) are
//! all produced from these lists, and tests check that they agree.
//!
//! Each list is declared with [`columns!`], which also writes it out as
//! straight-line code ([`Table::for_each_value`]): the writers encode a
//! row with every column's value function called directly, so inlined,
//! where a loop over the list calls each through a pointer (on a 55-column
//! sample row those calls were most of the CSV encoder's time).

/// `columns!(Table, LIST = [Column { .. }, ..])`: the static column list
/// `LIST` of `Table`, and `Table::each_value`, the same value functions in
/// the same order as straight-line code, for [`Table::for_each_value`].
macro_rules! columns {
    ($table:ident, $list:ident = [$(Column {
        name: $name:expr,
        ty: $ty:expr,
        description: $description:expr,
        value: $value:expr $(,)?
    }),* $(,)?]) => {
        static $list: &[Column<$table>] = &[$(Column {
            name: $name,
            ty: $ty,
            description: $description,
            value: $value,
        }),*];

        impl $table {
            /// Every value of `row`, in column order: `$list`'s value
            /// functions, called directly.
            #[inline(always)]
            fn each_value<'r, 'a>(
                row: &'r <$table as Table>::Row<'a>,
                mut out: impl FnMut(Value<'r>),
            ) {
                $({
                    let value: for<'x, 'y> fn(&'x <$table as Table>::Row<'y>) -> Value<'x> =
                        $value;
                    out(value(row));
                })*
            }
        }
    };
}

mod samples;
mod stacks;
mod ticks;
mod tracked;

use std::fmt::Write;

pub use samples::{ContainerIdentity, FileTarget, SampleRow, Samples, SocketRow, WaitColumns};
pub use stacks::{FrameKind, StackKind, StackRow, Stacks};
pub use ticks::{TickRow, Ticks};
pub use tracked::{Iorq, IorqRow, SyscallRow, Syscalls};

/// Logical type of a column (the SQL type DuckDB reads it as).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// UTC timestamp with microseconds.
    Timestamp,
    /// 64-bit signed integer.
    Int64,
    /// UTF-8 text.
    Text,
    /// true or false.
    Bool,
}

impl ColumnType {
    /// The DuckDB SQL type name.
    pub fn sql(self) -> &'static str {
        match self {
            ColumnType::Timestamp => "TIMESTAMP",
            ColumnType::Int64 => "BIGINT",
            ColumnType::Text => "VARCHAR",
            ColumnType::Bool => "BOOLEAN",
        }
    }

    /// The Arrow type written to Parquet. Text is dictionary-encoded: names,
    /// states and paths repeat on almost every row.
    pub fn arrow(self) -> arrow_schema::DataType {
        use arrow_schema::{DataType, TimeUnit};
        match self {
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            ColumnType::Int64 => DataType::Int64,
            ColumnType::Text => {
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
            }
            ColumnType::Bool => DataType::Boolean,
        }
    }

    /// Parse one CSV field written for this type (empty is NULL).
    pub fn parse(self, field: &str) -> Result<Value<'_>, String> {
        if field.is_empty() {
            return Ok(Value::Null);
        }
        match self {
            ColumnType::Text => Ok(Value::Text(field)),
            ColumnType::Bool => match field {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                _ => Err(format!("'{field}' is not true or false")),
            },
            ColumnType::Int64 => field
                .parse()
                .map(Value::Int)
                .map_err(|_| format!("'{field}' is not an integer")),
            ColumnType::Timestamp => crate::store::timefmt::parse_timestamp_micros(field)
                .map(Value::Timestamp)
                .ok_or_else(|| format!("'{field}' is not a timestamp")),
        }
    }
}

/// One value of one row; `Null` is written as an empty CSV field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'r> {
    Null,
    Int(i64),
    Text(&'r str),
    /// Microseconds since the Unix epoch, UTC.
    Timestamp(i64),
    Bool(bool),
}

/// A table of output files.
pub trait Table: 'static {
    /// What one row is made from.
    type Row<'a>;
    /// Directory name under the output directory.
    const NAME: &'static str;
    /// One sentence for the docs.
    const DESCRIPTION: &'static str;
    fn columns() -> &'static [Column<Self>];
    /// Every value of `row` in column order: what each column's `value`
    /// gives, without a call through a pointer per column.
    fn for_each_value<'r, 'a>(row: &'r Self::Row<'a>, out: impl FnMut(Value<'r>));
}

/// One column of table `T`.
pub struct Column<T: Table + ?Sized> {
    pub name: &'static str,
    pub ty: ColumnType,
    pub description: &'static str,
    pub value: for<'r, 'a> fn(&'r T::Row<'a>) -> Value<'r>,
}

/// An optional count: NULL when unknown.
pub(super) fn opt_int(v: Option<u64>) -> Value<'static> {
    v.map_or(Value::Null, |v| Value::Int(v as i64))
}

/// Text that is NULL when empty.
pub(super) fn opt_text(s: &str) -> Value<'_> {
    if s.is_empty() {
        Value::Null
    } else {
        Value::Text(s)
    }
}

pub(super) fn int(v: impl Into<i64>) -> Value<'static> {
    Value::Int(v.into())
}

/// Column names of table `T`, in file order.
pub fn column_names<T: Table>() -> Vec<&'static str> {
    T::columns().iter().map(|c| c.name).collect()
}

/// Text or Markdown description of table `T`.
pub fn describe<T: Table>(markdown: bool) -> String {
    let mut out = String::new();
    if markdown {
        let _ = writeln!(out, "### `{}`\n\n{}\n", T::NAME, T::DESCRIPTION);
        let _ = writeln!(out, "| column | type | description |\n| --- | --- | --- |");
        for c in T::columns() {
            let _ = writeln!(out, "| `{}` | {} | {} |", c.name, c.ty.sql(), c.description);
        }
    } else {
        let _ = writeln!(out, "{}: {}", T::NAME, T::DESCRIPTION);
        for c in T::columns() {
            let _ = writeln!(out, "  {:<16} {:<10} {}", c.name, c.ty.sql(), c.description);
        }
    }
    out
}

/// Every table's description, as `taskscope schema` prints it.
pub fn describe_all(markdown: bool) -> String {
    let mut out = describe::<Samples>(markdown);
    out.push('\n');
    out.push_str(&describe::<Stacks>(markdown));
    out.push('\n');
    out.push_str(&describe::<Ticks>(markdown));
    out.push('\n');
    out.push_str(&describe::<Syscalls>(markdown));
    out.push('\n');
    out.push_str(&describe::<Iorq>(markdown));
    out
}

/// The Arrow schema of table `T`.
pub fn arrow_schema<T: Table>() -> arrow_schema::Schema {
    arrow_schema::Schema::new(
        T::columns()
            .iter()
            .map(|c| arrow_schema::Field::new(c.name, c.ty.arrow(), true))
            .collect::<Vec<_>>(),
    )
}

/// Test helper: `T::for_each_value` gives, for `row`, exactly what the
/// column list's value functions give, one value per column.
#[cfg(test)]
pub(crate) fn assert_values_agree<T: Table>(row: &T::Row<'_>) {
    let listed: Vec<Value<'_>> = T::columns().iter().map(|c| (c.value)(row)).collect();
    let mut direct = Vec::new();
    T::for_each_value(row, |v| direct.push(v));
    assert_eq!(direct, listed, "{}: straight-line values differ", T::NAME);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_back_from_csv() {
        assert_eq!(ColumnType::Int64.parse("-100"), Ok(Value::Int(-100)));
        assert_eq!(ColumnType::Int64.parse(""), Ok(Value::Null));
        assert_eq!(ColumnType::Text.parse("a,b"), Ok(Value::Text("a,b")));
        assert_eq!(
            ColumnType::Timestamp.parse("2026-11-22 13:04:05.000123"),
            Ok(Value::Timestamp(1_795_352_645_000_123))
        );
        assert!(ColumnType::Int64.parse("x").is_err());
        assert!(ColumnType::Timestamp.parse("yesterday").is_err());
    }
}
