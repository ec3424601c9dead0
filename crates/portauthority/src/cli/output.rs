//! Printing results: aligned tables and `key: value` views for people, the API's JSON
//! documents for scripts.

use super::client::{Ctx, Output};
use portauthority_core::Timestamp;
use portauthority_core::api::{HistoryEvent, Job, PageInfo, Task};
use serde::Serialize;

/// A table whose columns fit the terminal: when stdout is a terminal narrower than the
/// table, the columns with a `drop` rank go first, highest rank first.
pub struct Table {
    columns: Vec<Column>,
    rows: Vec<Vec<String>>,
}

struct Column {
    title: &'static str,
    right: bool,
    /// `None`: always shown.
    drop: Option<u8>,
}

impl Table {
    pub fn new() -> Table {
        Table {
            columns: Vec::new(),
            rows: Vec::new(),
        }
    }

    /// A left-aligned column that is always shown.
    pub fn col(mut self, title: &'static str) -> Table {
        self.columns.push(Column {
            title,
            right: false,
            drop: None,
        });
        self
    }

    /// A right-aligned (number) column.
    pub fn num(mut self, title: &'static str, drop: Option<u8>) -> Table {
        self.columns.push(Column {
            title,
            right: true,
            drop,
        });
        self
    }

    /// A left-aligned column dropped at rank `drop` when the terminal is narrow.
    pub fn opt(mut self, title: &'static str, drop: u8) -> Table {
        self.columns.push(Column {
            title,
            right: false,
            drop: Some(drop),
        });
        self
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.columns.len());
        self.rows.push(cells);
    }

    /// The table as text, fitted to `width` characters when given.
    pub fn render(&self, width: Option<usize>) -> String {
        let mut widths: Vec<usize> = (0..self.columns.len())
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| r[i].chars().count())
                    .chain([self.columns[i].title.len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut shown: Vec<bool> = vec![true; self.columns.len()];
        if let Some(width) = width {
            let mut ranks: Vec<(u8, usize)> = self
                .columns
                .iter()
                .enumerate()
                .filter_map(|(i, c)| c.drop.map(|d| (d, i)))
                .collect();
            ranks.sort_by(|a, b| b.cmp(a));
            let total = |shown: &[bool]| -> usize {
                let cols: Vec<usize> = (0..widths.len()).filter(|&i| shown[i]).collect();
                cols.iter().map(|&i| widths[i]).sum::<usize>() + 2 * cols.len().saturating_sub(1)
            };
            for (_, i) in ranks {
                if total(&shown) <= width {
                    break;
                }
                shown[i] = false;
            }
            // Free text in the last column is cut rather than pushed past the edge.
            if let Some(last) = (0..widths.len()).rev().find(|&i| shown[i])
                && !self.columns[last].right
            {
                let over = total(&shown).saturating_sub(width);
                widths[last] = widths[last]
                    .saturating_sub(over)
                    .max(self.columns[last].title.len().max(MIN_CUT));
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.columns.iter().map(|c| c.title.to_owned()).collect();
        for cells in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in cells.iter().enumerate().filter(|(i, _)| shown[*i]) {
                if !line.is_empty() {
                    line.push_str("  ");
                }
                let cell = &cut(cell, widths[i]);
                let pad = widths[i].saturating_sub(cell.chars().count());
                if self.columns[i].right {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// Prints the table to stdout, fitted to the terminal when stdout is one.
    pub fn print(&self) {
        print!("{}", self.render(terminal_width()));
    }
}

/// The narrowest a cut column gets.
const MIN_CUT: usize = 12;

/// `text` in at most `width` characters, an ellipsis marking a cut.
fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The terminal's width, when stdout is a terminal.
pub fn terminal_width() -> Option<usize> {
    let term = console::Term::stdout();
    if !term.is_term() {
        return None;
    }
    term.size_checked().map(|(_rows, cols)| usize::from(cols))
}

/// Prints a JSON document as the API sent it (pretty, one document per command).
pub fn json<T: Serialize>(doc: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(doc)?);
    Ok(())
}

/// Prints `doc` in JSON mode, or runs `table` to print it for people.
pub fn emit<T: Serialize>(ctx: &Ctx, doc: &T, table: impl FnOnce()) -> anyhow::Result<()> {
    match ctx.output {
        Output::Json => json(doc),
        Output::Table => {
            table();
            Ok(())
        }
    }
}

/// `2026-12-01 15:44:32Z`: the API's RFC 3339 time, to the second, for a table cell.
pub fn time(t: Timestamp) -> String {
    let s = t.to_string();
    match (s.get(..10), s.get(11..19)) {
        (Some(date), Some(clock)) => format!("{date} {clock}Z"),
        _ => s,
    }
}

pub fn opt_time(t: Option<Timestamp>) -> String {
    t.map(time).unwrap_or_else(|| "-".into())
}

/// Terminal tasks as a share of all, `40%` (`-` without tasks).
pub fn percent(job: &Job) -> String {
    let c = &job.tasks;
    if c.total == 0 {
        return "-".into();
    }
    let done = c.completed + c.failed + c.cancelled;
    // Floor, so that 100% means every task has ended.
    format!("{}%", done * 100 / c.total)
}

/// The line under a list: where this page is, and how to get the next one.
/// `noun` is plural; one item drops its final `s`.
pub fn footer(info: &PageInfo, noun: &str) -> String {
    if info.total_items == 0 {
        return format!("no {noun} match");
    }
    let noun = match info.total_items {
        1 => noun.strip_suffix('s').unwrap_or(noun),
        _ => noun,
    };
    let mut s = format!(
        "page {} of {} ({} {noun})",
        info.page, info.total_pages, info.total_items
    );
    if info.page < info.total_pages {
        s.push_str(&format!("; next: --page {}", info.page + 1));
    }
    s
}

pub fn jobs_table(jobs: &[Job]) -> Table {
    let mut t = Table::new()
        .col("ID")
        .col("STATUS")
        .num("DONE", None)
        .num("TOTAL", None)
        .num("PENDING", Some(6))
        .num("RUNNING", Some(4))
        .num("COMPLETED", Some(1))
        .num("FAILED", None)
        .num("CANCELLED", Some(7))
        .opt("NAMESPACE", 3)
        .opt("TYPE", 5)
        .opt("STARTED", 2);
    for j in jobs {
        let c = &j.tasks;
        t.row(vec![
            j.id.to_string(),
            j.status.to_string(),
            percent(j),
            c.total.to_string(),
            c.pending.to_string(),
            c.in_progress.to_string(),
            c.completed.to_string(),
            c.failed.to_string(),
            c.cancelled.to_string(),
            j.namespace.clone(),
            j.job_type.clone(),
            time(j.start_time),
        ]);
    }
    t
}

pub fn tasks_table(tasks: &[Task]) -> Table {
    let mut t = Table::new()
        .col("ID")
        .col("STATUS")
        .num("ATTEMPT", Some(3))
        .num("PROGRESS", Some(2))
        .opt("TYPE", 5)
        .opt("NAMESPACE", 6)
        .opt("STARTED", 4)
        .opt("ERROR", 1);
    for task in tasks {
        t.row(vec![
            task.id.to_string(),
            task.status.to_string(),
            task.attempt.to_string(),
            progress(task.progress),
            task.task_type.clone(),
            task.namespace.clone(),
            time(task.start_time),
            task.error.as_deref().map(one_line).unwrap_or_default(),
        ]);
    }
    t
}

pub fn events_table(events: &[HistoryEvent]) -> Table {
    let mut t = Table::new()
        .num("SEQ", None)
        .col("TIME")
        .col("KIND")
        .opt("TASK", 2)
        .opt("DETAIL", 1);
    for e in events {
        t.row(vec![
            e.seq.to_string(),
            time(e.time),
            e.kind.as_str().to_owned(),
            e.task_id
                .map(|t| t.to_string())
                .unwrap_or_else(|| "-".into()),
            event_detail(e),
        ]);
    }
    t
}

/// What happened, in a few words: `pending -> in_progress (timed_out)`, a note's message,
/// a heartbeat's progress.
fn event_detail(e: &HistoryEvent) -> String {
    let mut parts = Vec::new();
    match (e.from, e.to, &e.reason) {
        (Some(from), Some(to), Some(r)) => parts.push(format!("{from} -> {to} ({})", one_line(r))),
        (Some(from), Some(to), None) => parts.push(format!("{from} -> {to}")),
        (_, _, Some(r)) => parts.push(format!("({})", one_line(r))),
        _ => {}
    }
    if e.progress.is_some() {
        parts.push(format!("progress {}", progress(e.progress)));
    }
    if let Some(m) = &e.message {
        parts.push(one_line(m));
    }
    if let Some(d) = &e.data {
        parts.push(d.get().to_owned());
    }
    parts.join(", ")
}

/// `3/10`, `3` (no total), `-`.
pub fn progress(p: Option<portauthority_core::api::Progress>) -> String {
    match p {
        None => "-".into(),
        Some(p) => match p.total {
            Some(total) => format!("{}/{total}", p.current),
            None => p.current.to_string(),
        },
    }
}

/// Free text in a single table cell.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `key: value` lines, the keys aligned.
pub fn fields(pairs: &[(&str, String)]) {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    for (k, v) in pairs {
        println!("{:<width$} {v}", format!("{k}:"));
    }
}

pub fn job_view(j: &Job) {
    let c = &j.tasks;
    fields(&[
        ("id", j.id.to_string()),
        ("status", j.status.to_string()),
        ("type", j.job_type.clone()),
        ("namespace", j.namespace.clone()),
        (
            "correlation_id",
            j.correlation_id.clone().unwrap_or_else(|| "-".into()),
        ),
        (
            "tasks",
            format!(
                "{} total: {} pending, {} running, {} completed, {} failed, {} cancelled ({} done)",
                c.total,
                c.pending,
                c.in_progress,
                c.completed,
                c.failed,
                c.cancelled,
                percent(j)
            ),
        ),
        ("started", time(j.start_time)),
        ("ended", opt_time(j.end_time)),
        ("auto_complete", j.auto_complete.to_string()),
        (
            "timeout",
            j.timeout_seconds
                .map(|s| format!("{s}s"))
                .unwrap_or_else(|| "-".into()),
        ),
        ("meta", j.meta.get().to_owned()),
        ("updated", time(j.updated_at)),
    ]);
}

pub fn task_view(t: &Task) {
    fields(&[
        ("id", t.id.to_string()),
        ("job", t.job_id.to_string()),
        ("status", t.status.to_string()),
        ("type", t.task_type.clone()),
        ("namespace", t.namespace.clone()),
        ("attempt", t.attempt.to_string()),
        ("progress", progress(t.progress)),
        ("error", t.error.clone().unwrap_or_else(|| "-".into())),
        ("started", time(t.start_time)),
        ("ended", opt_time(t.end_time)),
        (
            "timeout",
            t.timeout_seconds
                .map(|s| format!("{s}s"))
                .unwrap_or_else(|| "-".into()),
        ),
        ("meta", t.meta.get().to_owned()),
        ("updated", time(t.updated_at)),
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut t = Table::new().col("ID").num("N", None).opt("NOTE", 1);
        t.row(vec!["a".into(), "1".into(), "first".into()]);
        t.row(vec!["bbb".into(), "22".into(), "second note".into()]);
        t
    }

    #[test]
    fn tables_align_text_left_and_numbers_right() {
        assert_eq!(
            sample().render(None),
            "ID    N  NOTE\n\
             a     1  first\n\
             bbb  22  second note\n"
        );
    }

    #[test]
    fn free_text_in_the_last_column_is_cut_to_fit() {
        let mut t = Table::new().col("ID").col("DETAIL");
        t.row(vec!["a".into(), "a rather long line of free text".into()]);
        assert_eq!(t.render(Some(18)), "ID  DETAIL\na   a rather long…\n");
    }

    #[test]
    fn a_narrow_terminal_drops_the_optional_columns_first() {
        assert_eq!(sample().render(Some(10)), "ID    N\na     1\nbbb  22\n");
        // Wide enough: nothing dropped.
        assert_eq!(sample().render(Some(80)), sample().render(None));
    }
}
