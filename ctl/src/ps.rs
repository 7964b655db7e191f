//! `ps [-a] [-q] [--no-trunc] [-f KEY=VALUE]... [--format FORMAT]`, as docker's: the default
//! table (CONTAINER ID, IMAGE, COMMAND, CREATED, STATUS, PORTS, NAMES), `--format` with the
//! fields docker documents for ps (`{{.ID}}`, `{{.Names}}`, ... as a Go template, `table ...`
//! for a table with headers, `json` for one object per line), and `-f` filters: id, name,
//! status, exited, ancestor, volume, network, label (the same key more than once: any of
//! them; different keys: all of them).

use std::io::Write;

use anyhow::{bail, Result};
use serde_json::{json, Map, Value};

use crate::containers::{Container, Status};
use crate::ctx::Ctx;
use crate::util;

pub struct Options<'a> {
    pub all: bool,
    pub quiet: bool,
    pub no_trunc: bool,
    pub filters: &'a [String],
    pub format: Option<&'a str>,
}

/// docker's header for a ps field.
fn header(field: &str) -> String {
    match field {
        "ID" => "CONTAINER ID".into(),
        "RunningFor" => "CREATED".into(),
        "CreatedAt" => "CREATED AT".into(),
        "LocalVolumes" => "LOCAL VOLUMES".into(),
        other => other.to_uppercase(),
    }
}

fn state_name(st: &Status) -> &'static str {
    match st {
        Status::Running => "running",
        Status::Paused => "paused",
        Status::Created => "created",
        Status::Exited(..) => "exited",
        Status::Restarting => "restarting",
        Status::Unknown => "dead",
    }
}

/// One container's row: every ps field as docker formats it.
fn row(ctx: &Ctx, c: &Container, st: &Status, no_trunc: bool) -> Map<String, Value> {
    let up = util::human_duration(util::now().saturating_sub(c.started.max(c.created)));
    let health = health_of(ctx, c, st);
    let suffix = match health.as_str() {
        "" | "none" => String::new(),
        "starting" => " (health: starting)".into(),
        h => format!(" ({h})"),
    };
    let status = match st {
        Status::Running => format!("Up {up}{suffix}"),
        Status::Paused => format!("Up {up} (Paused)"),
        Status::Created => "Created".into(),
        Status::Exited(code, t) => format!("Exited ({code}) {}", util::ago(*t)),
        Status::Restarting => "Restarting".into(),
        Status::Unknown => "Unknown".into(),
    };
    let mut cmd = format!("\"{}\"", c.command.join(" "));
    if !no_trunc && cmd.chars().count() > 22 {
        cmd = format!("{}…\"", cmd.chars().take(20).collect::<String>());
    }
    let image = match image::Reference::parse(&c.image) {
        Ok(r) => match r.tag.as_deref() {
            Some("latest") | None => r.familiar_repository(),
            Some(t) => format!("{}:{t}", r.familiar_repository()),
        },
        Err(_) => c.image.clone(),
    };
    let spec: Value = std::fs::read(ctx.bundle_dir(&c.id).join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let network = crate::netns::mode(c, &spec);
    let ports = match crate::endpoint::load(ctx, &c.id) {
        Some(e) if st.is_running() => {
            crate::ports::ps_column(&e.ports, &crate::netns::exposed_ports(ctx, &c.image_id))
        }
        _ => String::new(),
    };
    let mounts: Vec<String> = c.volumes.iter().map(|v| v.name.clone()).collect();
    let created = util::rfc3339(c.created);
    let mut m = Map::new();
    let id = if no_trunc {
        c.id.clone()
    } else {
        c.id[..12].to_string()
    };
    for (k, v) in [
        ("ID", id),
        ("Image", image),
        ("Command", cmd),
        (
            "CreatedAt",
            format!("{} {} +0000 UTC", &created[..10], &created[11..19]),
        ),
        ("RunningFor", util::ago(c.created)),
        ("Ports", ports),
        ("Status", status),
        ("State", state_name(st).to_string()),
        ("Names", c.name.clone()),
        ("Labels", String::new()),
        ("Mounts", mounts.join(",")),
        ("Networks", network),
        ("Size", "0B".to_string()),
        ("LocalVolumes", c.volumes.len().to_string()),
        ("Health", health),
    ] {
        m.insert(k.to_string(), json!(v));
    }
    m
}

/// The health ps shows and filters on: starting, healthy, unhealthy, or none.
fn health_of(ctx: &Ctx, c: &Container, st: &Status) -> String {
    if c.health.is_none() || !matches!(st, Status::Running | Status::Paused) {
        return "none".into();
    }
    crate::health::read(ctx, &c.id).map_or_else(|| "starting".into(), |h| h.status)
}

/// Whether `c` passes every filter key (any value of a key).
fn passes(
    c: &Container,
    st: &Status,
    row: &Map<String, Value>,
    filters: &[(String, String)],
) -> Result<bool> {
    let mut keys: Vec<&str> = filters.iter().map(|(k, _)| k.as_str()).collect();
    keys.dedup();
    for key in keys {
        let any = filters
            .iter()
            .filter(|(k, _)| k == key)
            .any(|(_, v)| match key {
                "id" => c.id.starts_with(v.as_str()),
                "name" => c.name.contains(v.as_str()),
                "status" => state_name(st) == v,
                "exited" => matches!(st, Status::Exited(code, _) if code.to_string() == *v),
                "ancestor" => {
                    c.image_id
                        .trim_start_matches("sha256:")
                        .starts_with(v.trim_start_matches("sha256:"))
                        || image::Reference::parse(v).is_ok_and(|r| r.to_string() == c.image)
                }
                "volume" => c.volumes.iter().any(|x| x.name == *v),
                "network" => row["Networks"] == *v,
                "health" => row["Health"] == *v,
                // No labels on berthctl's containers yet.
                _ => false,
            });
        if !any {
            return Ok(false);
        }
    }
    Ok(true)
}

fn parse_filters(raw: &[String]) -> Result<Vec<(String, String)>> {
    raw.iter()
        .map(|f| {
            let (k, v) = f.split_once('=').ok_or_else(|| {
                anyhow::anyhow!("bad format of filter (expected name=value): {f}")
            })?;
            if !matches!(
                k,
                "id" | "name"
                    | "status"
                    | "exited"
                    | "ancestor"
                    | "volume"
                    | "network"
                    | "label"
                    | "health"
            ) {
                bail!("invalid filter '{k}'");
            }
            if k == "status"
                && !matches!(
                    v,
                    "created"
                        | "restarting"
                        | "running"
                        | "removing"
                        | "paused"
                        | "exited"
                        | "dead"
                )
            {
                bail!("invalid filter 'status={v}'");
            }
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
}

pub fn ps(ctx: &Ctx, o: &Options<'_>) -> Result<i32> {
    let filters = parse_filters(o.filters)?;
    let states = ctx.runtime_states();
    let mut rows = Vec::new();
    for c in ctx.list()? {
        let st = ctx.status_with(&c, states.get(&c.id).map(String::as_str));
        // A filter on status or exit code looks at stopped containers too, as docker's.
        let wants_stopped = filters.iter().any(|(k, _)| k == "status" || k == "exited");
        if !o.all && !wants_stopped && !st.is_running() {
            continue;
        }
        let r = row(ctx, &c, &st, o.no_trunc);
        if passes(&c, &st, &r, &filters)? {
            rows.push(Value::Object(r));
        }
    }
    let mut out = std::io::stdout().lock();
    if o.quiet {
        for r in &rows {
            writeln!(out, "{}", r["ID"].as_str().unwrap_or(""))?;
        }
        return Ok(0);
    }
    match o.format {
        Some("json") => {
            for r in &rows {
                writeln!(out, "{r}")?;
            }
        }
        Some(f) if f.starts_with("table") => {
            let f = f.trim_start_matches("table").trim_start();
            let f = if f.is_empty() {
                "{{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
            } else {
                f
            };
            let cols: Vec<&str> = f.split("\\t").flat_map(|c| c.split('\t')).collect();
            let heads: Vec<String> = cols.iter().map(|c| head_of(c)).collect();
            let heads: Vec<&str> = heads.iter().map(String::as_str).collect();
            let mut table = Vec::new();
            for r in &rows {
                table.push(
                    cols.iter()
                        .map(|c| util::template(c, r).map_err(anyhow::Error::msg))
                        .collect::<Result<Vec<_>>>()?,
                );
            }
            crate::table_n(&mut out, &heads, table)?;
        }
        Some(f) => {
            let f = f.replace("\\t", "\t").replace("\\n", "\n");
            for r in &rows {
                writeln!(
                    out,
                    "{}",
                    util::template(&f, r).map_err(anyhow::Error::msg)?
                )?;
            }
        }
        None => {
            let cols = [
                "ID",
                "Image",
                "Command",
                "RunningFor",
                "Status",
                "Ports",
                "Names",
            ];
            let heads: Vec<String> = cols.iter().map(|c| header(c)).collect();
            let heads: Vec<&str> = heads.iter().map(String::as_str).collect();
            let table = rows
                .iter()
                .map(|r| {
                    cols.iter()
                        .map(|c| r[*c].as_str().unwrap_or("").to_string())
                        .collect()
                })
                .collect();
            crate::table_n(&mut out, &heads, table)?;
        }
    }
    Ok(0)
}

/// A table column's header: its template with each `{{.Field}}` as docker names the field.
fn head_of(col: &str) -> String {
    let mut out = String::new();
    let mut rest = col;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(j) = after.find("}}") else {
            out.push_str(&rest[i..]);
            return out;
        };
        let field = after[..j]
            .trim()
            .trim_start_matches("json ")
            .trim_start_matches('.');
        out.push_str(&header(field));
        rest = &after[j + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_filters_as_docker() {
        assert_eq!(head_of("{{.ID}}"), "CONTAINER ID");
        assert_eq!(head_of("{{.Names}}: {{.RunningFor}}"), "NAMES: CREATED");
        assert!(parse_filters(&["status=up".into()]).is_err());
        assert!(parse_filters(&["colour=red".into()]).is_err());
        assert!(parse_filters(&["nameweb".into()]).is_err());
        assert_eq!(
            parse_filters(&["exited=3".into()]).unwrap(),
            [("exited".to_string(), "3".to_string())]
        );
    }
}
