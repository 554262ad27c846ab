//! `taskscope flamegraph`: sampled stacks of a window as a flame graph.
//!
//! Each sample row becomes one folded stack, weighted by its `weight_us`:
//! the thread's state at the root, then its user frames (outermost
//! first), then its kernel frames (marked `_[k]`). So on-CPU and off-CPU
//! time sit side by side and add up to thread time. Frames are function
//! names only (offsets and source lines would split identical calls). The
//! SVG is drawn by `inferno`; each state's tower then gets its own colour
//! family (inferno colours by frame name only, so the state is applied
//! afterwards through the frames' `fg:x` sample coordinates).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write;

use anyhow::{bail, Context, Result};

use super::filter;
use super::read::{self, Cell, Projection};
use crate::catalog::Window;
use crate::cli::FlamegraphArgs;
use crate::destination::Destination;
use crate::schema::{Samples, Stacks, Table};

/// Folded stacks (`frame;frame;frame weight`), heaviest first.
pub fn folded(
    dir: &std::path::Path,
    window: &Window,
    predicate: Option<&str>,
    kernel: bool,
    user: bool,
) -> Result<Vec<(String, i64)>> {
    let samples = super::files(dir, Samples::NAME, window)?;
    if samples.is_empty() {
        return Err(super::no_data(dir, Samples::NAME, window));
    }
    let mut projection = Projection::of::<Samples>(
        &["ts", "weight_us", "state", "kstack_id", "ustack_id"].map(String::from),
        "flamegraph",
    )?;
    let expr = predicate
        .map(|text| filter::parse::<Samples>(text, &mut projection))
        .transpose()?;
    let mut weights: HashMap<(String, Option<i64>, Option<i64>), i64> = HashMap::new();
    read::scan(&samples, &projection, |row| {
        if !row.cell(0).as_int().is_some_and(|t| window.contains(t)) {
            return Ok(());
        }
        if expr.as_ref().is_some_and(|e| !filter::passes(e, row)) {
            return Ok(());
        }
        let state = match row.cell(2) {
            Cell::Text(s) => s.to_string(),
            _ => "UNKNOWN".to_string(),
        };
        let kstack = if kernel { row.cell(3).as_int() } else { None };
        let ustack = if user { row.cell(4).as_int() } else { None };
        *weights.entry((state, kstack, ustack)).or_default() += row.cell(1).as_int().unwrap_or(0);
        Ok(())
    })?;

    let frames = stack_frames(dir, window)?;
    let mut lines: HashMap<String, i64> = HashMap::new();
    for ((state, kstack, ustack), weight) in weights {
        let mut line = state;
        let mut any = false;
        for (id, suffix) in [(ustack, ""), (kstack, "_[k]")] {
            let Some(names) = id.and_then(|id| frames.get(&id)) else {
                continue;
            };
            for name in names {
                let _ = write!(line, ";{name}{suffix}");
                any = true;
            }
        }
        if !any {
            line.push_str(";[no stack]");
        }
        *lines.entry(line).or_default() += weight;
    }
    let mut lines: Vec<(String, i64)> = lines.into_iter().filter(|(_, w)| *w > 0).collect();
    lines.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(lines)
}

/// Every stack of the window's periods: id → function names, outermost
/// first.
fn stack_frames(dir: &std::path::Path, window: &Window) -> Result<HashMap<i64, Vec<String>>> {
    let files = super::files(dir, Stacks::NAME, window)?;
    let projection = Projection::of::<Stacks>(&["stack_id".into(), "frames".into()], "flamegraph")?;
    let mut frames = HashMap::new();
    read::scan(&files, &projection, |row| {
        if let (Some(id), Cell::Text(text)) = (row.cell(0).as_int(), row.cell(1)) {
            frames
                .entry(id)
                .or_insert_with(|| text.split(';').rev().map(function_name).collect());
        }
        Ok(())
    })?;
    Ok(frames)
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

/// `taskscope flamegraph`.
pub fn run(args: &FlamegraphArgs) -> Result<()> {
    let window = super::window(&args.window, crate::timefmt::unix_micros_now())?;
    let kernel = args.kind.contains(&crate::cli::StackChoice::Kernel);
    let user = args.kind.contains(&crate::cli::StackChoice::User);
    if !kernel && !user {
        bail!("--kind must name kernel, user or both");
    }
    // Checked before the work, written after it (re-checked then).
    let destination = match &args.output {
        Some(path) if path.as_os_str() != "-" => Some(Destination::check(path, args.force)?),
        _ => None,
    };
    let lines = folded(
        &args.window.dir,
        &window,
        args.filter.as_deref(),
        kernel,
        user,
    )?;
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
                super::output::window_text(&window)
            );
            Ok(())
        }
        _ => {
            let mut out = std::io::stdout().lock();
            match out.write_all(&bytes) {
                Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                other => Ok(other?),
            }
        }
    }
}

/// The SVG of folded stacks `text`.
pub fn svg(text: &str, window: &Window, title: &Option<String>) -> Result<String> {
    let mut options = inferno::flamegraph::Options::default();
    options.title = title
        .clone()
        .unwrap_or_else(|| "taskscope: thread time by state and stack".into());
    options.subtitle = Some(super::output::window_text(window));
    options.count_name = "us".into();
    options.name_type = "Frame:".into();
    options.hash = true;
    options.deterministic = true;
    options.notes = "Roots are thread states; _[k] marks kernel frames".into();
    let mut svg = Vec::new();
    inferno::flamegraph::from_lines(&mut options, text.lines(), &mut svg)
        .context("cannot draw the flame graph")?;
    let svg = String::from_utf8(svg).context("the flame graph is not UTF-8")?;
    Ok(color_by_state(&svg))
}

/// Hue of each state's frames (HSL degrees).
fn state_hue(state: &str) -> u32 {
    match state {
        "ON_CPU" => 10,   // red-orange: burning CPU
        "RUNQUEUE" => 45, // yellow: waiting for a CPU
        "DISK" => 280,    // purple: waiting for I/O
        "SLEEP" => 210,   // blue: waiting for an event
        "IDLE" => 0,      // grey (saturation 0)
        _ => 120,         // green: stopped, traced, zombie, ...
    }
}

/// Recolour every frame after the state at its root. State frames are the
/// lowest above inferno's `all` (largest `y`); a frame belongs to the root whose
/// `fg:x` range holds its own `fg:x`.
fn color_by_state(svg: &str) -> String {
    struct Frame {
        start: usize,
        end: usize,
        title: String,
        x: u64,
        y: f64,
    }
    let mut frames = Vec::new();
    let mut at = 0;
    while let Some(offset) = svg[at..].find("<g><title>") {
        let start = at + offset;
        let Some(end) = svg[start..].find("</g>").map(|e| start + e + 4) else {
            break;
        };
        let element = &svg[start..end];
        let title = element["<g><title>".len()..]
            .split(" (")
            .next()
            .unwrap_or("")
            .to_string();
        let attribute = |name: &str| {
            let key = format!("{name}=\"");
            element
                .find(&key)
                .map(|i| &element[i + key.len()..])
                .and_then(|rest| rest.split('"').next())
                .map(str::to_string)
        };
        let x = attribute("fg:x").and_then(|v| v.parse().ok());
        let y = attribute("y").and_then(|v| v.trim_end_matches('%').parse().ok());
        if let (Some(x), Some(y)) = (x, y) {
            frames.push(Frame {
                start,
                end,
                title,
                x,
                y,
            });
        }
        at = end;
    }
    // inferno's own root, `all`, spans everything; the states sit on it.
    frames.retain(|f| f.title != "all");
    let Some(bottom) = frames.iter().map(|f| f.y).reduce(f64::max) else {
        return svg.to_string();
    };
    // Roots sorted by x: a frame's root is the last one starting at or
    // before it.
    let mut roots: Vec<(u64, String)> = frames
        .iter()
        .filter(|f| f.y == bottom)
        .map(|f| (f.x, f.title.clone()))
        .collect();
    roots.sort();
    let mut out = String::with_capacity(svg.len());
    let mut copied = 0;
    for frame in &frames {
        let index = roots.partition_point(|(x, _)| *x <= frame.x);
        let Some((_, state)) = index.checked_sub(1).map(|i| &roots[i]) else {
            continue;
        };
        let element = &svg[frame.start..frame.end];
        let Some(fill_at) = element.find("fill=\"") else {
            continue;
        };
        let value_start = frame.start + fill_at + "fill=\"".len();
        let Some(value_len) = svg[value_start..].find('"') else {
            continue;
        };
        out.push_str(&svg[copied..value_start]);
        out.push_str(&frame_color(state, &frame.title, frame.y == bottom));
        copied = value_start + value_len;
    }
    out.push_str(&svg[copied..]);
    out
}

/// A colour of `state`'s family, varied by the frame's name so that
/// neighbours stay distinguishable; roots are the darkest.
fn frame_color(state: &str, name: &str, root: bool) -> String {
    let hue = state_hue(state) as f64;
    let saturation = if state == "IDLE" { 0.0 } else { 0.65 };
    let hash = name.bytes().fold(2_166_136_261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16_777_619)
    });
    let lightness = if root {
        0.45
    } else {
        0.55 + f64::from(hash % 20) / 100.0
    };
    let (r, g, b) = hsl_to_rgb(hue, saturation, lightness);
    format!("rgb({r},{g},{b})")
}

fn hsl_to_rgb(h: f64, s: f64, l: f64) -> (u8, u8, u8) {
    let c = (1.0 - (2.0 * l - 1.0).abs()) * s;
    let x = c * (1.0 - ((h / 60.0) % 2.0 - 1.0).abs());
    let m = l - c / 2.0;
    let (r, g, b) = match (h / 60.0) as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let to = |v: f64| ((v + m) * 255.0).round().clamp(0.0, 255.0) as u8;
    (to(r), to(g), to(b))
}

#[cfg(test)]
mod tests {
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
        let text = "SLEEP;main;nanosleep_[k] 300\nON_CPU;main;spin 700\n";
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
        assert_eq!(fill_of("SLEEP"), frame_color("SLEEP", "SLEEP", true));
        assert_eq!(fill_of("ON_CPU"), frame_color("ON_CPU", "ON_CPU", true));
        assert_eq!(fill_of("spin"), frame_color("ON_CPU", "spin", false));
        assert_eq!(
            fill_of("nanosleep"),
            frame_color("SLEEP", "nanosleep", false)
        );
    }
}
