//! Drawing one frame: a header, the chart, the table (or a thread's
//! detail), a status line; the help over everything when asked. Colours
//! only when `NO_COLOR` is not set; everything has a letter or text too.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Table, TableState};
use ratatui::Frame;

use super::chart::{self, CLASSES};
use super::source::Screen;
use super::App;

const HELP: &[&str] = &[
    "taskscope top: average active threads (AAS)",
    "",
    " Up/Down j/k  select a row        Enter  drill down: group, threads, thread",
    " Esc/Bksp     back up a level     q      quit (Ctrl-C too)",
    " g            group by columns    /      filter rows (a SQL condition)",
    " s            sort (AAS, key)     a      all states (sleeping, idle too)",
    " p / Space    pause (live)        ?      this help",
    " [ ] Left/Right  move the window  - +    zoom out / in (history mode)",
    "",
    "Chart letters (wait classes): C CPU, R RUNQUEUE, D IO, L LOCK,",
    "N NET, P IPC, G PAGING, T TIMER, I IDLE, O OTHER.",
    "Live: Enter on a thread shows its stacks; no file or socket names (files).",
    "",
    "Press any key to close.",
];

fn class_color(i: usize) -> Color {
    match CLASSES.get(i).map(|s| s.0) {
        Some("CPU") => Color::Green,
        Some("RUNQUEUE") => Color::LightGreen,
        Some("IO") => Color::Blue,
        Some("LOCK") => Color::Red,
        Some("NET") => Color::Cyan,
        Some("IPC") => Color::Magenta,
        Some("PAGING") => Color::LightRed,
        Some("TIMER") => Color::DarkGray,
        Some("IDLE") => Color::Gray,
        _ => Color::Yellow,
    }
}

/// Draw `screen` as `app` shows it.
pub fn draw(frame: &mut Frame<'_>, app: &App, screen: &Screen, table_state: &mut TableState) {
    let area = frame.area();
    let chart_height = if area.height >= 20 { 7 } else { 3 };
    let [header, chart_area, body, status] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(chart_height + 1),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_header(frame, app, screen, header);
    draw_chart(frame, app, screen, chart_area);
    let text: Vec<Line<'_>> = screen
        .detail
        .iter()
        .map(|l| Line::raw(l.as_str()))
        .collect();
    if screen.rows.is_empty() && !screen.detail.is_empty() {
        frame.render_widget(Paragraph::new(text), body);
    } else if screen.detail.is_empty() {
        draw_table(frame, app, screen, body, table_state);
    } else {
        // A thread in history mode: what it is, then its states.
        let [above, table] = Layout::vertical([
            Constraint::Length(screen.detail.len() as u16),
            Constraint::Min(3),
        ])
        .areas(body);
        frame.render_widget(Paragraph::new(text), above);
        draw_table(frame, app, screen, table, table_state);
    }
    draw_status(frame, app, screen, status);
    if app.help {
        let w = area.width.min(84);
        let h = area.height.min(HELP.len() as u16 + 2);
        let r = Rect::new(
            area.x + (area.width - w) / 2,
            area.y + (area.height - h) / 2,
            w,
            h,
        );
        frame.render_widget(Clear, r);
        let text: Vec<Line<'_>> = HELP.iter().map(|l| Line::raw(*l)).collect();
        frame.render_widget(
            Paragraph::new(text).block(Block::default().borders(Borders::ALL).title(" help ")),
            r,
        );
    }
}

fn draw_header(frame: &mut Frame<'_>, app: &App, screen: &Screen, area: Rect) {
    let level = match &app.level {
        super::source::Level::Groups => format!("by {}", app.by.join(",")),
        super::source::Level::Threads { key, .. } => format!(
            "threads of {}",
            key.iter()
                .map(|v| v.as_deref().unwrap_or("-"))
                .collect::<Vec<_>>()
                .join(" | ")
        ),
        super::source::Level::Thread { tid } => format!("thread {tid}"),
    };
    let mut flags = vec![if app.all_states {
        "all states"
    } else {
        "active states"
    }
    .to_string()];
    flags.push(format!("sort {}", app.sort.name()));
    if !app.filter.is_empty() {
        flags.push(format!("filter '{}'", app.filter));
    }
    if app.paused {
        flags.push("PAUSED".to_string());
    }
    let lines = vec![
        Line::from(vec![
            Span::styled(
                "taskscope top ",
                app.style(Style::new().add_modifier(Modifier::BOLD)),
            ),
            Span::raw(screen.scope.clone()),
        ]),
        Line::raw(format!("{level} · {} · ? help, q quit", flags.join(" · "))),
    ];
    frame.render_widget(Paragraph::new(lines), area);
}

fn draw_chart(frame: &mut Frame<'_>, app: &App, screen: &Screen, area: Rect) {
    const AXIS: usize = 7;
    let width = (area.width as usize).saturating_sub(AXIS).max(1);
    let height = (area.height as usize).saturating_sub(1).max(1);
    let (cells, scale) = chart::grid(&screen.chart, width, height);
    let mut lines = Vec::with_capacity(height + 1);
    for (y, row) in cells.iter().enumerate() {
        let label = if y == 0 {
            format!("{scale:>5.1}┤")
        } else if y + 1 == height {
            format!("{:>5}┤", "0")
        } else {
            format!("{:>5}│", "")
        };
        let mut spans = vec![Span::raw(format!("{label} "))];
        for cell in row {
            spans.push(match cell {
                None => Span::raw(" "),
                Some(i) => Span::styled(
                    chart::letter(*i).to_string(),
                    app.style(Style::new().fg(class_color(*i))),
                ),
            });
        }
        lines.push(Line::from(spans));
    }
    lines.push(Line::raw(format!(
        "{:>AXIS$}avg active threads by wait class, {}",
        "", screen.chart_step
    )));
    frame.render_widget(Paragraph::new(lines), area);
}

fn draw_table(
    frame: &mut Frame<'_>,
    app: &App,
    screen: &Screen,
    area: Rect,
    state: &mut TableState,
) {
    let mut header: Vec<Cell<'_>> = vec![Cell::from("AAS"), Cell::from("%")];
    header.extend(screen.columns.iter().map(|c| Cell::from(c.as_str())));
    let total: f64 = screen
        .rows
        .iter()
        .map(|r| r.avg)
        .sum::<f64>()
        .max(f64::MIN_POSITIVE);
    let rows: Vec<Row<'_>> = screen
        .rows
        .iter()
        .map(|r| {
            let mut cells = vec![
                Cell::from(format!("{:>6.2}", r.avg)),
                Cell::from(format!("{:>3.0}", 100.0 * r.avg / total)),
            ];
            cells.extend(
                r.key
                    .iter()
                    .map(|v| Cell::from(v.clone().unwrap_or_else(|| "-".to_string()))),
            );
            Row::new(cells)
        })
        .collect();
    let mut widths = vec![Constraint::Length(6), Constraint::Length(3)];
    widths.extend(screen.columns.iter().map(|c| match c.as_str() {
        "tid" | "tgid" | "cpu" | "blocker_tid" | "waker_tid" => Constraint::Length(8),
        "state" | "comm" => Constraint::Length(15),
        "wait_class" => Constraint::Length(10),
        _ => Constraint::Min(8),
    }));
    let title = if screen.problems.is_empty() {
        String::new()
    } else {
        format!(" {} ", screen.problems.join("; "))
    };
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(app.style(Style::new().add_modifier(Modifier::BOLD))))
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .highlight_symbol(">")
        .block(Block::default().borders(Borders::TOP).title(title));
    frame.render_stateful_widget(table, area, state);
}

fn draw_status(frame: &mut Frame<'_>, app: &App, screen: &Screen, area: Rect) {
    let text = if let Some((prompt, input)) = &app.input {
        format!("{}: {input}_", prompt.label())
    } else if let Some(message) = &app.message {
        message.clone()
    } else {
        format!(
            "{} group(s) · Enter drill down · Esc back · g group · / filter · s sort · a states",
            screen.rows.len()
        )
    };
    frame.render_widget(Paragraph::new(Line::raw(text)), area);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_lists_every_chart_letter() {
        let help = HELP.join(" ");
        for (i, (name, _)) in CLASSES.iter().enumerate() {
            let entry = format!("{} {name}", chart::letter(i));
            assert!(help.contains(&entry), "help lacks '{entry}'");
        }
        assert!(help.contains(&format!("{} OTHER", chart::OTHER)));
    }
}
