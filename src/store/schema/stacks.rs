//! The `stacks` table: the symbolized stacks a period's samples refer to.

use super::{Column, ColumnType, Table, Value};

/// The `stacks` table.
pub struct Stacks;

/// Kernel or user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StackKind {
    Kernel,
    User,
}

impl StackKind {
    /// The `kind` value written to files.
    pub fn name(self) -> &'static str {
        match self {
            StackKind::Kernel => "kernel",
            StackKind::User => "user",
        }
    }
}

/// What produced one frame of a stack (the `frame_kinds` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// Machine code in a file: a binary or shared library (or an address
    /// that nothing names).
    Native,
    /// The kernel (every frame of a kernel stack).
    Kernel,
    /// Code generated at run time (a JIT, an interpreter's trampolines),
    /// named from the process's perf map (`/tmp/perf-<pid>.map`).
    Jit,
    /// A CPython function, read from the interpreter's frames in place of
    /// the eval loop's native frame (`output::stacks::splice`).
    Python,
}

impl FrameKind {
    /// The name written to files, one per frame in `frame_kinds`.
    pub fn name(self) -> &'static str {
        match self {
            FrameKind::Native => "native",
            FrameKind::Kernel => "kernel",
            FrameKind::Jit => "jit",
            FrameKind::Python => "python",
        }
    }

    /// Every kind, in the order the docs list them.
    pub const ALL: [FrameKind; 4] = [
        FrameKind::Native,
        FrameKind::Kernel,
        FrameKind::Jit,
        FrameKind::Python,
    ];

    /// The kind named `name`.
    pub fn from_name(name: &str) -> Option<FrameKind> {
        FrameKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// One row of `stacks`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackRow {
    pub id: i64,
    pub kind: StackKind,
    /// Frames innermost first, joined with `;`.
    pub frames: String,
    /// The kind of each frame of `frames`, in the same order, joined with
    /// `;`.
    pub frame_kinds: String,
    /// Module of the innermost frame.
    pub module: String,
    pub depth: u32,
    /// The stack is known to be cut short (depth limit, or the user stack
    /// does not end at a thread's entry point).
    pub truncated: bool,
}

impl Table for Stacks {
    type Row<'a> = StackRow;
    const NAME: &'static str = "stacks";
    const DESCRIPTION: &'static str =
        "One row per stack referenced by the same period's samples (kstack_id, ustack_id); each period's file stands on its own.";
    fn columns() -> &'static [Column<Self>] {
        STACK_COLUMNS
    }
    fn for_each_value<'r, 'a>(row: &'r Self::Row<'a>, out: impl FnMut(Value<'r>)) {
        Self::each_value(row, out)
    }
}

columns!(
    Stacks,
    STACK_COLUMNS = [
        Column {
            name: "stack_id",
            ty: ColumnType::Int64,
            description: "Hash of the kind and the symbolized frames: the same path has the same id in every process and run",
            value: |r| Value::Int(r.id),
        },
        Column { name: "kind", ty: ColumnType::Text, description: "kernel or user", value: |r| Value::Text(r.kind.name()) },
        Column {
            name: "frames",
            ty: ColumnType::Text,
            description: "Frames innermost first, joined with ';': function+0xoffset, then [file:line] where debug info allows; inlined calls marked [inlined]; unsymbolized frames as module+0xoffset or 0xaddress; CPython functions as qualname [file:line], the line executing (for a caller, the line of its call in progress; the function's first line when it cannot be told)",
            value: |r| Value::Text(&r.frames),
        },
        Column {
            name: "module",
            ty: ColumnType::Text,
            description: "Module of the innermost frame: vmlinux, a kernel module, or a binary or library name",
            value: |r| Value::Text(&r.module),
        },
        Column { name: "depth", ty: ColumnType::Int64, description: "Number of frames", value: |r| Value::Int(r.depth.into()) },
        Column {
            name: "truncated",
            ty: ColumnType::Bool,
            description: "The stack is known to be incomplete: the depth limit was reached, or a user stack does not end in a thread entry point",
            value: |r| Value::Bool(r.truncated),
        },
        Column {
            name: "frame_kinds",
            ty: ColumnType::Text,
            description: "The kind of each frame, in the order of frames, joined with ';': native (a binary or library), kernel, jit (named from the process's perf map), or python (a CPython function, qualname [file:line] with the line executing, in place of the interpreter loop's frame)",
            value: |r| Value::Text(&r.frame_kinds),
        },
    ]
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn straight_line_values_are_the_column_list() {
        crate::store::schema::assert_values_agree::<Stacks>(&StackRow {
            id: 42,
            kind: StackKind::User,
            frames: "main;start".into(),
            frame_kinds: "native;native".into(),
            module: "/usr/bin/x".into(),
            depth: 2,
            truncated: true,
        });
    }
}
