//! From a parsed Dockerfile to a build plan: its stages (base image, another stage or
//! scratch; name; platform), the global ARGs, the stage `--target` names (the last one by
//! default) and the stages it needs, dependencies first. What it follows, after the
//! Dockerfile reference:
//! - ARGs before the first FROM are global: FROM lines see them (with `--build-arg` values);
//!   a stage sees one only after redeclaring it (`ARG NAME`);
//! - `FROM IMAGE AS NAME`: a name is a letter then letters, digits, `-`, `_` or `.`, compared
//!   case-insensitively, and used once;
//! - a stage depends on the stage it is built `FROM`, and on each one a `COPY --from` or a
//!   `RUN --mount=...,from=` names (by name or number, earlier stages only); any other
//!   `--from` is an image.

use std::collections::BTreeMap;

use crate::dockerfile::{Args, Dockerfile, Instruction, Keyword};
use crate::words::Lexer;
use crate::ParseError;

/// What a stage starts from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Base {
    Scratch,
    /// An image reference (ARGs expanded).
    Image(String),
    /// An earlier stage, by index.
    Stage(usize),
}

#[derive(Clone, Debug)]
pub struct Stage {
    pub index: usize,
    /// Lower-cased `AS` name.
    pub name: Option<String>,
    pub base: Base,
    /// `FROM --platform=` (ARGs expanded).
    pub platform: Option<String>,
    /// The FROM line.
    pub line: usize,
    pub instructions: Vec<Instruction>,
    /// Earlier stages this one needs (its base included), by index, sorted.
    pub needs: Vec<usize>,
}

#[derive(Clone, Debug)]
pub struct Plan {
    /// Global ARGs in order, the automatic platform ones first: name and value (a
    /// `--build-arg` wins over the default).
    pub global_args: Vec<(String, Option<String>)>,
    pub stages: Vec<Stage>,
    pub target: usize,
    /// The stages to build for the target, each after those it needs.
    pub order: Vec<usize>,
}

/// `NAME[=default]` words of an ARG instruction.
pub fn arg_decls(
    ins: &Instruction,
    lexer: &Lexer,
) -> Result<Vec<(String, Option<String>)>, ParseError> {
    let Args::Shell(text) = &ins.args else {
        return Err(ParseError::new(ins.line, "ARG: takes NAME[=DEFAULT] words"));
    };
    let err = |m: String| ParseError::new(ins.line, format!("ARG: {m}"));
    let mut out = Vec::new();
    for w in lexer.raw_words(text).map_err(err)? {
        let (name, value) = match w.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(lexer.word(v, &|_| None).map_err(err)?)),
            None => (w, None),
        };
        if name.is_empty() {
            return Err(err("ARG names can not be blank".into()));
        }
        out.push((name, value));
    }
    Ok(out)
}

/// The automatic platform ARGs (TARGETPLATFORM, TARGETOS, TARGETARCH, TARGETVARIANT and the
/// BUILD* ones) for a build on this host for this host: global, so FROM sees them and a stage
/// gets one by redeclaring it (`ARG TARGETARCH`).
pub fn automatic_args() -> Vec<(String, Option<String>)> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    let (os, variant) = ("linux", if arch == "arm64" { "v8" } else { "" });
    let platform = if variant.is_empty() {
        format!("{os}/{arch}")
    } else {
        format!("{os}/{arch}/{variant}")
    };
    let mut out = Vec::new();
    for side in ["TARGET", "BUILD"] {
        out.push((format!("{side}PLATFORM"), Some(platform.clone())));
        out.push((format!("{side}OS"), Some(os.to_string())));
        out.push((format!("{side}ARCH"), Some(arch.to_string())));
        out.push((format!("{side}VARIANT"), Some(variant.to_string())));
    }
    out
}

fn valid_stage_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next().is_some_and(|f| f.is_ascii_lowercase())
        && c.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

/// The plan of `df` for `target` (None: the last stage), with `--build-arg`s.
pub fn plan(
    df: &Dockerfile,
    build_args: &BTreeMap<String, String>,
    target: Option<&str>,
) -> Result<Plan, ParseError> {
    let lexer = Lexer::new(df.escape);
    let mut global_args: Vec<(String, Option<String>)> = automatic_args();
    let mut stages: Vec<Stage> = Vec::new();
    for ins in &df.instructions {
        match ins.keyword {
            Keyword::Arg if stages.is_empty() => {
                for (name, default) in arg_decls(ins, &lexer)? {
                    let value = build_args.get(&name).cloned().or(default);
                    global_args.retain(|(n, _)| *n != name);
                    global_args.push((name, value));
                }
            }
            Keyword::From => {
                let lookup = |n: &str| {
                    global_args
                        .iter()
                        .find(|(k, _)| k == n)
                        .and_then(|(_, v)| v.clone())
                };
                let err = |m: String| ParseError::new(ins.line, format!("FROM: {m}"));
                let Args::Shell(text) = &ins.args else {
                    return Err(err("takes IMAGE [AS NAME]".into()));
                };
                let words = lexer.raw_words(text).map_err(err)?;
                let image = lexer.word(&words[0], &lookup).map_err(err)?;
                if image.is_empty() {
                    return Err(err(format!(
                        "{:?} expands to an empty image name",
                        words[0]
                    )));
                }
                let name = match words.get(2) {
                    Some(n) => {
                        let n = n.to_ascii_lowercase();
                        if !valid_stage_name(&n) {
                            return Err(err(format!(
                                "invalid name for build stage: {n:?}, name can't start with a \
                                 number or contain symbols"
                            )));
                        }
                        if stages.iter().any(|s| s.name.as_deref() == Some(n.as_str())) {
                            return Err(err(format!("duplicate stage name {n:?}")));
                        }
                        Some(n)
                    }
                    None => None,
                };
                let platform = match ins.flag("platform").and_then(|f| f.value.as_deref()) {
                    Some(p) => Some(lexer.word(p, &lookup).map_err(err)?),
                    None => None,
                };
                let lower = image.to_ascii_lowercase();
                let base = match stages
                    .iter()
                    .position(|s| s.name.as_deref() == Some(lower.as_str()))
                {
                    Some(i) => Base::Stage(i),
                    None if lower == "scratch" => Base::Scratch,
                    None => Base::Image(image),
                };
                let mut needs = Vec::new();
                if let Base::Stage(i) = base {
                    needs.push(i);
                }
                stages.push(Stage {
                    index: stages.len(),
                    name,
                    base,
                    platform,
                    line: ins.line,
                    instructions: Vec::new(),
                    needs,
                });
            }
            _ => {
                let stage = stages.last_mut().expect("parse puts FROM first");
                stage.instructions.push(ins.clone());
            }
        }
    }
    // Dependencies through --from (COPY) and mounts' from= (RUN), expanded with the stage's
    // ARGs (`ARG B=builder` then `COPY --from=$B`; a global one only once redeclared).
    let global = |n: &str| {
        global_args
            .iter()
            .find(|(k, _)| k == n)
            .and_then(|(_, v)| v.clone())
    };
    for i in 0..stages.len() {
        let mut needs = stages[i].needs.clone();
        // The stage's own ARGs as declared so far (a --build-arg over the default).
        let mut local: Vec<(String, Option<String>)> = Vec::new();
        for ins in &stages[i].instructions {
            if ins.keyword == Keyword::Arg {
                for (name, default) in arg_decls(ins, &lexer)? {
                    let v = build_args
                        .get(&name)
                        .cloned()
                        .or(default)
                        .or_else(|| global(&name));
                    local.push((name, v));
                }
            }
            let scope = |n: &str| {
                local
                    .iter()
                    .rev()
                    .find(|(k, _)| k == n)
                    .and_then(|(_, v)| v.clone())
            };
            for from in stage_refs(ins) {
                let from = lexer.word(&from, &scope).unwrap_or(from);
                if let Some(j) = resolve(&stages[..i], &from) {
                    needs.push(j);
                }
            }
        }
        needs.sort_unstable();
        needs.dedup();
        stages[i].needs = needs;
    }
    let target = match target {
        None => stages.len() - 1,
        Some(t) => {
            let t = t.to_ascii_lowercase();
            stages
                .iter()
                .position(|s| s.name.as_deref() == Some(t.as_str()))
                .ok_or_else(|| {
                    ParseError::new(0, format!("target stage {t:?} could not be found"))
                })?
        }
    };
    let mut order = Vec::new();
    visit(&stages, target, &mut order);
    Ok(Plan {
        global_args,
        stages,
        target,
        order,
    })
}

/// Stage references of an instruction: COPY's `--from` and every `from=` of RUN's mounts.
fn stage_refs(ins: &Instruction) -> Vec<String> {
    let mut out = Vec::new();
    match ins.keyword {
        Keyword::Copy => {
            if let Some(v) = ins.flag("from").and_then(|f| f.value.clone()) {
                out.push(v);
            }
        }
        Keyword::Run => {
            for f in ins.flags.iter().filter(|f| f.name == "mount") {
                for kv in f.value.as_deref().unwrap_or("").split(',') {
                    if let Some(v) = kv.strip_prefix("from=") {
                        out.push(v.to_string());
                    }
                }
            }
        }
        Keyword::Onbuild => {
            if let Some(inner) = &ins.inner {
                out.extend(stage_refs(inner));
            }
        }
        _ => {}
    }
    out
}

/// A `--from` value as one of `earlier`'s stages: by name, or by number.
pub fn resolve(earlier: &[Stage], from: &str) -> Option<usize> {
    let lower = from.to_ascii_lowercase();
    earlier
        .iter()
        .position(|s| s.name.as_deref() == Some(lower.as_str()))
        .or_else(|| from.parse::<usize>().ok().filter(|&n| n < earlier.len()))
}

fn visit(stages: &[Stage], i: usize, order: &mut Vec<usize>) {
    if order.contains(&i) {
        return;
    }
    for &j in &stages[i].needs {
        visit(stages, j, order);
    }
    order.push(i);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::parse;

    fn plan_of(text: &str, args: &[(&str, &str)], target: Option<&str>) -> Result<Plan, String> {
        let df = parse(text).map_err(|e| e.to_string())?;
        let args = args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        plan(&df, &args, target).map_err(|e| e.to_string())
    }

    const MULTI: &str = "ARG BASE=debian\nARG TAG\n\
        FROM ${BASE}:${TAG:-12} AS Build\nRUN make\n\
        FROM scratch AS tools\nCOPY x /x\n\
        FROM build AS test\nRUN --mount=type=bind,from=tools,target=/t make test\n\
        FROM alpine:3 AS final\nCOPY --from=0 /out /out\nCOPY --from=busybox:1 /bin/sh /sh\n";

    #[test]
    fn stages_bases_and_order() {
        let p = plan_of(MULTI, &[("TAG", "13")], None).unwrap();
        let bases: Vec<_> = p.stages.iter().map(|s| s.base.clone()).collect();
        assert_eq!(
            bases,
            [
                Base::Image("debian:13".into()),
                Base::Scratch,
                Base::Stage(0),
                Base::Image("alpine:3".into())
            ]
        );
        assert_eq!(p.stages[0].name.as_deref(), Some("build"));
        assert_eq!(p.stages[0].instructions.len(), 1);
        // final needs stage 0 only (busybox:1 is an image); test needs build and tools.
        assert_eq!((p.target, p.order.clone()), (3, vec![0, 3]));
        assert_eq!(p.stages[2].needs, [0, 1]);
        let p = plan_of(MULTI, &[], Some("TEST")).unwrap();
        assert_eq!(p.order, [0, 1, 2]);
        assert_eq!(p.stages[0].base, Base::Image("debian:12".into()));
        assert_eq!(
            p.global_args[8..],
            [
                ("BASE".to_string(), Some("debian".to_string())),
                ("TAG".to_string(), None)
            ]
        );
    }

    #[test]
    fn refused() {
        for (text, target, want) in [
            ("FROM a AS 1x", None, "Dockerfile:1: FROM: invalid name for build stage: \"1x\", name can't start with a number or contain symbols"),
            ("FROM a AS x\nFROM b AS X", None, "Dockerfile:2: FROM: duplicate stage name \"x\""),
            ("ARG E\nFROM $E", None, "Dockerfile:2: FROM: \"$E\" expands to an empty image name"),
            ("FROM a", Some("nope"), "Dockerfile: target stage \"nope\" could not be found"),
        ] {
            assert_eq!(plan_of(text, &[], target).unwrap_err(), want);
        }
    }

    #[test]
    fn automatic_platform_args() {
        let p = plan_of(
            "FROM --platform=$BUILDPLATFORM img-$TARGETOS-$TARGETARCH\n",
            &[],
            None,
        )
        .unwrap();
        let arch = automatic_args()[2].1.clone().unwrap();
        assert_eq!(p.stages[0].base, Base::Image(format!("img-linux-{arch}")));
        assert!(p.stages[0]
            .platform
            .as_deref()
            .unwrap()
            .starts_with("linux/"));
        // Inside a stage only once redeclared (meta::apply takes the global's value).
        let df = parse("FROM x\nARG TARGETARCH\nENV A=$TARGETARCH B=${BUILDOS:-unset}\n").unwrap();
        let p = plan(&df, &BTreeMap::new(), None).unwrap();
        let mut st = crate::meta::Stage::new(Default::default());
        for ins in &p.stages[0].instructions {
            crate::meta::apply(
                &mut st,
                ins,
                &Lexer::default(),
                &BTreeMap::new(),
                &p.global_args,
            )
            .unwrap();
        }
        assert_eq!(st.env(), [format!("A={arch}"), "B=unset".to_string()]);
    }

    #[test]
    fn args_and_platform() {
        let p = plan_of(
            "ARG P=linux/arm64\nFROM --platform=$P base\nARG A=1 B\n",
            &[],
            None,
        )
        .unwrap();
        assert_eq!(p.stages[0].platform.as_deref(), Some("linux/arm64"));
        let lexer = Lexer::default();
        assert_eq!(
            arg_decls(&p.stages[0].instructions[0], &lexer).unwrap(),
            [
                ("A".to_string(), Some("1".to_string())),
                ("B".to_string(), None)
            ]
        );
    }
}
