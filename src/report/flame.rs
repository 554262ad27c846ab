//! `taskscope flamegraph`: sampled stacks of a window as a flame graph.
//!
//! Each sample row becomes one folded stack, weighted by its `weight_us`:
//! the thread's state at the root, then its name (`comm`), then its user
//! frames (outermost first; JIT frames marked `_[j]`), then its kernel
//! frames (marked `_[k]`). So on-CPU and off-CPU time sit side by side and
//! add up to thread time. `--kind` keeps the frames of some kinds only
//! (the `stacks` table's `frame_kinds`; files written before it existed
//! count their user frames as native).
//! Like the report, it counts active threads unless `--all-states`, reads
//! the period being written, and leaves out (and names) a period whose
//! samples could not be read or whose stacks file is missing or damaged
//! while its samples refer to stacks. Frames are function names only
//! (offsets and source lines would split identical calls). The SVG is
//! drawn by `inferno`; each state's tower then gets its colour from the
//! one palette of `states` (inferno colours by frame name only, so the
//! state is applied afterwards through the frames' `fg:x` coordinates);
//! within a state's hue, a frame's kind sets the band: kernel frames pale,
//! JIT frames deep, native frames in between.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::aggregate::{errors, Query};
use super::flame_color::{color_by_state, kinds_by_name};
use super::predicate;
use super::read::{self, Cell, Projection};
use super::{states, Answer};
use crate::files::destination::Destination;
use crate::store::catalog::{Catalog, Prefer, TableReads, Window};
use crate::store::schema::{FrameKind, Samples, Stacks, Table};

/// The kinds of frames to draw (`--kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kinds {
    pub kernel: bool,
    pub native: bool,
    pub jit: bool,
    pub python: bool,
}

impl Kinds {
    /// Whether frames of `kind` are drawn.
    pub fn draws(self, kind: FrameKind) -> bool {
        match kind {
            FrameKind::Kernel => self.kernel,
            FrameKind::Native => self.native,
            FrameKind::Jit => self.jit,
            FrameKind::Python => self.python,
        }
    }

    /// Whether any user frame is drawn.
    fn user(self) -> bool {
        self.native || self.jit || self.python
    }
}

/// The folded-stack suffix that marks a frame of `kind` (the marks
/// flamegraph.pl and inferno use).
pub(super) fn suffix(kind: FrameKind) -> &'static str {
    match kind {
        FrameKind::Native => "",
        FrameKind::Kernel => "_[k]",
        FrameKind::Jit => "_[j]",
        FrameKind::Python => "_[p]",
    }
}

/// A stack's frames, outermost first: function name and kind (none when
/// the file has no `frame_kinds`).
type StackFrames = Vec<(String, Option<FrameKind>)>;

/// The frames of a `stacks` row, outermost first.
fn stack_frames(frames: &str, kinds: Option<&str>) -> StackFrames {
    let names = frames.split(';');
    let kinds: Vec<Option<FrameKind>> = match kinds {
        // A list that does not match the frames one to one says nothing.
        Some(kinds) if kinds.split(';').count() == names.clone().count() => {
            kinds.split(';').map(FrameKind::from_name).collect()
        }
        _ => vec![None; names.clone().count()],
    };
    names
        .map(function_name)
        .zip(kinds)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect()
}

/// Thread time per (state, comm, kernel stack, user stack).
type Weights = HashMap<(String, String, Option<i64>, Option<i64>), i64>;

/// Folded stacks (`frame;frame;frame weight`), heaviest first; problems
/// go to the catalog.
pub fn folded(
    catalog: &mut Catalog,
    query: &Query<'_>,
    kinds: Kinds,
) -> Result<Vec<(String, i64)>> {
    let window = query.window;
    let mut projection = Projection::of::<Samples>(&[], "flamegraph")?;
    for name in ["ts", "weight_us", "state"] {
        projection.need::<Samples>(name, "flamegraph")?;
    }
    for name in ["comm", "kstack_id", "ustack_id"] {
        projection.require::<Samples>(name, "flamegraph")?;
    }
    let expr = query
        .predicate
        .map(|text| predicate::parse::<Samples>(text, &mut projection))
        .transpose()?;
    let mut both = catalog.select_periods(&[Samples::NAME, Stacks::NAME], &window, Prefer::Parquet);
    let stack_files = both.pop().unwrap_or_default();
    let samples = both.pop().unwrap_or_default();
    // Per file: the weights, and whether any counted row refers to a stack.
    let sample_reads = read::scan_files(
        &samples,
        &projection,
        expr.as_ref(),
        |_| (Weights::new(), false),
        |(weights, refers), row| {
            if !row.cell(0).as_int().is_some_and(|t| window.contains(t)) {
                return;
            }
            if !row.passes() {
                return;
            }
            let state = match row.cell(2) {
                Cell::Text(s) => s,
                _ => "UNKNOWN",
            };
            if !query.all_states && !states::is_active(state) {
                return;
            }
            let comm = match row.cell(3) {
                Cell::Text(c) => c,
                _ => "[unknown]",
            };
            let (kstack, ustack) = (row.cell(4).as_int(), row.cell(5).as_int());
            *refers |= kstack.is_some() || ustack.is_some();
            let kstack = kstack.filter(|_| kinds.kernel);
            let ustack = ustack.filter(|_| kinds.user());
            *weights
                .entry((state.to_string(), comm.to_string(), kstack, ustack))
                .or_default() += row.cell(1).as_int().unwrap_or(0);
        },
    )?;
    let mut stack_projection =
        Projection::of::<Stacks>(&["stack_id".into(), "frames".into()], "flamegraph")?;
    // Absent from files written before frame kinds existed.
    stack_projection.require::<Stacks>("frame_kinds", "flamegraph")?;
    let stack_reads = read::scan_files(
        &stack_files,
        &stack_projection,
        None,
        |_| HashMap::<i64, StackFrames>::new(),
        |frames, row| {
            if let (Some(id), Cell::Text(text)) = (row.cell(0).as_int(), row.cell(1)) {
                let kinds = match row.cell(2) {
                    Cell::Text(kinds) => Some(kinds),
                    _ => None,
                };
                frames
                    .entry(id)
                    .or_insert_with(|| stack_frames(text, kinds));
            }
        },
    )?;
    // A period needs its stacks file only when its samples refer to stacks
    // (`--stacks none` writes none).
    let refers: BTreeSet<&str> = samples
        .iter()
        .zip(&sample_reads)
        .filter(|(_, r)| r.as_ref().is_ok_and(|(_, refers)| *refers))
        .map(|(f, _)| f.stem.as_str())
        .collect();
    let tables: [TableReads<'_>; 2] = [
        (Samples::NAME, errors(&samples, &sample_reads)),
        (Stacks::NAME, errors(&stack_files, &stack_reads)),
    ];
    let out = catalog.leave_out(&tables, |table, stem| {
        table != Stacks::NAME || refers.contains(stem)
    });
    let mut frames: HashMap<i64, StackFrames> = HashMap::new();
    for (file, part) in stack_files.iter().zip(stack_reads) {
        if let (Ok(part), false) = (part, out.contains(&file.stem)) {
            for (id, names) in part {
                frames.entry(id).or_insert(names);
            }
        }
    }
    let mut lines: HashMap<String, i64> = HashMap::new();
    for (file, part) in samples.iter().zip(sample_reads) {
        let (Ok((weights, _)), false) = (part, out.contains(&file.stem)) else {
            continue;
        };
        for ((state, comm, kstack, ustack), weight) in weights {
            let mut line = format!("{state};{}", function_name(&comm));
            let mut any = false;
            for (id, default) in [(ustack, FrameKind::Native), (kstack, FrameKind::Kernel)] {
                let Some(names) = id.and_then(|id| frames.get(&id)) else {
                    continue;
                };
                for (name, kind) in names {
                    // Every frame of a kernel stack is a kernel frame.
                    let kind = match default {
                        FrameKind::Kernel => FrameKind::Kernel,
                        _ => kind.unwrap_or(default),
                    };
                    if kinds.draws(kind) {
                        let _ = write!(line, ";{name}{}", suffix(kind));
                        any = true;
                    }
                }
            }
            if !any {
                line.push_str(";[no stack]");
            }
            *lines.entry(line).or_default() += weight;
        }
    }
    let mut lines: Vec<(String, i64)> = lines.into_iter().filter(|(_, w)| *w > 0).collect();
    lines.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(lines)
}

/// `func+0x1a [file.c:12]` → `func`; `libc.so.6+0x1234` → `libc.so.6`;
/// a bare address → `[unknown]`.
fn function_name(frame: &str) -> String {
    let name = frame.split(" [").next().unwrap_or(frame).trim();
    let name = match name.rfind("+0x") {
        Some(at) => &name[..at],
        None => name,
    };
    if name.is_empty() || name.starts_with("0x") {
        "[unknown]".to_string()
    } else {
        // ';' separates frames and ' ' ends the folded stack in the format.
        name.replace([';', ' '], "_")
    }
}

/// What `taskscope flamegraph` is asked (made from its flags by
/// `cli::read`).
#[derive(Debug, Clone)]
pub struct Request {
    /// The agent's output directory, or an imported archive.
    pub dir: PathBuf,
    /// A `--where` predicate.
    pub filter: Option<String>,
    /// The kinds of frames drawn.
    pub kinds: Kinds,
    /// Where to write (None or `-`: standard output).
    pub output: Option<PathBuf>,
    /// Replace an existing regular file at `output`.
    pub force: bool,
    /// Folded stacks instead of SVG.
    pub folded: bool,
    pub title: Option<String>,
    /// Draw sleeping and idle threads too.
    pub all_states: bool,
}

/// `taskscope flamegraph` over `window`.
pub fn run(args: &Request, window: Window) -> Result<Answer> {
    let kinds = args.kinds;
    if !kinds.kernel && !kinds.user() {
        bail!("--kind must name kernel, user, native or jit");
    }
    // Checked before the work, written after it (re-checked then).
    let destination = match &args.output {
        Some(path) if path.as_os_str() != "-" => Some(Destination::check(path, args.force)?),
        _ => None,
    };
    let mut catalog = Catalog::open(&args.dir)?;
    let query = Query {
        window,
        predicate: args.filter.as_deref(),
        all_states: args.all_states,
    };
    let lines = folded(&mut catalog, &query, kinds)?;
    if lines.is_empty() {
        // Nothing to draw (inferno would only log an error): say why.
        if catalog.problems.is_empty() {
            let empty = catalog.no_data(Samples::NAME, &window);
            if !catalog.spans(Samples::NAME).is_empty() && has_rows(&mut catalog, &window)? {
                bail!(
                    "no samples in {} match{} (--all-states draws sleeping and idle threads too)",
                    window.text(),
                    if args.filter.is_some() {
                        " --where"
                    } else {
                        ""
                    }
                );
            }
            return Err(empty);
        }
        return super::nothing(catalog, Samples::NAME, &window);
    }
    let mut text = String::new();
    for (stack, weight) in &lines {
        let _ = writeln!(text, "{stack} {weight}");
    }
    let bytes = if args.folded {
        text.into_bytes()
    } else {
        svg(&text, &window, &args.title)?.into_bytes()
    };
    match destination {
        Some(destination) => {
            let destination = Destination::check(destination.path(), args.force)?;
            destination.write_all(&bytes, 0o644)?;
            eprintln!(
                "taskscope: wrote {} ({} stacks, {})",
                destination.path().display(),
                lines.len(),
                window.text()
            );
        }
        _ => {
            let mut out = std::io::stdout().lock();
            match out.write_all(&bytes) {
                Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => {}
                other => other?,
            }
        }
    }
    Ok(Answer::of(catalog))
}

/// Whether the window has any tick: then an empty graph means the filter
/// (or the states counted) matched nothing, not that there is no data.
fn has_rows(catalog: &mut Catalog, window: &Window) -> Result<bool> {
    Ok(super::aggregate::sampling_period(catalog, window)?.is_some())
}

/// The SVG of folded stacks `text`.
pub fn svg(text: &str, window: &Window, title: &Option<String>) -> Result<String> {
    let mut options = inferno::flamegraph::Options::default();
    options.title = title
        .clone()
        .unwrap_or_else(|| "taskscope: thread time by state and stack".into());
    options.subtitle = Some(window.text());
    options.count_name = "us".into();
    options.name_type = "Frame:".into();
    options.hash = true;
    options.deterministic = true;
    options.notes =
        "Roots are thread states, then thread names; _[k] marks kernel frames, _[j] JIT frames, _[p] Python frames"
            .into();
    let mut svg = Vec::new();
    inferno::flamegraph::from_lines(&mut options, text.lines(), &mut svg)
        .context("cannot draw the flame graph")?;
    let svg = String::from_utf8(svg).context("the flame graph is not UTF-8")?;
    Ok(color_by_state(&svg, &kinds_by_name(text)))
}

#[cfg(test)]
mod tests {
    use super::super::flame_color::frame_color;
    use super::*;

    #[test]
    fn function_names() {
        assert_eq!(function_name("do_nanosleep+0x6a"), "do_nanosleep");
        assert_eq!(
            function_name("sleep_forever+0x1e [groundtruth.c:80]"),
            "sleep_forever"
        );
        assert_eq!(function_name("libc.so.6+0x1234"), "libc.so.6");
        assert_eq!(function_name("0x7fff12345678"), "[unknown]");
        assert_eq!(
            function_name("std::vec::Vec<T> as Drop>::drop+0x1"),
            "std::vec::Vec<T>_as_Drop>::drop"
        );
    }

    #[test]
    fn svg_frames_take_their_states_colour() {
        let window = Window {
            from_us: 0,
            to_us: 1_000_000,
        };
        let text = "SLEEP;main;py_wait_[p];nanosleep_[k] 300\nON_CPU;main;spin;JS:*busy_/x.js:1:2_[j] 700\n";
        let svg = svg(text, &window, &None).unwrap();
        assert!(svg.starts_with("<?xml"));
        let fill_of = |title: &str| {
            let at = svg
                .find(&format!("<g><title>{title} ("))
                .unwrap_or_else(|| panic!("no frame {title}"));
            let rest = &svg[at..];
            let fill = rest.find("fill=\"").unwrap();
            rest[fill + 6..].split('"').next().unwrap().to_string()
        };
        // `main` appears under both roots, each in its state's colours.
        let (kernel, jit, native) = (
            Some(FrameKind::Kernel),
            Some(FrameKind::Jit),
            Some(FrameKind::Native),
        );
        assert_eq!(fill_of("SLEEP"), frame_color("SLEEP", "SLEEP", true, None));
        assert_eq!(
            fill_of("ON_CPU"),
            frame_color("ON_CPU", "ON_CPU", true, None)
        );
        assert_eq!(
            fill_of("spin"),
            frame_color("ON_CPU", "spin", false, native)
        );
        assert_eq!(
            fill_of("JS:*busy_/x.js:1:2"),
            frame_color("ON_CPU", "JS:*busy_/x.js:1:2", false, jit)
        );
        assert_eq!(
            fill_of("nanosleep"),
            frame_color("SLEEP", "nanosleep", false, kernel)
        );
        // A Python frame: drawn with its mark, in the Python band.
        assert_eq!(
            fill_of("py_wait_[p]"),
            frame_color("SLEEP", "py_wait_[p]", false, Some(FrameKind::Python))
        );
        // Each kind has its own band of the state's hue.
        let lightness = |rgb: String| {
            let v: Vec<u32> = rgb
                .trim_start_matches("rgb(")
                .trim_end_matches(')')
                .split(',')
                .map(|c| c.parse().unwrap())
                .collect();
            v.iter().max().unwrap() + v.iter().min().unwrap()
        };
        let of = |kind| lightness(frame_color("ON_CPU", "f", false, kind));
        assert!(of(jit) < of(native) && of(native) < of(kernel));
        let python = of(Some(FrameKind::Python));
        assert!(of(jit) < python && python < of(native));
    }

    #[test]
    fn frames_carry_their_kinds() {
        let frames = stack_frames(
            "py::busy:/x.py+0x1;_PyEval_EvalFrameDefault+0x2",
            Some("jit;native"),
        );
        assert_eq!(
            frames,
            vec![
                (
                    "_PyEval_EvalFrameDefault".to_string(),
                    Some(FrameKind::Native)
                ),
                ("py::busy:/x.py".to_string(), Some(FrameKind::Jit)),
            ]
        );
        // Files from before frame_kinds, or a list that does not match.
        assert_eq!(stack_frames("a+0x1;b+0x2", None)[0].1, None);
        assert_eq!(stack_frames("a+0x1;b+0x2", Some("jit"))[1].1, None);
        let kinds =
            kinds_by_name("ON_CPU;x;main;f_[j];g_[k] 1\nSLEEP;x;[unknown];[unknown]_[k] 2\n");
        assert_eq!(kinds["main"], Some(FrameKind::Native));
        assert_eq!(kinds["f"], Some(FrameKind::Jit));
        assert_eq!(kinds["g"], Some(FrameKind::Kernel));
        assert_eq!(kinds["[unknown]"], None);
        assert!(!kinds.contains_key("x") && !kinds.contains_key("ON_CPU"));
    }
}
