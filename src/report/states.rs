//! Thread states as readers show them: which count as *active*, and each
//! state's letter and colour — one table for the timeline, the flame graph
//! and the README.
//!
//! Active follows the Active Session History definition the agent samples
//! by default (`store::thread_state::ThreadState::is_active`): a thread on a CPU,
//! waiting for one, in uninterruptible sleep (`DISK` or `UNINTERRUPTIBLE`),
//! stopped or traced. Sleeping and idle threads are not active;
//! `--all-states` counts them too.

use crate::store::thread_state::ThreadState;

/// How one state is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Style {
    pub name: &'static str,
    /// Letter of the timeline's bars.
    pub letter: char,
    /// ANSI foreground colour of the timeline (SGR code).
    pub ansi: &'static str,
    /// Colour name, for the docs.
    pub colour: &'static str,
    /// Hue (degrees) and saturation of the flame graph's frames: the same
    /// colour as the timeline's.
    pub hue: f64,
    pub saturation: f64,
}

const fn style(
    name: &'static str,
    letter: char,
    ansi: &'static str,
    colour: &'static str,
    hue: f64,
    saturation: f64,
) -> Style {
    Style {
        name,
        letter,
        ansi,
        colour,
        hue,
        saturation,
    }
}

/// Every state the agent writes, in chart order, and the style of a state
/// this build does not know.
pub const STYLES: [Style; 15] = [
    style("ON_CPU", 'C', "32", "green", 120.0, 0.6),
    style("RUNQUEUE", 'R', "33", "yellow", 50.0, 0.8),
    style("DISK", 'D', "31", "red", 0.0, 0.7),
    style("UNINTERRUPTIBLE", 'U', "91", "orange", 25.0, 0.8),
    style("STOPPED", 'T', "35", "magenta", 300.0, 0.5),
    style("TRACED", 't', "35", "magenta", 300.0, 0.5),
    style("NEW", 'N', "36", "cyan", 180.0, 0.6),
    style("FROZEN", 'F', "36", "cyan", 180.0, 0.6),
    style("RTLOCK_WAIT", 'L', "31", "red", 0.0, 0.7),
    style("SLEEP", 'S', "34", "blue", 220.0, 0.6),
    style("IDLE", 'I', "90", "grey", 0.0, 0.0),
    style("PARKED", 'P', "90", "grey", 0.0, 0.0),
    style("ZOMBIE", 'Z', "90", "grey", 0.0, 0.0),
    style("DEAD", 'X', "90", "grey", 0.0, 0.0),
    style("UNKNOWN", '?', "37", "white", 0.0, 0.0),
];

/// The style of `state` (UNKNOWN's for a name this build does not know).
pub fn style_of(state: &str) -> &'static Style {
    STYLES
        .iter()
        .find(|s| s.name == state)
        .unwrap_or(&STYLES[STYLES.len() - 1])
}

/// Position of `state` in chart order.
pub fn order_of(state: &str) -> usize {
    STYLES
        .iter()
        .position(|s| s.name == state)
        .unwrap_or(STYLES.len())
}

/// Whether a thread in `state` is active (ASH): what the report counts
/// unless `--all-states`.
pub fn is_active(state: &str) -> bool {
    // Called for every row: compare with the few active names (most
    // mismatches stop at the length).
    static ACTIVE: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    ACTIVE.get_or_init(active_names).contains(&state)
}

/// The active states, for headers and docs: `ON_CPU, RUNQUEUE, …`.
pub fn active_names() -> Vec<&'static str> {
    ThreadState::ALL
        .iter()
        .filter(|s| s.is_active())
        .map(|s| s.name())
        .collect()
}

/// The README's table of states (between its `states:begin`/`end` marks).
pub fn markdown_table() -> String {
    let mut out =
        String::from("| state | active | timeline | colour |\n| --- | --- | --- | --- |\n");
    for style in &STYLES {
        out.push_str(&format!(
            "| `{}` | {} | `{}` | {} |\n",
            style.name,
            if is_active(style.name) { "yes" } else { "no" },
            style.letter,
            style.colour
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_has_one_style() {
        for state in ThreadState::ALL {
            let style = style_of(state.name());
            assert_eq!(style.name, state.name());
        }
        assert_eq!(STYLES.len(), ThreadState::ALL.len());
        assert_eq!(style_of("NO_SUCH").name, "UNKNOWN");
        let letters: std::collections::BTreeSet<char> = STYLES.iter().map(|s| s.letter).collect();
        assert_eq!(letters.len(), STYLES.len(), "letters are unique");
        assert!(is_active("DISK") && is_active("ON_CPU") && !is_active("SLEEP"));
        assert!(is_active("UNINTERRUPTIBLE"));
        assert!(!is_active("IDLE") && !is_active("bogus"));
    }

    #[test]
    fn the_shipped_sql_counts_the_same_states() {
        let sql = include_str!("../../share/taskscope.sql");
        let start = sql
            .find("MACRO taskscope_active(state)")
            .expect("taskscope_active in share/taskscope.sql");
        let list = &sql[start..];
        let list = &list[list.find("IN (").expect("IN (") + 4..];
        let list = &list[..list.find(')').expect(")")];
        let names: Vec<&str> = list
            .split(',')
            .map(|n| n.trim().trim_matches('\''))
            .collect();
        assert_eq!(
            names,
            active_names(),
            "taskscope_active() in share/taskscope.sql"
        );
    }

    #[test]
    fn the_readme_lists_every_state_with_its_colour() {
        let readme = include_str!("../../README.md");
        let start = readme
            .find("<!-- states:begin -->")
            .expect("states:begin in README.md")
            + "<!-- states:begin -->".len();
        let end = readme
            .find("<!-- states:end -->")
            .expect("states:end in README.md");
        assert_eq!(
            readme[start..end].trim(),
            markdown_table().trim(),
            "README's state table is stale: paste report::states::markdown_table()"
        );
    }
}
