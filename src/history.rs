//! `entra-sync team`: the mapped team now, as it stood at a moment, or who joined and left in
//! a period, reconstructed from the audit log. Reads the database only (no Graph, no write
//! lock), so it works while the service runs. The SQL is in `store::history`.

// The listing is the command's output.
#![allow(clippy::print_stdout)]

use std::path::Path;

use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, Time};

use crate::config::load_config;
use crate::exit::CliError;
use crate::store::{self, Store, TeamChange, TeamMember};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Csv,
    Json,
}

/// What `team` was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// The team now, or at a moment.
    Members { at: Option<String> },
    /// Joins and leaves from `since` to `until` (default: now).
    Changes {
        since: String,
        until: Option<String>,
    },
}

/// Which end of a day a bare date stands for.
#[derive(Debug, Clone, Copy)]
enum DayEnd {
    Start,
    End,
}

/// Parses WHEN: an RFC 3339 time (any offset, turned into the database's UTC seconds) or a
/// date, which means the start or the end of that day in UTC.
fn parse_when(flag: &str, text: &str, end: DayEnd) -> Result<String, CliError> {
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(store::timestamp(at));
    }
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    match Date::parse(text, &date_format) {
        Ok(date) => {
            let time = match end {
                DayEnd::Start => Time::MIDNIGHT,
                DayEnd::End => Time::from_hms(23, 59, 59).unwrap_or(Time::MIDNIGHT),
            };
            Ok(store::timestamp(date.with_time(time).assume_utc()))
        }
        Err(_) => Err(CliError::Failed(format!(
            "team: {flag} \"{text}\" is neither a date (2026-03-01) nor an RFC 3339 time \
             (2026-03-01T09:30:00Z)"
        ))),
    }
}

pub fn show(config_path: &Path, query: Query, format: Format) -> Result<(), CliError> {
    let config = load_config(config_path)?;
    let store = Store::open_read_only(&config.sync.database)?;
    let Some(first) = store.first_pass_at()? else {
        return Err(CliError::Failed(format!(
            "team: {} holds no pass yet, so there is no team history; run `entra-sync sync` first",
            config.sync.database.display()
        )));
    };
    match query {
        Query::Members { at: None } => {
            print_members(&store.team_now()?, &config.mapping.team, "now", format)
        }
        Query::Members { at: Some(when) } => {
            let at = parse_when("--at", &when, DayEnd::End)?;
            if at < first {
                return Err(CliError::Failed(format!(
                    "team: --at {at} is earlier than the first pass ({first}): the audit log \
                     starts there, so the team before it is unknown"
                )));
            }
            print_members(&store.team_at(&at)?, &config.mapping.team, &at, format)
        }
        Query::Changes { since, until } => {
            let since = parse_when("--since", &since, DayEnd::Start)?;
            let until = match until {
                Some(until) => parse_when("--until", &until, DayEnd::End)?,
                None => store::now(),
            };
            if until < since {
                return Err(CliError::Failed(format!(
                    "team: --until {until} is before --since {since}"
                )));
            }
            print_changes(&store.team_changes(&since, &until)?, &since, &until, format)
        }
    }
}

fn print_members(
    members: &[TeamMember],
    team: &str,
    at: &str,
    format: Format,
) -> Result<(), CliError> {
    match format {
        Format::Json => print_json(members),
        Format::Csv => {
            println!("user_principal_name,display_name,id,joined_at,team");
            for m in members {
                println!(
                    "{}",
                    csv_line(&[
                        m.user_principal_name.as_deref().unwrap_or(""),
                        m.display_name.as_deref().unwrap_or(""),
                        &m.id,
                        &m.joined_at,
                        m.team.as_deref().unwrap_or(""),
                    ])
                );
            }
            Ok(())
        }
        Format::Text => {
            // The team's name as the audit recorded it (a renamed team shows its old name).
            let name = members
                .first()
                .and_then(|m| m.team.as_deref())
                .unwrap_or(team);
            println!("team \"{name}\" at {at}: {} members", members.len());
            let rows: Vec<[&str; 4]> = members
                .iter()
                .map(|m| {
                    [
                        m.user_principal_name.as_deref().unwrap_or("-"),
                        m.display_name.as_deref().unwrap_or("-"),
                        m.id.as_str(),
                        m.joined_at.as_str(),
                    ]
                })
                .collect();
            print_table(&["UPN", "NAME", "ID", "JOINED"], &rows);
            Ok(())
        }
    }
}

fn print_changes(
    changes: &[TeamChange],
    since: &str,
    until: &str,
    format: Format,
) -> Result<(), CliError> {
    match format {
        Format::Json => print_json(changes),
        Format::Csv => {
            println!("at,change,user_principal_name,display_name,id,team,reason");
            for c in changes {
                println!(
                    "{}",
                    csv_line(&[
                        &c.at,
                        &c.change,
                        c.user_principal_name.as_deref().unwrap_or(""),
                        c.display_name.as_deref().unwrap_or(""),
                        &c.id,
                        c.team.as_deref().unwrap_or(""),
                        &c.reason,
                    ])
                );
            }
            Ok(())
        }
        Format::Text => {
            println!(
                "team changes from {since} to {until}: {} joined, {} left",
                changes.iter().filter(|c| c.change == "joined").count(),
                changes.iter().filter(|c| c.change == "left").count()
            );
            let rows: Vec<[&str; 5]> = changes
                .iter()
                .map(|c| {
                    [
                        c.at.as_str(),
                        c.change.as_str(),
                        c.user_principal_name.as_deref().unwrap_or("-"),
                        c.display_name.as_deref().unwrap_or("-"),
                        c.reason.as_str(),
                    ]
                })
                .collect();
            print_table(&["AT", "CHANGE", "UPN", "NAME", "WHY"], &rows);
            Ok(())
        }
    }
}

fn print_json<T: serde::Serialize>(rows: &[T]) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(rows).map_err(|e| CliError::Failed(e.to_string()))?;
    println!("{text}");
    Ok(())
}

/// Columns padded to their widest cell; the last one is not padded.
fn print_table<const N: usize>(header: &[&str; N], rows: &[[&str; N]]) {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 < N {
                line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            } else {
                line.push_str(cell);
            }
        }
        println!("{}", line.trim_end());
    }
}

/// One RFC 4180 line: fields with a comma, quote or line break are quoted, quotes doubled.
/// Hand-written because it is these few lines; a CSV crate would be a dependency for them.
fn csv_line(fields: &[&str]) -> String {
    fields
        .iter()
        .map(|f| {
            if f.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", f.replace('"', "\"\""))
            } else {
                (*f).to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn when_is_a_time_or_a_day() {
        let at = |t| parse_when("--at", t, DayEnd::End).unwrap();
        assert_eq!(at("2026-03-01"), "2026-03-01T23:59:59Z");
        assert_eq!(
            parse_when("--since", "2026-03-01", DayEnd::Start).unwrap(),
            "2026-03-01T00:00:00Z"
        );
        assert_eq!(at("2026-03-01T09:30:00Z"), "2026-03-01T09:30:00Z");
        assert_eq!(at("2026-03-01T10:30:00.75+01:00"), "2026-03-01T09:30:00Z");
        let err = parse_when("--at", "March", DayEnd::End).unwrap_err();
        assert!(err.to_string().contains("--at \"March\""), "{err}");
    }

    #[test]
    fn csv_quotes_only_what_needs_it() {
        assert_eq!(
            csv_line(&["a", "b,c", "say \"hi\"", ""]),
            "a,\"b,c\",\"say \"\"hi\"\"\","
        );
    }
}
