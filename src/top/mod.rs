//! `taskscope top`: a full-screen terminal view of average active threads,
//! live from a running agent's pinned thread table, or over a window of
//! the files.
//!
//! The decision a reader must know: `top` computes nothing of its own
//! from the files. History mode asks `report` (`report::active_threads`,
//! `report::timeline_of`), so its rows are the report's for the same
//! window; live mode reads the table as an independent reader
//! (`bpf::live`, decoded by the agent's own decoder through
//! `output::live`) at its own rate and averages rows per read. The
//! terminal is restored on every way out: quit, error, panic (ratatui's
//! hook), SIGTERM/SIGHUP; a resize (SIGWINCH) redraws.

mod chart;
mod filter;
mod group;
mod source;
mod ui;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::style::Style;
use ratatui::widgets::TableState;

use crate::bpf::live::{LiveError, LiveTable};
use crate::error::Usage;
use crate::output::live::now_ns;
use crate::store::catalog::Window;
use group::Sort;
use source::{Ask, History, Level, Live, Screen, Source};

pub use group::LIVE_COLUMNS;

/// What `taskscope top` is asked (made from its flags by `cli`).
#[derive(Debug, Clone)]
pub struct Request {
    /// The agent's `--pin-dir`.
    pub pin_dir: PathBuf,
    /// How often live mode reads the table.
    pub interval: Duration,
    /// Columns to group by (empty: the report's defaults).
    pub by: Vec<String>,
    pub all_states: bool,
    /// The files for history mode.
    pub dir: PathBuf,
    /// History mode over this window (window flags given); else live.
    pub window: Option<Window>,
    /// `--dir` was given: fall back to history without asking.
    pub dir_given: bool,
    /// The window history mode starts with when it is offered.
    pub fallback_window: Window,
}

/// Default grouping, as the report's.
pub const DEFAULT_GROUPS: [&str; 4] = crate::report::DEFAULT_GROUPS;

/// A text being typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    Group,
    Filter,
}

impl Prompt {
    fn label(self) -> &'static str {
        match self {
            Prompt::Group => "group by (comma-separated columns; empty: defaults)",
            Prompt::Filter => {
                "filter: SQL condition on the rows, e.g. comm LIKE 'pg%' (empty: none)"
            }
        }
    }
}

/// The state of the view.
pub struct App {
    pub by: Vec<String>,
    pub all_states: bool,
    pub sort: Sort,
    pub filter: String,
    pub level: Level,
    /// Levels above, with the row selected in each.
    stack: Vec<(Level, usize)>,
    pub paused: bool,
    pub help: bool,
    pub input: Option<(Prompt, String)>,
    pub message: Option<String>,
    color: bool,
}

impl App {
    /// `style`, or no style at all under `NO_COLOR`.
    pub fn style(&self, style: Style) -> Style {
        if self.color {
            style
        } else {
            Style::new().add_modifier(style.add_modifier)
        }
    }
}

/// Check the flags that need no terminal and no file.
pub fn check(request: &Request) -> Result<()> {
    if request.interval < Duration::from_millis(100) {
        return Err(Usage("--interval must be at least 100ms".into()).into());
    }
    if request.window.is_none() && !request.by.is_empty() {
        group::live_columns(&request.by).map_err(|e| Usage(e.to_string()))?;
    }
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(Usage(
            "top needs a terminal (stdin and stdout); for text use `taskscope report`".into(),
        )
        .into());
    }
    Ok(())
}

/// Where to read from: live when the table opens, else (with a message)
/// history, after asking unless `--dir` was given.
fn choose_source(request: &Request) -> Result<Option<Source>> {
    let history = |window| {
        Source::History(History {
            dir: request.dir.clone(),
            window,
        })
    };
    if let Some(window) = request.window {
        return Ok(Some(history(window)));
    }
    let err = match LiveTable::open(&request.pin_dir) {
        Ok(table) => return Ok(Some(Source::Live(Live::new(table, request.interval)))),
        Err(err) => err,
    };
    let why = match &err {
        LiveError::NotPinned(m) | LiveError::NotPermitted(m) | LiveError::Other(m) => m.clone(),
    };
    if request.dir_given {
        eprintln!(
            "taskscope top: {why}; showing the files in {} instead",
            request.dir.display()
        );
        return Ok(Some(history(request.fallback_window)));
    }
    eprint!(
        "taskscope top: {why}\nShow the files in {} instead (the last hour; --dir DIR for others)? [y/N] ",
        request.dir.display()
    );
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).ok();
    if answer.trim().eq_ignore_ascii_case("y") || answer.trim().eq_ignore_ascii_case("yes") {
        Ok(Some(history(request.fallback_window)))
    } else {
        Ok(None)
    }
}

/// `taskscope top`. Returns false when the user declined history mode
/// after live mode could not start.
pub fn run(request: &Request) -> Result<bool> {
    let Some(mut source) = choose_source(request)? else {
        return Ok(false);
    };
    // SIGTERM, SIGHUP (the terminal went away: crossterm would spin on
    // it), SIGINT sent by kill: restore the terminal and exit, from a
    // thread of its own, whatever the loop is doing.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
        signal_hook::consts::SIGINT,
    ])
    .context("cannot install the signal handlers")?;
    std::thread::Builder::new()
        .name("top-signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                restore();
                std::process::exit(128 + signal);
            }
        })
        .context("cannot start the signal thread")?;
    let mut app = App {
        by: if request.by.is_empty() {
            DEFAULT_GROUPS.iter().map(|s| s.to_string()).collect()
        } else {
            request.by.clone()
        },
        all_states: request.all_states,
        sort: Sort::Active,
        filter: String::new(),
        level: Level::Groups,
        stack: Vec::new(),
        paused: false,
        help: false,
        input: None,
        message: None,
        color: std::env::var_os("NO_COLOR").is_none(),
    };
    let mut terminal = ratatui::try_init().context("cannot set up the terminal")?;
    let result = event_loop(&mut terminal, &mut app, &mut source);
    restore();
    drop(terminal);
    result.map(|()| true)
}

/// Leave the alternate screen and raw mode, show the cursor.
fn restore() {
    ratatui::restore();
    let _ = ratatui::crossterm::execute!(std::io::stdout(), ratatui::crossterm::cursor::Show);
}

fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    app: &mut App,
    source: &mut Source,
) -> Result<()> {
    let mut table_state = TableState::default().with_selected(Some(0));
    // Deadlines on CLOCK_MONOTONIC, the table's clock: the reader passes
    // the one it woke for, so the thread its wakeup displaced from its
    // CPU is put back there (`settle::restore_displaced`).
    let mut next_read_ns = now_ns();
    let mut screen: Option<Screen> = None;
    let mut dirty = true;
    loop {
        if let Source::Live(live) = source {
            let now = now_ns();
            if now >= next_read_ns {
                if !app.paused {
                    // Sleepers too when counted, or for a thread's
                    // recent states.
                    let all = app.all_states || matches!(app.level, Level::Thread { .. });
                    if let Err(err) = live.read(next_read_ns, all) {
                        app.message = Some(format!("{err:#}"));
                    }
                    dirty = true;
                }
                let interval = live.interval.as_nanos() as u64;
                next_read_ns += interval;
                if next_read_ns < now {
                    next_read_ns = now + interval;
                }
            }
        }
        let size = terminal.size().context("cannot read the terminal size")?;
        if dirty || screen.is_none() {
            let ask = Ask {
                level: &app.level,
                by: &app.by,
                all_states: app.all_states,
                filter: &app.filter,
                sort: app.sort,
                chart_width: (size.width as usize).saturating_sub(7).max(1),
            };
            match source.screen(&ask) {
                Ok(s) => screen = Some(s),
                Err(err) => {
                    app.message = Some(format!("{err:#}"));
                    if screen.is_none() {
                        screen = Some(Screen::default());
                    }
                }
            }
            dirty = false;
        }
        let shown = screen.as_ref().map(|s| s.rows.len()).unwrap_or(0);
        if table_state.selected().is_some_and(|i| i >= shown) {
            table_state.select(Some(shown.saturating_sub(1)));
        }
        if let Some(s) = &screen {
            terminal
                .draw(|frame| ui::draw(frame, app, s, &mut table_state))
                .context("cannot draw")?;
        }
        let wait = match source {
            // Rounded up to whole milliseconds: woken at or after the
            // deadline, never just before it.
            Source::Live(_) => {
                Duration::from_millis(next_read_ns.saturating_sub(now_ns()).div_ceil(1_000_000))
            }
            Source::History(_) => Duration::from_millis(500),
        };
        if !event::poll(wait.min(Duration::from_millis(500))).context("cannot read the terminal")? {
            continue;
        }
        match event::read().context("cannot read the terminal")? {
            Event::Key(key) if key.kind != KeyEventKind::Release => {
                let rows = screen.as_ref().map(|s| &s.rows[..]).unwrap_or(&[]);
                match handle_key(app, source, key, rows, &mut table_state) {
                    Action::Quit => return Ok(()),
                    Action::Redraw => {}
                    Action::Refresh => dirty = true,
                }
            }
            Event::Resize(..) => dirty = true,
            _ => {}
        }
    }
}

enum Action {
    Quit,
    Redraw,
    Refresh,
}

fn handle_key(
    app: &mut App,
    source: &mut Source,
    key: KeyEvent,
    rows: &[group::GroupRow],
    table: &mut TableState,
) -> Action {
    if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
        return Action::Quit;
    }
    if app.help {
        app.help = false;
        return Action::Redraw;
    }
    if let Some((prompt, text)) = &mut app.input {
        match key.code {
            KeyCode::Enter => {
                let (prompt, text) = (*prompt, text.trim().to_string());
                app.input = None;
                match prompt {
                    Prompt::Filter => {
                        // A SQL condition on the rows, as report's --where.
                        let checked = match source {
                            Source::Live(live) => live.set_filter(&text),
                            Source::History(_) if text.is_empty() => Ok(()),
                            Source::History(_) => crate::report::check_samples(&[], Some(&text)),
                        };
                        match checked {
                            Ok(()) => app.filter = text,
                            Err(err) => app.message = Some(format!("filter: {err:#}")),
                        }
                    }
                    Prompt::Group => {
                        let by: Vec<String> = if text.is_empty() {
                            DEFAULT_GROUPS.iter().map(|s| s.to_string()).collect()
                        } else {
                            text.split(',').map(|c| c.trim().to_string()).collect()
                        };
                        let checked = match source {
                            Source::Live(_) => group::live_columns(&by).map(|_| ()),
                            Source::History(_) => Ok(()),
                        };
                        match checked {
                            Ok(()) => {
                                app.by = by;
                                app.level = Level::Groups;
                                app.stack.clear();
                            }
                            Err(err) => app.message = Some(format!("{err:#}")),
                        }
                    }
                }
                table.select(Some(0));
                return Action::Refresh;
            }
            KeyCode::Esc => app.input = None,
            KeyCode::Backspace => {
                text.pop();
            }
            KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => text.push(c),
            _ => {}
        }
        return Action::Redraw;
    }
    app.message = None;
    let selected = table.selected().unwrap_or(0);
    match key.code {
        KeyCode::Char('q') => return Action::Quit,
        KeyCode::Char('?') | KeyCode::F(1) => app.help = true,
        KeyCode::Down | KeyCode::Char('j') => {
            table.select(Some((selected + 1).min(rows.len().saturating_sub(1))))
        }
        KeyCode::Up | KeyCode::Char('k') => table.select(Some(selected.saturating_sub(1))),
        KeyCode::PageDown => table.select(Some((selected + 10).min(rows.len().saturating_sub(1)))),
        KeyCode::PageUp => table.select(Some(selected.saturating_sub(10))),
        KeyCode::Char('p') | KeyCode::Char(' ') => {
            app.paused = !app.paused;
            return Action::Refresh;
        }
        KeyCode::Char('a') => {
            app.all_states = !app.all_states;
            return Action::Refresh;
        }
        KeyCode::Char('s') => {
            app.sort = app.sort.next();
            return Action::Refresh;
        }
        KeyCode::Char('g') => app.input = Some((Prompt::Group, app.by.join(","))),
        KeyCode::Char('/') => app.input = Some((Prompt::Filter, app.filter.clone())),
        KeyCode::Enter => {
            let Some(row) = rows.get(selected) else {
                return Action::Redraw;
            };
            let next = match &app.level {
                Level::Groups => Some(Level::Threads {
                    columns: app.by.clone(),
                    key: row.key.clone(),
                }),
                Level::Threads { .. } => row
                    .key
                    .first()
                    .and_then(|tid| tid.as_deref())
                    .and_then(|tid| tid.parse().ok())
                    .map(|tid| Level::Thread { tid }),
                Level::Thread { .. } => None,
            };
            if let Some(next) = next {
                let previous = std::mem::replace(&mut app.level, next);
                app.stack.push((previous, selected));
                table.select(Some(0));
                return Action::Refresh;
            }
        }
        KeyCode::Esc | KeyCode::Backspace => {
            if let Some((level, selected)) = app.stack.pop() {
                app.level = level;
                table.select(Some(selected));
                return Action::Refresh;
            }
        }
        KeyCode::Char('[')
        | KeyCode::Left
        | KeyCode::Char(']')
        | KeyCode::Right
        | KeyCode::Char('-')
        | KeyCode::Char('+')
        | KeyCode::Char('=') => {
            let Source::History(h) = source else {
                app.message = Some(
                    "[ ] - + move and zoom the window of history mode (top --dir DIR --since 1h)"
                        .into(),
                );
                return Action::Redraw;
            };
            match key.code {
                KeyCode::Char('[') | KeyCode::Left => h.shift(-1),
                KeyCode::Char(']') | KeyCode::Right => h.shift(1),
                KeyCode::Char('-') => h.zoom(2.0),
                _ => h.zoom(0.5),
            }
            return Action::Refresh;
        }
        _ => {}
    }
    Action::Redraw
}
