//! What a RUN executes, as BuildKit does it:
//! - exec form: the array as it is;
//! - shell form: SHELL (`/bin/sh -c` by default) with the text;
//! - a RUN that is one heredoc and nothing else runs its body: with SHELL, or, when the body
//!   starts with `#!`, as a file of its own (BuildKit puts it under /dev/pipes/) so that its
//!   interpreter runs it;
//! - any other RUN with heredocs (`RUN python3 <<EOF`, `RUN cat <<A >a <<B >b`) goes to SHELL
//!   whole, each heredoc written back after the command line (body and terminator, with the
//!   tabs `<<-` stripped), so the shell feeds them and expands them unless their name was
//!   quoted.

use crate::dockerfile::{Args, Heredoc, Instruction};

/// The command of a RUN step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunCommand {
    pub argv: Vec<String>,
    /// Files to put in place before it runs: (path in the container, content), executable.
    pub files: Vec<(String, String)>,
}

/// Where a heredoc script with a shebang is placed.
pub const PIPES_DIR: &str = "/dev/pipes";

/// The command of RUN `ins` under `shell`.
pub fn run_command(ins: &Instruction, shell: &[String]) -> RunCommand {
    let with_shell = |script: String| {
        let mut argv = shell.to_vec();
        argv.push(script);
        RunCommand {
            argv,
            files: Vec::new(),
        }
    };
    let text = match &ins.args {
        Args::Exec(v) => {
            return RunCommand {
                argv: v.clone(),
                files: Vec::new(),
            }
        }
        Args::Shell(s) => s.trim(),
    };
    match ins.heredocs.as_slice() {
        [] => with_shell(text.to_string()),
        [only] if is_only_heredoc(text, only) => {
            if only.body.starts_with("#!") {
                let path = format!("{PIPES_DIR}/{}", only.name);
                RunCommand {
                    argv: vec![path.clone()],
                    files: vec![(path, only.body.clone())],
                }
            } else {
                with_shell(only.body.clone())
            }
        }
        docs => {
            let mut script = text.to_string();
            script.push('\n');
            for d in docs {
                script.push_str(&d.body);
                script.push_str(&d.name);
                script.push('\n');
            }
            with_shell(script)
        }
    }
}

/// Whether the command line is the heredoc marker alone (`<<EOF`, `<<-"EOF"`, ...).
fn is_only_heredoc(text: &str, doc: &Heredoc) -> bool {
    let marker = text
        .strip_prefix("<<")
        .map(|t| t.strip_prefix('-').unwrap_or(t));
    match marker {
        Some(m) => {
            let m = m.trim_matches(|c| c == '"' || c == '\'');
            m == doc.name
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::parse;

    fn cmd(text: &str) -> RunCommand {
        let df = parse(&format!("FROM scratch\n{text}")).unwrap();
        run_command(&df.instructions[1], &["/bin/sh".into(), "-c".into()])
    }

    fn sh(script: &str) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    }

    #[test]
    fn forms() {
        assert_eq!(cmd("RUN [\"echo\", \"$HOME\"]").argv, ["echo", "$HOME"]);
        assert_eq!(cmd("RUN echo $HOME").argv, sh("echo $HOME"));
    }

    #[test]
    fn heredocs() {
        assert_eq!(
            cmd("RUN <<EOF\napt-get update\napt-get install -y x\nEOF").argv,
            sh("apt-get update\napt-get install -y x\n")
        );
        let py = cmd("RUN <<-\"PY\"\n\t#!/usr/bin/env python3\n\tprint(1)\n\tPY");
        assert_eq!(py.argv, ["/dev/pipes/PY"]);
        assert_eq!(
            py.files,
            [(
                "/dev/pipes/PY".to_string(),
                "#!/usr/bin/env python3\nprint(1)\n".to_string()
            )]
        );
        assert_eq!(
            cmd("RUN python3 <<EOF\nprint(2)\nEOF").argv,
            sh("python3 <<EOF\nprint(2)\nEOF\n")
        );
        assert_eq!(
            cmd("RUN cat <<A >a && cat <<'B' >b\n$x\nA\n$y\nB").argv,
            sh("cat <<A >a && cat <<'B' >b\n$x\nA\n$y\nB\n")
        );
        // Tabs stripped by the parser are not given back: the shell sees plain `<<`-bodies.
        assert_eq!(cmd("RUN cat <<-E\n\tx\n\tE").argv, sh("cat <<-E\nx\nE\n"));
    }
}
