//! berth's image builder (issue 12). So far the Dockerfile frontend: [`dockerfile::parse`]
//! turns a Dockerfile into instructions with their line numbers, flags, argument forms and
//! heredocs, and [`words`] is the shell-like lexer that expands `$VAR`/`${VAR...}` and splits
//! words as Docker's builder does, [`ignore`] reads `.dockerignore`, [`plan`] orders the stages a `--target` needs, [`meta`] applies the instructions that only change the image config, [`context`] selects COPY's sources and digests them for the cache, [`run`] says what a RUN executes, and [`cache`] keys each step by the whole state it starts from. The build scheduler (stages, cache, RUN through berth, the
//! layer differ in `image`) comes on top of these.

pub mod build;
pub mod cache;
pub mod context;
pub mod copy;
mod copy_layer;
mod copy_step;
pub mod dockerfile;
pub mod exec;
pub mod ignore;
pub mod meta;
pub mod mounts;
pub mod plan;
pub mod run;
mod run_step;
mod step;
pub mod stubs;
pub mod words;

pub use dockerfile::{parse, Args, Dockerfile, Flag, Heredoc, Instruction, Keyword};

/// A Dockerfile that cannot be parsed or planned, with the (1-based) line it is about (0:
/// the whole file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Dockerfile{}: {msg}", if *.line > 0 { format!(":{}", .line) } else { String::new() })]
pub struct ParseError {
    pub line: usize,
    pub msg: String,
}

impl ParseError {
    pub(crate) fn new(line: usize, msg: impl Into<String>) -> ParseError {
        ParseError {
            line,
            msg: msg.into(),
        }
    }
}

/// `p` cleaned as a slash-separated path (no `.`, no empty parts, `..` resolved lexically),
/// relative: a leading `/` is dropped. "" for the root itself.
pub fn clean(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    #[test]
    fn cleaning() {
        use super::clean;
        assert_eq!(clean("/a//b/./c/../d/"), "a/b/d");
        assert_eq!(clean("./"), "");
        assert_eq!(clean("../x"), "x");
    }
}
