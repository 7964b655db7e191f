//! Long options with one dash. runc parses its command line with urfave/cli on Go's `flag`
//! package, which takes `-root X`, `-root=X` and `-no-subreaper` as well as the two-dash forms;
//! go-runc, and so containerd's runc shim, sends `restore ... -no-subreaper`. clap reads one
//! dash as a cluster of short options, so such words are rewritten to two dashes before clap
//! parses them, for the long options the command in use has.
//!
//! Only a command line with such a word pays for this (the usual one is checked by one scan
//! and left as it is). Words after `--`, values of options, and everything after the first
//! positional of a command whose last argument takes the rest (`exec ID CMD...`, `ps ID
//! ARGS...`) are the container's, and never rewritten.

use clap::{Arg, Command};
use std::ffi::OsString;

/// A word that could be a one-dash long option: `-xy...`, not `--...`, not `-x`.
fn one_dash_long(a: &OsString) -> bool {
    let b = a.as_encoded_bytes();
    b.len() > 2 && b[0] == b'-' && b[1] != b'-'
}

fn long<'a>(cmd: &'a Command, top: &'a Command, name: &str) -> Option<&'a Arg> {
    let has = |a: &&Arg| {
        a.get_long() == Some(name) || a.get_all_aliases().is_some_and(|v| v.contains(&name))
    };
    cmd.get_arguments()
        .find(has)
        .or_else(|| top.get_arguments().find(|a| a.is_global_set() && has(a)))
}

fn short<'a>(cmd: &'a Command, top: &'a Command, c: char) -> Option<&'a Arg> {
    cmd.get_arguments()
        .find(|a| a.get_short() == Some(c))
        .or_else(|| top.get_arguments().find(|a| a.get_short() == Some(c)))
}

fn takes_value(a: &Arg) -> bool {
    a.get_action().takes_values()
}

/// Whether argv (the program first) has a word [`normalize`] may rewrite.
pub fn needed(args: &[OsString]) -> bool {
    args.iter().skip(1).any(one_dash_long)
}

/// `args` (argv, the program first) with every one-dash long option of `cmd` given two dashes
/// (the caller asks [`needed`] first: this builds all of `cmd`).
pub fn normalize(cmd: &mut Command, args: Vec<OsString>) -> Vec<OsString> {
    cmd.build();
    let top: &Command = cmd;
    let mut cur = top;
    let mut in_sub = false;
    let mut out = Vec::with_capacity(args.len());
    let mut it = args.into_iter();
    out.extend(it.next());
    while let Some(a) = it.next() {
        let Some(s) = a.to_str().map(str::to_owned) else {
            out.push(a);
            continue;
        };
        if s == "--" {
            out.push(a);
            out.extend(it);
            break;
        }
        if let Some(body) = s.strip_prefix("--") {
            let name = body.split('=').next().unwrap_or(body);
            let value_follows =
                !body.contains('=') && long(cur, top, name).is_some_and(takes_value);
            out.push(a);
            if value_follows {
                out.extend(it.next());
            }
            continue;
        }
        if let Some(body) = s.strip_prefix('-').filter(|b| !b.is_empty()) {
            let name = body.split('=').next().unwrap_or(body);
            if body.len() > 1 {
                if let Some(arg) = long(cur, top, name) {
                    let value_follows = !body.contains('=') && takes_value(arg);
                    // Go's boolean flags also take `-flag=true` and `-flag=false`.
                    if !takes_value(arg) {
                        match body.split_once('=').map(|(_, v)| v) {
                            Some("true" | "1" | "t" | "T" | "TRUE" | "True") => {
                                out.push(format!("--{name}").into());
                                continue;
                            }
                            Some("false" | "0" | "f" | "F" | "FALSE" | "False") => continue,
                            _ => {}
                        }
                    }
                    out.push(format!("--{body}").into());
                    if value_follows {
                        out.extend(it.next());
                    }
                    continue;
                }
            }
            // Short options: a value is attached (`-bX`) or is the next word (`-b X`).
            let value_follows = body.chars().count() == 1
                && body
                    .chars()
                    .next()
                    .and_then(|c| short(cur, top, c))
                    .is_some_and(takes_value);
            out.push(a);
            if value_follows {
                out.extend(it.next());
            }
            continue;
        }
        // A positional word: the subcommand, or the command's own first argument.
        if !in_sub {
            if let Some(sub) = top.find_subcommand(&s) {
                cur = sub;
                in_sub = true;
                out.push(a);
                continue;
            }
        }
        out.push(a);
        if cur.get_arguments().any(Arg::is_trailing_var_arg_set) {
            out.extend(it);
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ArgAction;

    fn cli() -> Command {
        Command::new("berth")
            .arg(Arg::new("root").long("root").global(true))
            .arg(
                Arg::new("debug")
                    .long("debug")
                    .action(ArgAction::SetTrue)
                    .global(true),
            )
            .subcommand(
                Command::new("restore")
                    .arg(
                        Arg::new("no-subreaper")
                            .long("no-subreaper")
                            .action(ArgAction::SetTrue),
                    )
                    .arg(Arg::new("bundle").short('b').long("bundle"))
                    .arg(
                        Arg::new("detach")
                            .short('d')
                            .long("detach")
                            .action(ArgAction::SetTrue),
                    )
                    .arg(Arg::new("id")),
            )
            .subcommand(
                Command::new("exec")
                    .arg(
                        Arg::new("tty")
                            .short('t')
                            .long("tty")
                            .action(ArgAction::SetTrue),
                    )
                    .arg(Arg::new("id"))
                    .arg(
                        Arg::new("command")
                            .num_args(0..)
                            .trailing_var_arg(true)
                            .allow_hyphen_values(true),
                    ),
            )
    }

    fn norm(words: &[&str]) -> Vec<String> {
        let args = std::iter::once("berth")
            .chain(words.iter().copied())
            .map(OsString::from)
            .collect();
        normalize(&mut cli(), args)
            .into_iter()
            .skip(1)
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn go_runc_restore_words_become_clap_words() {
        assert_eq!(
            norm(&[
                "-root",
                "/r",
                "restore",
                "-b",
                "/b",
                "-d",
                "-no-subreaper",
                "c1"
            ]),
            [
                "--root",
                "/r",
                "restore",
                "-b",
                "/b",
                "-d",
                "--no-subreaper",
                "c1"
            ]
        );
        assert_eq!(
            norm(&["restore", "-bundle=/b", "-debug", "c1"]),
            ["restore", "--bundle=/b", "--debug", "c1"]
        );
        assert_eq!(
            norm(&["restore", "-detach=true", "-no-subreaper=false", "c1"]),
            ["restore", "--detach", "c1"]
        );
        // A value that looks like an option is a value.
        assert_eq!(
            norm(&["-root", "-debug", "restore"]),
            ["--root", "-debug", "restore"]
        );
    }

    #[test]
    fn the_containers_words_are_left_alone() {
        assert_eq!(
            norm(&["exec", "-t", "c1", "sh", "-root", "-tty"]),
            ["exec", "-t", "c1", "sh", "-root", "-tty"]
        );
        assert_eq!(
            norm(&["-debug", "exec", "c1", "--", "-root"]),
            ["--debug", "exec", "c1", "--", "-root"]
        );
        // Unknown one-dash words are clap's to refuse.
        assert_eq!(
            norm(&["restore", "-nope", "c1"]),
            ["restore", "-nope", "c1"]
        );
        // Nothing to rewrite: the same vector.
        assert_eq!(
            norm(&["--root", "/r", "restore", "-d", "c1"]),
            ["--root", "/r", "restore", "-d", "c1"]
        );
    }
}
