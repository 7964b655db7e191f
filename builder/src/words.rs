//! The builder's shell-like word processing, as Docker's builder applies it to the arguments of
//! ENV, LABEL, ARG, COPY, ADD, WORKDIR, USER, EXPOSE, VOLUME, STOPSIGNAL and FROM (RUN's shell
//! form is left to the shell):
//! - single quotes keep everything up to the next single quote as it is;
//! - double quotes keep everything but `$` expansions; the escape character escapes only `"`,
//!   `$` and itself there, and is kept before anything else;
//! - outside quotes the escape character makes the next character literal (`\` by default,
//!   `` ` `` with `# escape=``);
//! - `$NAME`, `${NAME}`, `${NAME:-word}`, `${NAME-word}`, `${NAME:+word}`, `${NAME+word}`,
//!   `${NAME:?message}` and `${NAME?message}` expand (the colon forms treat an empty value as
//!   unset); an unset variable is empty; a `$` that starts no name stays;
//! - [`Lexer::words`] splits on unquoted whitespace, and an unquoted expansion's value is split
//!   too; [`Lexer::word`] keeps the whitespace.

/// How a name is looked up: the build's ARGs and ENV in scope.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// A shell-word lexer with its escape character.
#[derive(Clone, Copy, Debug)]
pub struct Lexer {
    escape: char,
}

impl Default for Lexer {
    fn default() -> Self {
        Lexer { escape: '\\' }
    }
}

/// Words being collected; `open` says whether the current one has begun (an empty quoted
/// string is a word).
struct Words {
    done: Vec<String>,
    cur: String,
    open: bool,
    split: bool,
}

impl Words {
    fn push(&mut self, c: char) {
        self.cur.push(c);
        self.open = true;
    }
    fn push_str(&mut self, s: &str) {
        self.cur.push_str(s);
        self.open = true;
    }
    fn end(&mut self) {
        if self.open {
            self.done.push(std::mem::take(&mut self.cur));
            self.open = false;
        }
    }
    /// An unquoted expansion: split on whitespace when splitting.
    fn push_unquoted(&mut self, s: &str) {
        if !self.split {
            return self.push_str(s);
        }
        for (i, part) in s.split(char::is_whitespace).enumerate() {
            if i > 0 {
                self.end();
            }
            if !part.is_empty() {
                self.push_str(part);
            }
        }
    }
}

impl Lexer {
    pub fn new(escape: char) -> Lexer {
        Lexer { escape }
    }

    /// `text` as one word: quotes removed, escapes and variables processed.
    pub fn word(&self, text: &str, env: Lookup) -> Result<String, String> {
        let w = self.process(text, env, false)?;
        Ok(w.into_iter().next().unwrap_or_default())
    }

    /// `text` split into words on unquoted whitespace, each processed.
    pub fn words(&self, text: &str, env: Lookup) -> Result<Vec<String>, String> {
        self.process(text, env, true)
    }

    /// `text` with its `$NAME` and `${...}` expansions done and nothing else: quotes and
    /// escapes stay as written (a COPY heredoc's body, as BuildKit expands it).
    pub fn expand_raw(&self, text: &str, env: Lookup) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            let len = if let Some(inner) = after.strip_prefix('{') {
                match inner.find('}') {
                    Some(j) => j + 2,
                    None => return Err(format!("missing '}}' in {:?}", &rest[i..])),
                }
            } else if after.starts_with(|c: char| c.is_ascii_digit()) {
                // A positional parameter: one digit, always unset.
                1
            } else {
                after
                    .find(|c: char| !(c == '_' || c.is_ascii_alphanumeric()))
                    .unwrap_or(after.len())
            };
            if len == 0 {
                out.push('$');
            } else {
                out.push_str(&self.word(&rest[i..i + 1 + len], env)?);
            }
            rest = &after[len..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// `text` split on unquoted whitespace with quotes, escapes and `$` left as written (for
    /// `key=value` pairs, each value processed later with the variables of its time).
    pub fn raw_words(&self, text: &str) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        let mut cur = String::new();
        let mut quote: Option<char> = None;
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            match quote {
                Some(q) => {
                    cur.push(c);
                    if c == q {
                        quote = None;
                    } else if c == self.escape && q == '"' {
                        if let Some(n) = chars.next() {
                            cur.push(n);
                        }
                    }
                }
                None if c.is_whitespace() => {
                    if !cur.is_empty() {
                        out.push(std::mem::take(&mut cur));
                    }
                }
                None => {
                    cur.push(c);
                    if c == '\'' || c == '"' {
                        quote = Some(c);
                    } else if c == self.escape {
                        if let Some(n) = chars.next() {
                            cur.push(n);
                        }
                    }
                }
            }
        }
        if let Some(q) = quote {
            return Err(format!(
                "unexpected end of statement while looking for matching {}",
                if q == '"' {
                    "double-quote"
                } else {
                    "single-quote"
                }
            ));
        }
        if !cur.is_empty() {
            out.push(cur);
        }
        Ok(out)
    }

    fn process(&self, text: &str, env: Lookup, split: bool) -> Result<Vec<String>, String> {
        let chars: Vec<char> = text.chars().collect();
        let mut w = Words {
            done: Vec::new(),
            cur: String::new(),
            open: false,
            split,
        };
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            match c {
                c if c.is_whitespace() && split => w.end(),
                '\'' => {
                    let end = chars[i..].iter().position(|&c| c == '\'').ok_or(
                        "unexpected end of statement while looking for matching single-quote",
                    )?;
                    let s: String = chars[i..i + end].iter().collect();
                    w.push_str(&s);
                    i += end + 1;
                }
                '"' => {
                    w.open = true;
                    loop {
                        let Some(&c) = chars.get(i) else {
                            return Err("unexpected end of statement while looking for matching \
                                        double-quote"
                                .into());
                        };
                        i += 1;
                        match c {
                            '"' => break,
                            '$' => {
                                let v = self.dollar(&chars, &mut i, env)?;
                                w.push_str(&v);
                            }
                            c if c == self.escape => match chars.get(i) {
                                None => {}
                                Some(&n) if n == '"' || n == '$' || n == self.escape => {
                                    w.push(n);
                                    i += 1;
                                }
                                Some(_) => w.push(c),
                            },
                            c => w.push(c),
                        }
                    }
                }
                '$' => {
                    let v = self.dollar(&chars, &mut i, env)?;
                    w.open = true;
                    w.push_unquoted(&v);
                }
                c if c == self.escape => {
                    if let Some(&n) = chars.get(i) {
                        w.push(n);
                        i += 1;
                    }
                }
                c => w.push(c),
            }
        }
        w.end();
        if !split && w.done.is_empty() {
            w.done.push(String::new());
        }
        Ok(w.done)
    }

    /// After a `$` at `chars[*i - 1]`: the expansion's value.
    fn dollar(&self, chars: &[char], i: &mut usize, env: Lookup) -> Result<String, String> {
        let name_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
        match chars.get(*i) {
            Some('{') => {
                *i += 1;
                let start = *i;
                while chars.get(*i).is_some_and(|&c| name_char(c)) {
                    *i += 1;
                }
                let name: String = chars[start..*i].iter().collect();
                if name.is_empty() {
                    return Err("missing variable name in ${}".into());
                }
                let value = env(&name);
                match chars.get(*i) {
                    Some('}') => {
                        *i += 1;
                        Ok(value.unwrap_or_default())
                    }
                    Some(&c) if c == ':' || c == '-' || c == '+' || c == '?' => {
                        let colon = c == ':';
                        if colon {
                            *i += 1;
                        }
                        let op = *chars.get(*i).ok_or("missing '}' in ${...}")?;
                        if !matches!(op, '-' | '+' | '?') {
                            return Err(format!("unsupported modifier ({op}) in substitution"));
                        }
                        *i += 1;
                        let word = self.until_brace(chars, i, env)?;
                        let set = match &value {
                            Some(v) => !(colon && v.is_empty()),
                            None => false,
                        };
                        match op {
                            '-' if set => Ok(value.unwrap_or_default()),
                            '-' => Ok(word),
                            '+' if set => Ok(word),
                            '+' => Ok(String::new()),
                            _ if set => Ok(value.unwrap_or_default()),
                            _ => Err(if word.is_empty() {
                                format!("{name}: is not allowed to be unset")
                            } else {
                                format!("{name}: {word}")
                            }),
                        }
                    }
                    Some(&c) => Err(format!("unsupported modifier ({c}) in substitution")),
                    None => Err("missing '}' in ${...}".into()),
                }
            }
            Some(&c) if c.is_ascii_digit() => {
                // A positional parameter: the builder has none.
                *i += 1;
                Ok(String::new())
            }
            Some(&c) if name_char(c) => {
                let start = *i;
                while chars.get(*i).is_some_and(|&c| name_char(c)) {
                    *i += 1;
                }
                let name: String = chars[start..*i].iter().collect();
                Ok(env(&name).unwrap_or_default())
            }
            _ => Ok("$".into()),
        }
    }

    /// The word of `${NAME:-word}` up to its closing brace (processed: quotes, escapes and
    /// expansions inside it).
    fn until_brace(&self, chars: &[char], i: &mut usize, env: Lookup) -> Result<String, String> {
        let start = *i;
        let mut depth = 0usize;
        while let Some(&c) = chars.get(*i) {
            match c {
                c if c == self.escape => *i += 1,
                '{' => depth += 1,
                '}' if depth == 0 => {
                    let inner: String = chars[start..*i].iter().collect();
                    *i += 1;
                    return self.word(&inner, env);
                }
                '}' => depth -= 1,
                _ => {}
            }
            *i += 1;
        }
        Err("missing '}' in ${...}".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("a".into()),
            "SP" => Some("x  y".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn word(s: &str) -> Result<String, String> {
        Lexer::default().word(s, &env)
    }

    fn words(s: &str) -> Vec<String> {
        Lexer::default().words(s, &env).unwrap()
    }

    #[test]
    fn expansions() {
        assert_eq!(word("$A/${A}/${UNSET}/$UNSET.x").unwrap(), "a/a//.x");
        assert_eq!(
            word("${UNSET:-d} ${EMPTY:-d} ${EMPTY-d} ${A:-d}").unwrap(),
            "d d  a"
        );
        assert_eq!(
            word("${A:+set} ${EMPTY:+set} ${EMPTY+set} ${UNSET+set}").unwrap(),
            "set  set "
        );
        assert_eq!(word("${UNSET:-${A}b}").unwrap(), "ab");
        assert_eq!(word("${A:?boom}").unwrap(), "a");
        assert_eq!(word("${UNSET:?boom}").unwrap_err(), "UNSET: boom");
        assert_eq!(
            word("${EMPTY:?}").unwrap_err(),
            "EMPTY: is not allowed to be unset"
        );
        assert_eq!(word("cost $5 and $").unwrap(), "cost  and $");
        assert_eq!(
            word("${A%x}").unwrap_err(),
            "unsupported modifier (%) in substitution"
        );
        assert!(word("${A").is_err());
        assert!(word("${}").is_err());
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(
            word(r#"'$A "q"' "$A 'q' \"x\" \$A \n""#).unwrap(),
            r#"$A "q" a 'q' "x" $A \n"#
        );
        assert_eq!(word(r"\$A \\ \x").unwrap(), r"$A \ x");
        assert_eq!(
            word("'unterminated").unwrap_err(),
            "unexpected end of statement while looking for matching single-quote"
        );
        assert!(word("\"unterminated").is_err());
        let bt = Lexer::new('`');
        assert_eq!(bt.word(r"C:\dir `$A ``", &env).unwrap(), r"C:\dir $A `");
    }

    #[test]
    fn raw_words_keep_what_is_written() {
        let l = Lexer::default();
        assert_eq!(
            l.raw_words(r#"a=1 b="x y" c='$A z' d=\ e f="q\"r s""#)
                .unwrap(),
            ["a=1", r#"b="x y""#, "c='$A z'", r"d=\ e", r#"f="q\"r s""#]
        );
        assert!(l.raw_words("a='open").is_err());
    }

    #[test]
    fn word_splitting() {
        assert_eq!(
            words("  a  b\t'c d' \"\" e\"f g\""),
            ["a", "b", "c d", "", "ef g"]
        );
        // An unquoted value splits, a quoted one does not.
        assert_eq!(words("$SP \"$SP\" z$SP"), ["x", "y", "x  y", "zx", "y"]);
        assert_eq!(words(""), Vec::<String>::new());
        assert_eq!(word("  keep  spaces ").unwrap(), "  keep  spaces ");
    }

    #[test]
    fn raw_expansion_keeps_quotes() {
        let env = |n: &str| (n == "A").then(|| "x y".to_string());
        let l = Lexer::default();
        assert_eq!(
            l.expand_raw(r#"{"a": "$A", 'b': ${A}, c: $B, d: $, e: \n}"#, &env)
                .unwrap(),
            r#"{"a": "x y", 'b': x y, c: , d: $, e: \n}"#
        );
        assert_eq!(l.expand_raw("${A:-z}$1", &env).unwrap(), "x y");
    }
}
