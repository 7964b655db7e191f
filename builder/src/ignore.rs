//! `.dockerignore`: which files of the build context are left out, with Docker's rules:
//! - one pattern a line; blank lines and lines starting with `#` are skipped; surrounding
//!   blanks are trimmed;
//! - a pattern is cleaned as a path (`./a//b/../c` is `a/c`) and a leading `/` dropped: it is
//!   relative to the context's root;
//! - `*` matches any run of characters but `/`, `?` one such character, `[...]` and `[^...]`
//!   a character class (with ranges), the escape `\` the next character literally, and `**`
//!   any number of directories (`**/x` also matches `x`);
//! - a pattern that matches a directory matches everything below it;
//! - `!pattern` brings matching files back; the last pattern that matches decides.

use crate::clean;

/// One element of a compiled pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Lit(char),
    /// `*`: any run of non-`/` characters.
    Star,
    /// `?`: one non-`/` character.
    One,
    /// `[...]`: (negated, ranges).
    Class(bool, Vec<(char, char)>),
    /// `**/`: zero or more whole directories.
    AnyDirs,
    /// `**` elsewhere: anything, `/` included.
    AnyPath,
}

#[derive(Clone, Debug)]
struct Pattern {
    toks: Vec<Tok>,
    exclusion: bool,
}

/// A parsed `.dockerignore`.
#[derive(Clone, Debug, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

impl Ignore {
    /// Whether it leaves anything out.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Parse the file's text; a malformed pattern is an error naming its line.
    pub fn parse(text: &str) -> Result<Ignore, String> {
        let mut patterns = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exclusion, pat) = match line.strip_prefix('!') {
                Some("") => {
                    return Err(format!(
                        ".dockerignore:{}: illegal exclusion pattern: \"!\"",
                        n + 1
                    ))
                }
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let pat = clean(pat);
            if pat.is_empty() {
                continue;
            }
            let toks =
                compile(&pat).map_err(|e| format!(".dockerignore:{}: {e}: {line:?}", n + 1))?;
            patterns.push(Pattern { toks, exclusion });
        }
        Ok(Ignore { patterns })
    }

    /// Whether `path` (relative to the context root, `/`-separated) is left out.
    pub fn excluded(&self, path: &str) -> bool {
        let path = clean(path);
        let mut parents: Vec<&str> = Vec::new();
        let mut end = 0;
        while let Some(i) = path[end..].find('/') {
            end += i;
            parents.push(&path[..end]);
            end += 1;
        }
        let mut out = false;
        for p in &self.patterns {
            let hit = matches(&p.toks, &path) || parents.iter().any(|d| matches(&p.toks, d));
            if hit {
                out = !p.exclusion;
            }
        }
        out
    }

    /// Whether some exception (`!`) pattern exists: a directory left out may then still have
    /// files to bring back, so the walk must enter it.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }
}

/// Whether the glob `pattern` (the rules above; both cleaned) matches all of `path`.
pub fn glob_match(pattern: &str, path: &str) -> Result<bool, String> {
    Ok(matches(&compile(&clean(pattern))?, &clean(path)))
}

/// Whether `s` has glob characters.
pub fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn compile(pat: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = pat.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                    toks.push(Tok::AnyDirs);
                } else {
                    toks.push(Tok::AnyPath);
                }
            }
            '*' => toks.push(Tok::Star),
            '?' => toks.push(Tok::One),
            '\\' => {
                let n = *chars
                    .get(i)
                    .ok_or("syntax error in pattern (a trailing \\)")?;
                i += 1;
                toks.push(Tok::Lit(n));
            }
            '[' => {
                let negated = matches!(chars.get(i), Some('^') | Some('!'));
                if negated {
                    i += 1;
                }
                let mut ranges = Vec::new();
                let mut first = true;
                loop {
                    let Some(&c) = chars.get(i) else {
                        return Err("syntax error in pattern (an unclosed [)".into());
                    };
                    i += 1;
                    if c == ']' && !first {
                        break;
                    }
                    first = false;
                    let lo = if c == '\\' {
                        let n = *chars.get(i).ok_or("syntax error in pattern")?;
                        i += 1;
                        n
                    } else {
                        c
                    };
                    let hi = if chars.get(i) == Some(&'-')
                        && chars.get(i + 1).is_some_and(|c| *c != ']')
                    {
                        i += 2;
                        chars[i - 1]
                    } else {
                        lo
                    };
                    if hi < lo {
                        return Err("syntax error in pattern (a bad range)".into());
                    }
                    ranges.push((lo, hi));
                }
                toks.push(Tok::Class(negated, ranges));
            }
            c => toks.push(Tok::Lit(c)),
        }
    }
    Ok(toks)
}

/// Whether `toks` match all of `s`.
fn matches(toks: &[Tok], s: &str) -> bool {
    let chars: Vec<char> = s.chars().collect();
    match_at(toks, &chars)
}

fn match_at(toks: &[Tok], s: &[char]) -> bool {
    let Some((t, rest)) = toks.split_first() else {
        return s.is_empty();
    };
    match t {
        Tok::Lit(c) => s.first() == Some(c) && match_at(rest, &s[1..]),
        Tok::One => s.first().is_some_and(|c| *c != '/') && match_at(rest, &s[1..]),
        Tok::Class(neg, ranges) => {
            s.first().is_some_and(|c| {
                *c != '/' && ranges.iter().any(|(lo, hi)| lo <= c && c <= hi) != *neg
            }) && match_at(rest, &s[1..])
        }
        Tok::Star => {
            let stop = s.iter().position(|c| *c == '/').unwrap_or(s.len());
            (0..=stop).any(|k| match_at(rest, &s[k..]))
        }
        Tok::AnyPath => (0..=s.len()).any(|k| match_at(rest, &s[k..])),
        // Zero directories, or any prefix that ends in a `/`.
        Tok::AnyDirs => {
            match_at(rest, s)
                || s.iter()
                    .enumerate()
                    .filter(|(_, c)| **c == '/')
                    .any(|(k, _)| match_at(rest, &s[k + 1..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ign(text: &str) -> Ignore {
        Ignore::parse(text).unwrap()
    }

    #[test]
    fn globs() {
        let i = ign("# comment\n\n*.md\n/tmp?\ndocs/[a-c]*.txt\n  build/  \n");
        for (p, want) in [
            ("README.md", true),
            ("sub/README.md", false),
            ("tmp1", true),
            ("tmp", false),
            ("tmp12", false),
            ("docs/b1.txt", true),
            ("docs/d1.txt", false),
            ("build", true),
            ("build/out/x.o", true),
            ("src/build", false),
        ] {
            assert_eq!(i.excluded(p), want, "{p}");
        }
    }

    #[test]
    fn double_star() {
        let i = ign("**/*.pyc\nnode_modules/**\na/**/z");
        for (p, want) in [
            ("x.pyc", true),
            ("pkg/mod/x.pyc", true),
            ("x.py", false),
            ("node_modules/left-pad/index.js", true),
            ("a/z", true),
            ("a/b/c/z", true),
            ("a/bz", false),
        ] {
            assert_eq!(i.excluded(p), want, "{p}");
        }
    }

    #[test]
    fn exceptions_last_match_wins() {
        let i = ign("*.md\n!README*.md\nREADME-secret.md");
        assert!(i.excluded("CHANGES.md"));
        assert!(!i.excluded("README.md"));
        assert!(i.excluded("README-secret.md"));
        assert!(i.has_exceptions());
        // A directory left out takes its files with it, unless an exception names them.
        let i = ign("logs\n!logs/keep.log");
        assert!(i.excluded("logs/a.log"));
        assert!(!i.excluded("logs/keep.log"));
    }

    #[test]
    fn classes_and_escapes() {
        let i = ign("[^a]x\nlit\\*star\n[]]y");
        assert!(i.excluded("bx"));
        assert!(!i.excluded("ax"));
        assert!(i.excluded("lit*star"));
        assert!(!i.excluded("litxstar"));
        assert!(i.excluded("]y"));
        assert_eq!(
            Ignore::parse("!").unwrap_err(),
            ".dockerignore:1: illegal exclusion pattern: \"!\""
        );
        assert_eq!(
            Ignore::parse("ok\n[abc").unwrap_err(),
            ".dockerignore:2: syntax error in pattern (an unclosed [): \"[abc\""
        );
    }
}
