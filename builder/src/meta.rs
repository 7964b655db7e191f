//! The instructions that change only the image config (no layer): ENV, LABEL, ARG, WORKDIR,
//! USER, EXPOSE, VOLUME, STOPSIGNAL, CMD, ENTRYPOINT, SHELL, HEALTHCHECK, ONBUILD and
//! MAINTAINER, applied to a stage's state as Docker's builder does:
//! - values are expanded with the variables in scope: the stage's ENV, then its ARGs (a
//!   global ARG only once redeclared; `--build-arg` over the default; the proxy ARGs without a
//!   declaration); every pair of one ENV or LABEL line sees the values from before the line;
//! - WORKDIR relative to the current one; EXPOSE `80` is `80/tcp`, ranges expand;
//! - shell forms run through SHELL (`/bin/sh -c` by default);
//! - ENTRYPOINT clears a CMD that the stage did not set itself;
//! - HEALTHCHECK `NONE`, or `[flags] CMD ...` with Go durations (`1m30s`).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::dockerfile::{Args, Instruction, Keyword};
use crate::plan::arg_decls;
use crate::words::Lexer;
use crate::ParseError;

/// ARGs every build has without declaring them (Docker's predefined proxy ARGs).
pub const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// A stage being built: its image config (the `config` object of the OCI image config) and
/// what is in scope.
#[derive(Clone, Debug)]
pub struct Stage {
    pub config: Map<String, Value>,
    /// ARGs declared in this stage: name and value.
    pub args: Vec<(String, Option<String>)>,
    /// Whether this stage set CMD itself.
    pub cmd_set: bool,
    pub author: Option<String>,
}

impl Stage {
    /// A stage on a base image's config.
    pub fn new(base_config: Map<String, Value>) -> Stage {
        Stage {
            config: base_config,
            args: Vec::new(),
            cmd_set: false,
            author: None,
        }
    }

    /// A string field of the config (`WorkingDir`, `User`, ...); "" when unset.
    pub fn config_str(&self, key: &str) -> &str {
        self.config.get(key).and_then(Value::as_str).unwrap_or("")
    }

    /// The environment as `KEY=VALUE` strings.
    pub fn env(&self) -> Vec<String> {
        self.config
            .get("Env")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    }

    /// A variable's value for expansion: ENV first, then the stage's ARGs, then the proxy ARGs
    /// given as build args.
    pub fn lookup(&self, name: &str, build_args: &BTreeMap<String, String>) -> Option<String> {
        self.env()
            .iter()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=').map(str::to_string))
            .or_else(|| {
                self.args
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .and_then(|(_, v)| v.clone())
            })
            .or_else(|| {
                PROXY_ARGS
                    .contains(&name)
                    .then(|| build_args.get(name).cloned())
                    .flatten()
            })
    }

    /// SHELL, or `/bin/sh -c`.
    pub fn shell(&self) -> Vec<String> {
        self.config
            .get("Shell")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }
}

/// Apply a metadata instruction to `stage`. `globals` are the plan's global ARGs (a
/// redeclared one without a default takes its value). Returns false for instructions that
/// make a layer (RUN, COPY, ADD), which it leaves alone.
pub fn apply(
    stage: &mut Stage,
    ins: &Instruction,
    lexer: &Lexer,
    build_args: &BTreeMap<String, String>,
    globals: &[(String, Option<String>)],
) -> Result<bool, ParseError> {
    let err = |m: String| ParseError::new(ins.line, format!("{}: {m}", ins.keyword.name()));
    let snapshot = stage.clone();
    let lookup = |n: &str| snapshot.lookup(n, build_args);
    let word = |w: &str| lexer.word(w, &lookup).map_err(err);
    let text = match &ins.args {
        Args::Shell(s) => s.clone(),
        Args::Exec(_) => String::new(),
    };
    match ins.keyword {
        Keyword::Run | Keyword::Copy | Keyword::Add | Keyword::From => return Ok(false),
        Keyword::Env | Keyword::Label => {
            let pairs = pairs(&text, lexer, ins.keyword).map_err(err)?;
            for (k, v) in pairs {
                let k = word(&k)?;
                let v = word(&v)?;
                if ins.keyword == Keyword::Env {
                    let env = stage.config.entry("Env").or_insert_with(|| json!([]));
                    let arr = env
                        .as_array_mut()
                        .ok_or_else(|| err("Env is not a list".into()))?;
                    arr.retain(|e| e.as_str().is_none_or(|s| s.split('=').next() != Some(&k)));
                    arr.push(json!(format!("{k}={v}")));
                } else {
                    let labels = stage.config.entry("Labels").or_insert_with(|| json!({}));
                    if !labels.is_object() {
                        *labels = json!({});
                    }
                    labels[&k] = json!(v);
                }
            }
        }
        Keyword::Arg => {
            for (name, default) in arg_decls(ins, lexer)? {
                let value = build_args.get(&name).cloned().or(default).or_else(|| {
                    globals
                        .iter()
                        .find(|(g, _)| *g == name)
                        .and_then(|(_, v)| v.clone())
                });
                stage.args.push((name, value));
            }
        }
        Keyword::Workdir => {
            let dir = word(text.trim())?;
            let cur = stage
                .config
                .get("WorkingDir")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .unwrap_or("/")
                .to_string();
            let joined = if dir.starts_with('/') {
                dir
            } else {
                format!("{cur}/{dir}")
            };
            stage.config.insert(
                "WorkingDir".into(),
                json!(format!("/{}", crate::clean(&joined))),
            );
        }
        Keyword::User => {
            stage
                .config
                .insert("User".into(), json!(word(text.trim())?));
        }
        Keyword::Stopsignal => {
            stage
                .config
                .insert("StopSignal".into(), json!(word(text.trim())?));
        }
        Keyword::Expose => {
            let ports = stage
                .config
                .entry("ExposedPorts")
                .or_insert_with(|| json!({}));
            for w in lexer.words(&text, &lookup).map_err(err)? {
                for p in expose(&w).map_err(err)? {
                    ports[&p] = json!({});
                }
            }
        }
        Keyword::Volume => {
            let vols = match &ins.args {
                Args::Exec(v) => v.clone(),
                Args::Shell(s) => lexer.words(s, &lookup).map_err(err)?,
            };
            let map = stage.config.entry("Volumes").or_insert_with(|| json!({}));
            for v in vols {
                if v.trim().is_empty() {
                    return Err(err("VOLUME specified can not be an empty string".into()));
                }
                map[&v] = json!({});
            }
        }
        Keyword::Cmd | Keyword::Entrypoint => {
            let argv = match &ins.args {
                Args::Exec(v) => v.clone(),
                Args::Shell(s) => {
                    let mut a = stage.shell();
                    a.push(s.clone());
                    a
                }
            };
            if ins.keyword == Keyword::Cmd {
                stage.config.insert("Cmd".into(), json!(argv));
                stage.cmd_set = true;
            } else {
                stage.config.insert("Entrypoint".into(), json!(argv));
                if !stage.cmd_set {
                    stage.config.remove("Cmd");
                }
            }
        }
        Keyword::Shell => {
            let Args::Exec(v) = &ins.args else {
                return Err(err("SHELL requires the arguments to be in JSON form".into()));
            };
            stage.config.insert("Shell".into(), json!(v));
        }
        Keyword::Healthcheck => {
            let hc = healthcheck(ins).map_err(err)?;
            stage.config.insert("Healthcheck".into(), hc);
        }
        Keyword::Onbuild => {
            let inner = ins.original.trim_start()[7..].trim_start();
            let on = stage.config.entry("OnBuild").or_insert_with(|| json!([]));
            if let Some(a) = on.as_array_mut() {
                a.push(json!(inner));
            }
        }
        Keyword::Maintainer => stage.author = Some(text.trim().to_string()),
    }
    Ok(true)
}

/// `k=v` pairs of ENV or LABEL (raw: expanded by the caller), or ENV's old `ENV k v` form.
fn pairs(text: &str, lexer: &Lexer, kw: Keyword) -> Result<Vec<(String, String)>, String> {
    let words = lexer.raw_words(text)?;
    let Some(first) = words.first() else {
        return Err("requires at least one argument".into());
    };
    if kw == Keyword::Env && !first.contains('=') {
        // `ENV name value with spaces`: one pair, the rest of the line as the value.
        let rest = text.trim_start()[first.len()..].trim();
        if rest.is_empty() {
            return Err(format!("ENV {first} has no value"));
        }
        return Ok(vec![(first.clone(), rest.to_string())]);
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some(("", _)) => Err(format!("{} names can not be blank", kw.name())),
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => Err(format!(
                "Syntax error - can't find = in {w:?}. Must be of the form: name=value"
            )),
        })
        .collect()
}

/// EXPOSE's `80`, `80/udp`, `8000-8002/tcp` as `port/proto` keys.
fn expose(w: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = w.split_once('/').unwrap_or((w, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    let num = |s: &str| {
        s.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("invalid containerPort: {s}"))
    };
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => {
            let p = num(ports)?;
            (p, p)
        }
    };
    if hi < lo {
        return Err(format!("invalid range: {ports}"));
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

/// A Go duration (`300ms`, `1m30s`, `1.5h`, `0`) in nanoseconds.
pub fn go_duration(s: &str) -> Result<u64, String> {
    if s == "0" {
        return Ok(0);
    }
    let bad = || format!("time: invalid duration {s:?}");
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..n].parse().map_err(|_| bad())?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        total += value * unit;
        rest = &rest[u..];
    }
    Ok(total.round() as u64)
}

fn healthcheck(ins: &Instruction) -> Result<Value, String> {
    let text = match &ins.args {
        Args::Shell(s) => s.trim().to_string(),
        Args::Exec(_) => return Err("requires NONE or [OPTIONS] CMD ...".into()),
    };
    let (word, rest) = text
        .split_once(char::is_whitespace)
        .map(|(w, r)| (w, r.trim()))
        .unwrap_or((text.as_str(), ""));
    if word.eq_ignore_ascii_case("none") {
        if !rest.is_empty() || !ins.flags.is_empty() {
            return Err("HEALTHCHECK NONE takes no arguments".into());
        }
        return Ok(json!({"Test": ["NONE"]}));
    }
    if !word.eq_ignore_ascii_case("cmd") {
        return Err(format!("unknown type {word:?} in HEALTHCHECK (try CMD)"));
    }
    let test = match serde_json::from_str::<Vec<String>>(rest) {
        Ok(v) if rest.starts_with('[') => {
            let mut t = vec!["CMD".to_string()];
            t.extend(v);
            t
        }
        _ if rest.is_empty() => return Err("missing command after HEALTHCHECK CMD".into()),
        _ => vec!["CMD-SHELL".to_string(), rest.to_string()],
    };
    let mut hc = json!({ "Test": test });
    for (flag, key) in [
        ("interval", "Interval"),
        ("timeout", "Timeout"),
        ("start-period", "StartPeriod"),
        ("start-interval", "StartInterval"),
    ] {
        if let Some(v) = ins.flag(flag).and_then(|f| f.value.as_deref()) {
            let ns = go_duration(v)?;
            if ns != 0 && ns < 1_000_000 {
                return Err(format!("{key} {v:?} cannot be less than 1ms"));
            }
            hc[key] = json!(ns);
        }
    }
    if let Some(v) = ins.flag("retries").and_then(|f| f.value.as_deref()) {
        let n: i64 = v.parse().map_err(|_| format!("invalid retries {v:?}"))?;
        if n < 0 {
            return Err("--retries cannot be negative".into());
        }
        hc["Retries"] = json!(n);
    }
    Ok(hc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::parse;

    /// The config after the instructions of a one-stage Dockerfile on an empty base.
    fn run(text: &str, args: &[(&str, &str)]) -> Result<Stage, String> {
        let df = parse(&format!("FROM scratch\n{text}")).map_err(|e| e.to_string())?;
        let args: BTreeMap<String, String> = args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lexer = Lexer::new(df.escape);
        let mut st = Stage::new(Map::new());
        for ins in &df.instructions[1..] {
            apply(&mut st, ins, &lexer, &args, &[]).map_err(|e| e.to_string())?;
        }
        Ok(st)
    }

    #[test]
    fn env_and_labels_see_the_values_from_before_their_line() {
        let st = run(
            "ENV A=1\nENV A=2 B=$A\nENV C long value  here\nLABEL \"x y\"=\"$B\" z=${A}\nENV B=3",
            &[],
        )
        .unwrap();
        assert_eq!(st.env(), ["A=2", "C=long value  here", "B=3"]);
        assert_eq!(st.config["Labels"], json!({"x y": "1", "z": "2"}));
        assert_eq!(
            run("ENV A=1 B", &[]).unwrap_err(),
            "Dockerfile:2: ENV: Syntax error - can't find = in \"B\". Must be of the form: name=value"
        );
    }

    #[test]
    fn args_scope_and_build_args() {
        let st = run(
            "ARG V=def\nARG W\nENV X=$V-$W-${HTTP_PROXY}\n",
            &[("W", "w"), ("HTTP_PROXY", "p")],
        )
        .unwrap();
        assert_eq!(st.env(), ["X=def-w-p"]);
        // ENV wins over an ARG of the same name.
        let st = run("ARG V=arg\nENV V=env\nENV Y=$V\n", &[]).unwrap();
        assert!(st.env().contains(&"Y=env".to_string()));
        // An undeclared build arg (not a proxy one) is not in scope.
        let st = run("ENV Z=${Q:-none}\n", &[("Q", "q")]).unwrap();
        assert_eq!(st.env(), ["Z=none"]);
    }

    #[test]
    fn workdir_user_expose_volume_signal() {
        let st = run(
            "ENV D=app\nWORKDIR /srv\nWORKDIR $D/../data\nUSER 1000:1000\nEXPOSE 80 53/udp 8000-8002/TCP\n\
             VOLUME /a \"/b c\"\nVOLUME [\"/d\"]\nSTOPSIGNAL SIGINT\n",
            &[],
        )
        .unwrap();
        assert_eq!(st.config["WorkingDir"], "/srv/data");
        assert_eq!(st.config["User"], "1000:1000");
        let ports: Vec<&String> = st.config["ExposedPorts"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(
            ports,
            ["53/udp", "80/tcp", "8000/tcp", "8001/tcp", "8002/tcp"]
        );
        let vols: Vec<&String> = st.config["Volumes"].as_object().unwrap().keys().collect();
        assert_eq!(vols, ["/a", "/b c", "/d"]);
        assert_eq!(st.config["StopSignal"], "SIGINT");
        assert_eq!(
            run("EXPOSE 0", &[]).unwrap_err(),
            "Dockerfile:2: EXPOSE: invalid containerPort: 0"
        );
        assert_eq!(
            run("EXPOSE 80/xyz", &[]).unwrap_err(),
            "Dockerfile:2: EXPOSE: invalid proto: xyz"
        );
    }

    #[test]
    fn cmd_entrypoint_shell() {
        let st = run(
            "SHELL [\"/bin/bash\", \"-lc\"]\nCMD echo hi\nENTRYPOINT [\"tini\", \"--\"]\n",
            &[],
        )
        .unwrap();
        assert_eq!(st.config["Cmd"], json!(["/bin/bash", "-lc", "echo hi"]));
        assert_eq!(st.config["Entrypoint"], json!(["tini", "--"]));
        // An inherited CMD goes when the stage sets ENTRYPOINT.
        let mut st = Stage::new(json!({"Cmd": ["sh"]}).as_object().unwrap().clone());
        let df = parse("FROM x\nENTRYPOINT top\n").unwrap();
        apply(
            &mut st,
            &df.instructions[1],
            &Lexer::default(),
            &BTreeMap::new(),
            &[],
        )
        .unwrap();
        assert_eq!(st.config.get("Cmd"), None);
        assert_eq!(st.config["Entrypoint"], json!(["/bin/sh", "-c", "top"]));
    }

    #[test]
    fn healthcheck_onbuild_maintainer() {
        let st = run(
            "HEALTHCHECK --interval=1m30s --timeout=500ms --retries=3 CMD curl -f http://localhost/\n\
             ONBUILD RUN make\nMAINTAINER me <me@x>\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            st.config["Healthcheck"],
            json!({"Test": ["CMD-SHELL", "curl -f http://localhost/"], "Interval": 90_000_000_000u64,
                   "Timeout": 500_000_000u64, "Retries": 3})
        );
        assert_eq!(st.config["OnBuild"], json!(["RUN make"]));
        assert_eq!(st.author.as_deref(), Some("me <me@x>"));
        let st = run("HEALTHCHECK CMD [\"/bin/check\", \"-q\"]\n", &[]).unwrap();
        assert_eq!(
            st.config["Healthcheck"]["Test"],
            json!(["CMD", "/bin/check", "-q"])
        );
        let st = run("HEALTHCHECK NONE\n", &[]).unwrap();
        assert_eq!(st.config["Healthcheck"], json!({"Test": ["NONE"]}));
        assert_eq!(
            run("HEALTHCHECK --interval=10us CMD x\n", &[]).unwrap_err(),
            "Dockerfile:2: HEALTHCHECK: Interval \"10us\" cannot be less than 1ms"
        );
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration("1h2m3s").unwrap(), 3_723_000_000_000);
        assert_eq!(go_duration("1.5s").unwrap(), 1_500_000_000);
        assert_eq!(go_duration("0").unwrap(), 0);
        assert!(go_duration("5").is_err());
        assert!(go_duration("1x").is_err());
        assert!(go_duration("").is_err());
    }
}
