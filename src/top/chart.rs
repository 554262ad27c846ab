//! The chart of average active threads over time, stacked by wait class
//! (as the web view's Top Activity), drawn in text cells: one column per
//! read (live) or bucket (history), one letter per class, so it reads
//! without colour (`NO_COLOR`) and over any SSH session at 80×24.

/// Wait classes in stacking order (bottom first) and their letters.
pub const CLASSES: &[(&str, char)] = &[
    ("CPU", 'C'),
    ("RUNQUEUE", 'R'),
    ("IO", 'D'),
    ("LOCK", 'L'),
    ("NET", 'N'),
    ("IPC", 'P'),
    ("PAGING", 'G'),
    ("TIMER", 'T'),
    ("IDLE", 'I'),
];

/// Letter of `OTHER` and of any class not listed in [`CLASSES`].
pub const OTHER: char = 'O';

/// Index into [`CLASSES`] of `class`, or `CLASSES.len()` for the others.
pub fn class_index(class: &str) -> usize {
    CLASSES
        .iter()
        .position(|(name, _)| *name == class)
        .unwrap_or(CLASSES.len())
}

/// The letter of stack index `i`.
pub fn letter(i: usize) -> char {
    CLASSES.get(i).map(|s| s.1).unwrap_or(OTHER)
}

/// One column of the chart: average threads per class index.
pub type Column = Vec<(usize, f64)>;

/// The chart's cells, top row first: `None` is empty, `Some(i)` a cell of
/// class index `i`. The newest column is at the right; with more columns
/// than `width`, the oldest are left out. Also the scale (threads at the
/// top row).
pub fn grid(columns: &[Column], width: usize, height: usize) -> (Vec<Vec<Option<usize>>>, f64) {
    let shown = &columns[columns.len().saturating_sub(width)..];
    let max = shown
        .iter()
        .map(|c| c.iter().map(|(_, v)| v).sum::<f64>())
        .fold(0.0, f64::max);
    let scale = if max <= 0.0 { 1.0 } else { max.ceil() };
    let mut cells = vec![vec![None; width]; height];
    let offset = width - shown.len();
    for (x, column) in shown.iter().enumerate() {
        let mut sorted = column.clone();
        sorted.sort_by_key(|(i, _)| *i);
        // Cumulative rounding: each class's cells are the rounded top of
        // its segment minus the rounded top of the one below.
        let mut acc = 0.0;
        let mut filled = 0usize;
        for (i, v) in sorted {
            acc += v;
            let top = ((acc / scale) * height as f64).round() as usize;
            for y in filled..top.min(height) {
                cells[height - 1 - y][offset + x] = Some(i);
            }
            filled = filled.max(top.min(height));
        }
    }
    (cells, scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_stack_from_the_bottom_scaled_to_the_highest() {
        let c = class_index("CPU");
        let s = class_index("TIMER");
        let columns = vec![vec![(c, 2.0), (s, 2.0)], vec![(c, 1.0)]];
        let (cells, scale) = grid(&columns, 3, 4);
        assert_eq!(scale, 4.0);
        // Column 0 is empty padding; column 1: 2 C at the bottom, 2 S above.
        let col = |x: usize| cells.iter().map(|row| row[x]).collect::<Vec<_>>();
        assert_eq!(col(0), vec![None; 4]);
        assert_eq!(col(1), vec![Some(s), Some(s), Some(c), Some(c)]);
        assert_eq!(col(2), vec![None, None, None, Some(c)]);
        assert_eq!(class_index("OTHER"), CLASSES.len());
        assert_eq!(letter(CLASSES.len()), OTHER);
    }

    #[test]
    fn only_the_newest_columns_fit() {
        let c = class_index("CPU");
        let columns: Vec<Column> = (0..10).map(|i| vec![(c, i as f64)]).collect();
        let (cells, scale) = grid(&columns, 2, 9);
        assert_eq!(scale, 9.0);
        assert_eq!(cells[0][1], Some(c));
        assert_eq!(cells[0][0], None);
    }
}
