//! The Dockerfile parser, after the Dockerfile reference (and BuildKit's frontend where the
//! reference is silent):
//! - parser directives (`# syntax=`, `# escape=`, `# check=`) only at the very top, before
//!   any comment, blank line or instruction; an unknown one is a comment and ends them;
//! - a comment is a line whose first non-blank character is `#`, also inside a continuation;
//! - a line ending in the escape character (then optional blanks) continues on the next line,
//!   joined as it is; blank lines inside a continuation are skipped (with a warning);
//! - an instruction is a case-insensitive keyword and its arguments; leading `--name[=value]`
//!   words are its flags, checked against those the instruction has;
//! - RUN, CMD, ENTRYPOINT, COPY, ADD, VOLUME and SHELL take a JSON array of strings (exec
//!   form), otherwise their text (shell form); SHELL only the JSON form; a RUN, CMD or
//!   ENTRYPOINT that only looks like JSON is shell form;
//! - RUN, COPY and ADD take heredocs (`<<EOF`, `<<-EOF` stripping leading tabs, `<<"EOF"` or
//!   `<<'EOF'` not expanded), their bodies on the lines that follow, verbatim;
//! - ONBUILD holds one instruction (not ONBUILD, FROM or MAINTAINER);
//! - before the first FROM only ARG may come.
//!
//! Every error names its line (`Dockerfile:12: ...`).

use crate::ParseError;

/// An instruction keyword.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keyword {
    From,
    Run,
    Cmd,
    Label,
    Maintainer,
    Expose,
    Env,
    Add,
    Copy,
    Entrypoint,
    Volume,
    User,
    Workdir,
    Arg,
    Onbuild,
    Stopsignal,
    Healthcheck,
    Shell,
}

const KEYWORDS: &[(&str, Keyword)] = &[
    ("FROM", Keyword::From),
    ("RUN", Keyword::Run),
    ("CMD", Keyword::Cmd),
    ("LABEL", Keyword::Label),
    ("MAINTAINER", Keyword::Maintainer),
    ("EXPOSE", Keyword::Expose),
    ("ENV", Keyword::Env),
    ("ADD", Keyword::Add),
    ("COPY", Keyword::Copy),
    ("ENTRYPOINT", Keyword::Entrypoint),
    ("VOLUME", Keyword::Volume),
    ("USER", Keyword::User),
    ("WORKDIR", Keyword::Workdir),
    ("ARG", Keyword::Arg),
    ("ONBUILD", Keyword::Onbuild),
    ("STOPSIGNAL", Keyword::Stopsignal),
    ("HEALTHCHECK", Keyword::Healthcheck),
    ("SHELL", Keyword::Shell),
];

impl Keyword {
    fn parse(word: &str) -> Option<Keyword> {
        KEYWORDS
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(word))
            .map(|(_, kw)| *kw)
    }

    pub fn name(self) -> &'static str {
        KEYWORDS
            .iter()
            .find(|(_, k)| *k == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }

    /// The flags the instruction takes.
    fn flags(self) -> &'static [&'static str] {
        match self {
            Keyword::From => &["platform"],
            Keyword::Run => &["mount", "network", "security"],
            Keyword::Copy => &["from", "chown", "chmod", "link", "parents", "exclude"],
            Keyword::Add => &[
                "chown",
                "chmod",
                "link",
                "checksum",
                "keep-git-dir",
                "exclude",
            ],
            Keyword::Healthcheck => &[
                "interval",
                "timeout",
                "start-period",
                "start-interval",
                "retries",
            ],
            _ => &[],
        }
    }

    fn takes_json(self) -> bool {
        matches!(
            self,
            Keyword::Run
                | Keyword::Cmd
                | Keyword::Entrypoint
                | Keyword::Copy
                | Keyword::Add
                | Keyword::Volume
                | Keyword::Shell
        )
    }

    fn takes_heredocs(self) -> bool {
        matches!(self, Keyword::Run | Keyword::Copy | Keyword::Add)
    }
}

/// `--name=value` (or `--name`, a value of None).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flag {
    pub name: String,
    pub value: Option<String>,
}

/// An instruction's arguments after its flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Args {
    /// A JSON array of strings.
    Exec(Vec<String>),
    /// The text as written (continuations joined), not yet expanded.
    Shell(String),
}

/// A heredoc of RUN, COPY or ADD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heredoc {
    pub name: String,
    /// Unquoted name: the body's variables are expanded (by the shell for RUN).
    pub expand: bool,
    /// `<<-`: leading tabs were stripped from each body line and the terminator.
    pub strip_tabs: bool,
    /// The body, each line ending in a newline.
    pub body: String,
}

/// One instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instruction {
    /// First and last line (1-based; heredoc bodies included).
    pub line: usize,
    pub end_line: usize,
    pub keyword: Keyword,
    pub flags: Vec<Flag>,
    pub args: Args,
    pub heredocs: Vec<Heredoc>,
    /// ONBUILD's instruction.
    pub inner: Option<Box<Instruction>>,
    /// The logical line as written (continuations joined), for history and cache keys.
    pub original: String,
}

impl Instruction {
    pub fn flag(&self, name: &str) -> Option<&Flag> {
        self.flags.iter().find(|f| f.name == name)
    }
}

/// Something worth saying that is not an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    pub line: usize,
    pub msg: String,
}

/// A parsed Dockerfile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dockerfile {
    /// `# syntax=`: recorded, not followed (berth has one frontend).
    pub syntax: Option<String>,
    pub escape: char,
    pub instructions: Vec<Instruction>,
    pub warnings: Vec<Warning>,
}

/// Parse a Dockerfile's text.
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let mut df = Dockerfile {
        syntax: None,
        escape: '\\',
        instructions: Vec::new(),
        warnings: Vec::new(),
    };
    let mut i = directives(&lines, &mut df)?;
    let mut seen_from = false;
    while i < lines.len() {
        let line = lines[i];
        if is_blank_or_comment(line) {
            i += 1;
            continue;
        }
        let start = i;
        let mut logical = String::new();
        let mut cur = line.to_string();
        i += 1;
        loop {
            match continued(&cur, df.escape) {
                Some(head) => {
                    logical.push_str(head);
                    // The next line that is not a comment (blank ones are skipped too).
                    while i < lines.len() && is_blank_or_comment(lines[i]) {
                        if lines[i].trim().is_empty() {
                            df.warnings.push(Warning {
                                line: i + 1,
                                msg: "empty continuation line".into(),
                            });
                        }
                        i += 1;
                    }
                    match lines.get(i) {
                        Some(next) => {
                            cur = next.to_string();
                            i += 1;
                        }
                        None => break,
                    }
                }
                None => {
                    logical.push_str(&cur);
                    break;
                }
            }
        }
        let mut ins = instruction(&logical, start + 1, df.escape, &lines, &mut i)?;
        ins.end_line = ins.end_line.max(i);
        match ins.keyword {
            Keyword::From => seen_from = true,
            Keyword::Arg => {}
            k if !seen_from => {
                return Err(ParseError::new(
                    ins.line,
                    format!(
                        "{}: no build stage in current context (FROM must come first)",
                        k.name()
                    ),
                ))
            }
            _ => {}
        }
        df.instructions.push(ins);
    }
    if !seen_from {
        return Err(ParseError::new(
            lines.len().max(1),
            "the Dockerfile has no FROM instruction",
        ));
    }
    Ok(df)
}

fn is_blank_or_comment(line: &str) -> bool {
    let t = line.trim_start();
    t.is_empty() || t.starts_with('#')
}

/// The line without its continuation mark, if it has one.
fn continued(line: &str, escape: char) -> Option<&str> {
    line.trim_end().strip_suffix(escape)
}

/// Read the parser directives at the top; returns the index of the first line after them.
fn directives(lines: &[&str], df: &mut Dockerfile) -> Result<usize, ParseError> {
    let mut seen: Vec<String> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.trim_start().strip_prefix('#') else {
            return Ok(i);
        };
        let Some((key, value)) = rest.split_once('=') else {
            return Ok(i);
        };
        let key = key.trim().to_ascii_lowercase();
        let value = value.trim();
        if key.is_empty()
            || !key.chars().all(|c| c.is_ascii_alphanumeric())
            || !matches!(key.as_str(), "syntax" | "escape" | "check")
        {
            return Ok(i);
        }
        if seen.contains(&key) {
            return Err(ParseError::new(
                i + 1,
                format!("only one {key} parser directive can be used"),
            ));
        }
        seen.push(key.clone());
        match key.as_str() {
            "syntax" => {
                df.syntax = Some(value.to_string());
                df.warnings.push(Warning {
                    line: i + 1,
                    msg: format!(
                        "the syntax directive ({value}) is ignored: berth has one frontend"
                    ),
                });
            }
            "escape" => {
                df.escape = match value {
                    "\\" => '\\',
                    "`" => '`',
                    v => {
                        return Err(ParseError::new(
                            i + 1,
                            format!("invalid escape token {v:?} does not match ` or \\"),
                        ))
                    }
                }
            }
            _ => {}
        }
    }
    Ok(lines.len())
}

/// One logical line (starting at `line`) as an instruction; heredoc bodies are read from
/// `lines[*next..]`, advancing `next`.
fn instruction(
    logical: &str,
    line: usize,
    escape: char,
    lines: &[&str],
    next: &mut usize,
) -> Result<Instruction, ParseError> {
    let text = logical.trim();
    let (word, rest) = text
        .split_once(char::is_whitespace)
        .map(|(w, r)| (w, r.trim_start()))
        .unwrap_or((text, ""));
    let keyword = Keyword::parse(word).ok_or_else(|| {
        ParseError::new(
            line,
            format!("unknown instruction: {}", word.to_uppercase()),
        )
    })?;
    let err = |msg: String| ParseError::new(line, format!("{}: {msg}", keyword.name()));

    if keyword == Keyword::Onbuild {
        let inner = instruction(rest, line, escape, lines, next)?;
        if matches!(
            inner.keyword,
            Keyword::Onbuild | Keyword::From | Keyword::Maintainer
        ) {
            return Err(err(format!(
                "{} isn't allowed as an ONBUILD trigger",
                inner.keyword.name()
            )));
        }
        return Ok(Instruction {
            line,
            end_line: inner.end_line,
            keyword,
            flags: Vec::new(),
            args: Args::Shell(rest.to_string()),
            heredocs: Vec::new(),
            inner: Some(Box::new(inner)),
            original: text.to_string(),
        });
    }

    let (flags, rest) = split_flags(rest);
    for f in &flags {
        if !keyword.flags().contains(&f.name.as_str()) {
            return Err(err(format!("unknown flag: --{}", f.name)));
        }
    }
    let args = match json_array(rest) {
        Some(v) if keyword.takes_json() => Args::Exec(v),
        _ if keyword == Keyword::Shell => {
            return Err(err("SHELL requires the arguments to be in JSON form".into()))
        }
        _ => Args::Shell(rest.to_string()),
    };
    let mut heredocs = Vec::new();
    if let (true, Args::Shell(s)) = (keyword.takes_heredocs(), &args) {
        for (name, expand, strip_tabs) in heredoc_markers(s, escape) {
            let mut body = String::new();
            loop {
                let Some(l) = lines.get(*next) else {
                    return Err(err(format!("unterminated heredoc {name}")));
                };
                *next += 1;
                let l = if strip_tabs {
                    l.trim_start_matches('\t')
                } else {
                    l
                };
                if l == name {
                    break;
                }
                body.push_str(l);
                body.push('\n');
            }
            heredocs.push(Heredoc {
                name,
                expand,
                strip_tabs,
                body,
            });
        }
    }
    let ins = Instruction {
        line,
        end_line: line,
        keyword,
        flags,
        args,
        heredocs,
        inner: None,
        original: text.to_string(),
    };
    check_arity(&ins).map_err(err)?;
    Ok(ins)
}

/// Leading `--name[=value]` words; `--` alone ends them.
fn split_flags(mut rest: &str) -> (Vec<Flag>, &str) {
    let mut flags = Vec::new();
    while let Some(after) = rest.strip_prefix("--") {
        let end = after.find(char::is_whitespace).unwrap_or(after.len());
        let word = &after[..end];
        rest = after[end..].trim_start();
        if word.is_empty() {
            break;
        }
        let (name, value) = match word.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (word, None),
        };
        flags.push(Flag {
            name: name.to_ascii_lowercase(),
            value,
        });
    }
    (flags, rest)
}

/// `text` as a JSON array of strings, if it is one.
fn json_array(text: &str) -> Option<Vec<String>> {
    if !text.starts_with('[') {
        return None;
    }
    match serde_json::from_str::<serde_json::Value>(text).ok()? {
        serde_json::Value::Array(a) => a
            .into_iter()
            .map(|v| match v {
                serde_json::Value::String(s) => Some(s),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// The heredocs a shell-form line opens, in order: (name, expanded, strip tabs). A `<<` in
/// quotes or escaped is not one, nor is `<<<`.
fn heredoc_markers(text: &str, escape: char) -> Vec<(String, bool, bool)> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut quote: Option<char> = None;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == escape => i += 1,
            None if c == '\'' || c == '"' => quote = Some(c),
            // A here-string.
            None if chars[i..].starts_with(&['<', '<', '<']) => i += 2,
            None if c == '<'
                && chars.get(i + 1) == Some(&'<')
                && chars.get(i + 2) != Some(&'<') =>
            {
                let mut j = i + 2;
                let strip = chars.get(j) == Some(&'-');
                if strip {
                    j += 1;
                }
                let q = chars.get(j).copied().filter(|c| *c == '"' || *c == '\'');
                if q.is_some() {
                    j += 1;
                }
                let start = j;
                while chars.get(j).is_some_and(|c| {
                    c.is_ascii_alphanumeric() || *c == '_' || *c == '-' || *c == '.'
                }) {
                    j += 1;
                }
                let name: String = chars[start..j].iter().collect();
                let closed = match q {
                    Some(q) if chars.get(j) == Some(&q) => {
                        j += 1;
                        true
                    }
                    Some(_) => false,
                    None => true,
                };
                if !name.is_empty() && closed {
                    out.push((name, q.is_none(), strip));
                    i = j;
                    continue;
                }
            }
            None => {}
        }
        i += 1;
    }
    out
}

/// The argument counts the reference requires.
fn check_arity(ins: &Instruction) -> Result<(), String> {
    let text = match &ins.args {
        Args::Shell(s) => s.as_str(),
        Args::Exec(v) => {
            return match ins.keyword {
                Keyword::Copy | Keyword::Add if v.len() < 2 => {
                    Err("requires at least two arguments".into())
                }
                Keyword::Volume | Keyword::Shell if v.is_empty() => {
                    Err("requires at least one argument".into())
                }
                _ => Ok(()),
            }
        }
    };
    let words = text.split_whitespace().count();
    match ins.keyword {
        Keyword::From if !(words == 1 || (words == 3 && is_as(text))) => {
            Err("requires either one or three arguments (IMAGE [AS NAME])".into())
        }
        Keyword::Copy | Keyword::Add if words < 2 && ins.heredocs.is_empty() => {
            Err("requires at least two arguments, but got ".to_string() + &words.to_string())
        }
        Keyword::Workdir | Keyword::User | Keyword::Stopsignal if words != 1 => {
            // Quoted values may hold blanks: only an empty one is refused here.
            if words == 0 {
                Err("requires exactly one argument".into())
            } else {
                Ok(())
            }
        }
        Keyword::Arg
        | Keyword::Env
        | Keyword::Label
        | Keyword::Expose
        | Keyword::Volume
        | Keyword::Run
        | Keyword::Maintainer
        | Keyword::Healthcheck
            if words == 0 =>
        {
            Err("requires at least one argument".into())
        }
        _ => Ok(()),
    }
}

fn is_as(text: &str) -> bool {
    text.split_whitespace()
        .nth(1)
        .is_some_and(|w| w.eq_ignore_ascii_case("as"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Instruction {
        let df = parse(&format!("FROM scratch\n{text}")).unwrap();
        df.instructions[1].clone()
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn keywords_forms_and_lines() {
        let df = parse(
            "# a comment\n\nfrom debian:12 AS base\nRUN echo hi\ncmd [\"sh\", \"-c\", \"x\"]\n\
             ENTRYPOINT [\"broken\"\nSHELL [\"/bin/bash\", \"-c\"]\n",
        )
        .unwrap();
        let k: Vec<_> = df
            .instructions
            .iter()
            .map(|i| (i.line, i.keyword))
            .collect();
        assert_eq!(
            k,
            [
                (3, Keyword::From),
                (4, Keyword::Run),
                (5, Keyword::Cmd),
                (6, Keyword::Entrypoint),
                (7, Keyword::Shell)
            ]
        );
        assert_eq!(df.instructions[1].args, Args::Shell("echo hi".into()));
        assert_eq!(
            df.instructions[2].args,
            Args::Exec(vec!["sh".into(), "-c".into(), "x".into()])
        );
        // Only looks like JSON: shell form.
        assert_eq!(df.instructions[3].args, Args::Shell("[\"broken\"".into()));
    }

    #[test]
    fn continuations_and_comments() {
        let df = parse(
            "FROM scratch\nRUN apt-get update && \\\n# a comment inside\n\n    apt-get install -y x \\  \n  && true\nRUN last \\",
        )
        .unwrap();
        let run = &df.instructions[1];
        assert_eq!(
            run.args,
            Args::Shell("apt-get update &&     apt-get install -y x   && true".into())
        );
        assert_eq!((run.line, run.end_line), (2, 6));
        assert_eq!(
            df.warnings[0],
            Warning {
                line: 4,
                msg: "empty continuation line".into()
            }
        );
        // A continuation at the end of the file ends the instruction.
        assert_eq!(df.instructions[2].args, Args::Shell("last".into()));
    }

    #[test]
    fn directives() {
        let df = parse("# syntax=docker/dockerfile:1\n# ESCAPE = `\nFROM scratch\nRUN a `\n b\n")
            .unwrap();
        assert_eq!(df.escape, '`');
        assert_eq!(df.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(df.instructions[1].args, Args::Shell("a  b".into()));
        // After a comment, a directive is a comment.
        let df = parse("# hello\n# escape=`\nFROM scratch\nRUN a \\\n b\n").unwrap();
        assert_eq!(df.escape, '\\');
        assert_eq!(
            err("# escape=x\nFROM scratch"),
            "Dockerfile:1: invalid escape token \"x\" does not match ` or \\"
        );
        assert_eq!(
            err("# escape=`\n# escape=\\\nFROM scratch"),
            "Dockerfile:2: only one escape parser directive can be used"
        );
    }

    #[test]
    fn flags() {
        let run = one("RUN --mount=type=cache,target=/root/.cache --network=none pip install x");
        assert_eq!(
            run.flag("mount").unwrap().value.as_deref(),
            Some("type=cache,target=/root/.cache")
        );
        assert_eq!(run.flag("network").unwrap().value.as_deref(), Some("none"));
        assert_eq!(run.args, Args::Shell("pip install x".into()));
        let copy = one("COPY --link --from=build /a /b");
        assert_eq!(copy.flag("link").unwrap().value, None);
        assert_eq!(
            err("FROM scratch\nCOPY --bogus=1 a b"),
            "Dockerfile:2: COPY: unknown flag: --bogus"
        );
        assert_eq!(
            err("FROM scratch\nENV --x=1 A=b"),
            "Dockerfile:2: ENV: unknown flag: --x"
        );
    }

    #[test]
    fn heredocs() {
        let df = parse(
            "FROM scratch\nRUN <<EOF\necho $HOME\n  # not a comment \\\nEOF\n\
             COPY <<-\"A\" <<'B' /dest/\n\tline a\n\tA\nline b\nB\nRUN cat <<<here 'x<<Y' \\<<Z\n",
        )
        .unwrap();
        let run = &df.instructions[1];
        assert_eq!(run.heredocs.len(), 1);
        assert_eq!(run.heredocs[0].body, "echo $HOME\n  # not a comment \\\n");
        assert!(run.heredocs[0].expand);
        assert_eq!((run.line, run.end_line), (2, 5));
        let copy = &df.instructions[2];
        assert_eq!(
            copy.heredocs,
            [
                Heredoc {
                    name: "A".into(),
                    expand: false,
                    strip_tabs: true,
                    body: "line a\n".into()
                },
                Heredoc {
                    name: "B".into(),
                    expand: false,
                    strip_tabs: false,
                    body: "line b\n".into()
                },
            ]
        );
        assert_eq!(df.instructions[3].heredocs, []);
        assert_eq!(
            err("FROM scratch\nRUN <<EOF\nno end\n"),
            "Dockerfile:2: RUN: unterminated heredoc EOF"
        );
    }

    #[test]
    fn onbuild_and_order() {
        let ob = one("ONBUILD RUN make");
        assert_eq!(ob.inner.as_ref().unwrap().keyword, Keyword::Run);
        assert_eq!(
            err("FROM scratch\nONBUILD FROM x"),
            "Dockerfile:2: ONBUILD: FROM isn't allowed as an ONBUILD trigger"
        );
        let df = parse("ARG V=1\nFROM base:$V\n").unwrap();
        assert_eq!(df.instructions[0].keyword, Keyword::Arg);
        assert_eq!(
            err("RUN x\nFROM scratch"),
            "Dockerfile:1: RUN: no build stage in current context (FROM must come first)"
        );
        assert_eq!(
            err("# only\n"),
            "Dockerfile:2: the Dockerfile has no FROM instruction"
        );
    }

    #[test]
    fn bad_lines_name_their_line() {
        assert_eq!(
            err("FROM scratch\n\nFOO bar"),
            "Dockerfile:3: unknown instruction: FOO"
        );
        assert_eq!(
            err("FROM a b"),
            "Dockerfile:1: FROM: requires either one or three arguments (IMAGE [AS NAME])"
        );
        assert_eq!(
            err("FROM scratch\nSHELL sh -c"),
            "Dockerfile:2: SHELL: SHELL requires the arguments to be in JSON form"
        );
        assert_eq!(
            err("FROM scratch\nCOPY onlyone"),
            "Dockerfile:2: COPY: requires at least two arguments, but got 1"
        );
        assert_eq!(
            err("FROM scratch\nWORKDIR"),
            "Dockerfile:2: WORKDIR: requires exactly one argument"
        );
        // CRLF line ends.
        assert_eq!(
            parse("FROM scratch\r\nRUN a\r\n").unwrap().instructions[1].args,
            Args::Shell("a".into())
        );
    }
}
