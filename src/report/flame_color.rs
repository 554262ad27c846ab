//! Colours of `taskscope flamegraph`'s SVG: every frame takes the colour of
//! the thread state at its root (the palette the timeline uses too), in a
//! shade for its kind (kernel, native, JIT).

use std::collections::HashMap;

use super::flame::suffix;
use super::states;
use crate::store::schema::FrameKind;

/// Recolour every frame after the state at its root. State frames are the
/// lowest above inferno's `all` (largest `y`); a frame belongs to the root whose
/// `fg:x` range holds its own `fg:x`.
pub(super) fn color_by_state(svg: &str, kinds: &HashMap<&str, Option<FrameKind>>) -> String {
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
        // A frame's title is its name without the kind's mark.
        let kind = kinds.get(frame.title.as_str()).copied().flatten();
        out.push_str(&frame_color(state, &frame.title, frame.y == bottom, kind));
        copied = value_start + value_len;
    }
    out.push_str(&svg[copied..]);
    out
}

/// The kind of each frame name of folded stacks `text`, from its mark
/// (inferno draws names without it). A name seen with two kinds (an
/// unsymbolized `[unknown]` in user and kernel stacks) has none.
pub(super) fn kinds_by_name(text: &str) -> HashMap<&str, Option<FrameKind>> {
    let mut kinds: HashMap<&str, Option<FrameKind>> = HashMap::new();
    for line in text.lines() {
        let stack = line.rsplit_once(' ').map_or(line, |(stack, _)| stack);
        // The state and the thread name are not frames.
        for frame in stack.split(';').skip(2) {
            let (name, kind) = [FrameKind::Kernel, FrameKind::Jit, FrameKind::Python]
                .into_iter()
                .find_map(|k| frame.strip_suffix(suffix(k)).map(|name| (name, k)))
                .unwrap_or((frame, FrameKind::Native));
            // inferno drops the marks it knows (`_[k]`, `_[j]`) from the
            // title, and keeps `_[p]`.
            let name = if kind == FrameKind::Python {
                frame
            } else {
                name
            };
            kinds
                .entry(name)
                .and_modify(|seen| {
                    if *seen != Some(kind) {
                        *seen = None;
                    }
                })
                .or_insert(Some(kind));
        }
    }
    kinds
}

/// A colour of `state`'s family, varied by the frame's name so that
/// neighbours stay distinguishable; roots are the darkest. The frame's
/// kind picks the band: kernel frames pale and greyish, JIT frames deep
/// and saturated, Python frames a little less deep, native ones (and
/// those of unknown kind) between.
pub(super) fn frame_color(state: &str, name: &str, root: bool, kind: Option<FrameKind>) -> String {
    let style = states::style_of(state);
    let hash = name.bytes().fold(2_166_136_261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16_777_619)
    });
    let vary = f64::from(hash % 20) / 100.0;
    let (hue, mut saturation) = (style.hue, style.saturation);
    let lightness = if root {
        0.45
    } else if kind == Some(FrameKind::Kernel) {
        saturation *= 0.45;
        0.72 + vary / 2.0
    } else if kind == Some(FrameKind::Jit) {
        saturation = (saturation * 1.3).min(1.0);
        0.36 + vary / 2.0
    } else if kind == Some(FrameKind::Python) {
        saturation = (saturation * 1.15).min(1.0);
        0.42 + vary / 2.0
    } else {
        0.52 + vary
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
