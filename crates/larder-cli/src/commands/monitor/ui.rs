//! The screen: a table of routes and, per route, sparklines of probe round
//! trips, ops/s and hit rate. `q`, Esc or Ctrl-C quits; the terminal is
//! restored on the way out, also after an error.

use std::io;
use std::sync::Mutex;
use std::time::Duration;

use ratatui::Frame;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Cell, Row, Sparkline, Table};

use super::state::{Board, RouteState};
use crate::output;

/// How often the screen is redrawn and the keyboard read.
const FRAME: Duration = Duration::from_millis(200);

/// Draw until the user quits.
pub(crate) fn run(board: &Mutex<Board>) -> io::Result<()> {
    let mut terminal = ratatui::try_init()?;
    let result = (|| loop {
        {
            let board = board
                .lock()
                .map_err(|_| io::Error::other("the monitor's state was poisoned"))?;
            terminal.draw(|frame| draw(frame, &board))?;
        }
        if event::poll(FRAME)?
            && let Event::Key(key) = event::read()?
        {
            let ctrl_c =
                key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
            if key.kind == KeyEventKind::Press
                && (matches!(key.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c)
            {
                return Ok(());
            }
        }
    })();
    let restored = ratatui::try_restore();
    result.and(restored)
}

fn draw(frame: &mut Frame<'_>, board: &Board) {
    let n = board.routes.len() as u16;
    let [title, table, charts, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(n + 3),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(
        Line::from("larder monitor").style(Style::default().add_modifier(Modifier::BOLD)),
        title,
    );
    frame.render_widget(routes_table(board), table);
    let rows = Layout::vertical(board.routes.iter().map(|_| Constraint::Length(6))).split(charts);
    for (route, area) in board.routes.iter().zip(rows.iter()) {
        sparklines(frame, route, *area);
    }
    let mut help = format!(
        "q quits · probe every {} · history {} samples",
        output::duration(board.interval),
        super::state::HISTORY
    );
    if let Some(addr) = board.prometheus {
        help.push_str(&format!(" · prometheus on http://{addr}/metrics"));
    }
    frame.render_widget(Line::from(help), footer);
}

fn status(route: &RouteState) -> Cell<'static> {
    match route.healthy {
        Some(true) => Cell::from("healthy").style(Style::default().fg(Color::Green)),
        Some(false) => Cell::from("DOWN").style(Style::default().fg(Color::Red)),
        None => Cell::from("probing"),
    }
}

fn latency(us: Option<u64>) -> String {
    us.map_or_else(|| "-".to_owned(), output::micros)
}

fn routes_table(board: &Board) -> Table<'static> {
    let header = Row::new([
        "route", "backend", "status", "rtt p50", "rtt p99", "rtt max", "hit rate", "ops/s", "keys",
        "errors",
    ])
    .style(Style::default().add_modifier(Modifier::BOLD));
    let rows: Vec<Row<'static>> = board
        .routes
        .iter()
        .map(|r| {
            Row::new(vec![
                Cell::from(r.name.clone()),
                Cell::from(r.host.clone()),
                status(r),
                Cell::from(latency(r.rtt_percentile(50))),
                Cell::from(latency(r.rtt_percentile(99))),
                Cell::from(latency(r.rtt_percentile(100))),
                Cell::from(output::percent(r.hit_rate)),
                Cell::from(
                    r.ops_per_s
                        .map_or_else(|| "-".to_owned(), |o| format!("{o:.0}")),
                ),
                Cell::from(
                    r.counters
                        .keys
                        .map_or_else(|| "-".to_owned(), |k| k.to_string()),
                ),
                Cell::from(format!("{} of {}", r.errors, r.probes)),
            ])
        })
        .collect();
    let widths = [
        Constraint::Length(10),
        Constraint::Min(18),
        Constraint::Length(8),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(9),
    ];
    Table::new(rows, widths)
        .header(header)
        .block(Block::bordered().title(" routes "))
}

fn sparklines(frame: &mut Frame<'_>, route: &RouteState, area: Rect) {
    let [rtt, ops, hits] = Layout::horizontal([Constraint::Ratio(1, 3); 3]).areas(area);
    let last = |area: Rect, data: &std::collections::VecDeque<u64>| -> Vec<u64> {
        // As many samples as fit, newest on the right.
        let width = usize::from(area.width.saturating_sub(2));
        data.iter()
            .skip(data.len().saturating_sub(width))
            .copied()
            .collect()
    };
    let chart = |title: String, data: Vec<u64>, color: Color| {
        Sparkline::default()
            .block(Block::bordered().title(title))
            .data(data)
            .style(Style::default().fg(color))
    };
    frame.render_widget(
        chart(
            format!(" {} rtt (us) ", route.name),
            last(rtt, &route.rtt_us),
            Color::Cyan,
        ),
        rtt,
    );
    frame.render_widget(
        chart(
            format!(" {} ops/s ", route.name),
            last(ops, &route.ops),
            Color::Yellow,
        ),
        ops,
    );
    frame.render_widget(
        chart(
            format!(" {} hit rate (‰) ", route.name),
            last(hits, &route.hit_permille),
            Color::Green,
        ),
        hits,
    );
}
