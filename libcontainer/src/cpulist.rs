//! CPU and NUMA node lists as the kernel prints them (`0-3,7`), parsed into the bit masks that
//! sched_setaffinity(2) and set_mempolicy(2) take.
//!
//! The grammar is runc's (its `ToCPUSet`): elements separated by commas, each a number or a
//! range `a-b` with `a <= b`; blanks around an element and empty elements are ignored
//! (`" 1, 3 ,"`), but a list with no element at all (`","`) is an error, and so is a blank
//! inside a range (`1 - 2`). The whole list empty means "not set".

/// A set of CPUs or nodes: bit `n` of word `n / 64` is CPU (node) `n`. Never empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mask(Vec<u64>);

impl Mask {
    /// The words, lowest CPU first, as the kernel reads a `cpumask` or `nodemask`.
    pub fn words(&self) -> &[u64] {
        &self.0
    }

    /// One past the highest bit set.
    pub fn bits(&self) -> u64 {
        let last = self.0.len() - 1;
        last as u64 * 64 + (64 - u64::from(self.0[last].leading_zeros()))
    }

    /// The members in ascending order.
    pub fn members(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().enumerate().flat_map(|(i, w)| {
            (0..64)
                .filter(move |b| w & (1u64 << b) != 0)
                .map(move |b| (i * 64 + b) as u32)
        })
    }

    /// The canonical list (`0-3,7`), as /proc prints it.
    pub fn to_list(&self) -> String {
        let mut out = String::new();
        let mut run: Option<(u32, u32)> = None;
        let flush = |out: &mut String, (a, b): (u32, u32)| {
            if !out.is_empty() {
                out.push(',');
            }
            if a == b {
                out.push_str(&a.to_string());
            } else {
                out.push_str(&format!("{a}-{b}"));
            }
        };
        for m in self.members() {
            run = match run {
                Some((a, b)) if b + 1 == m => Some((a, m)),
                Some(r) => {
                    flush(&mut out, r);
                    Some((m, m))
                }
                None => Some((m, m)),
            };
        }
        if let Some(r) = run {
            flush(&mut out, r);
        }
        out
    }
}

/// Parse a list whose members are at most `max`; `Ok(None)` for an empty list. The error
/// says what is wrong with which element (the caller names the field).
pub fn parse(list: &str, max: u32) -> Result<Option<Mask>, String> {
    if list.is_empty() {
        return Ok(None);
    }
    let mut words: Vec<u64> = Vec::new();
    for elem in list.split(',') {
        let elem = elem.trim_matches([' ', '\t']);
        if elem.is_empty() {
            continue;
        }
        let (a, b) = match elem.split_once('-') {
            Some((a, b)) => (number(a, elem, max)?, number(b, elem, max)?),
            None => {
                let n = number(elem, elem, max)?;
                (n, n)
            }
        };
        if a > b {
            return Err(format!(
                "invalid range {}: the start is above the end",
                crate::error::echo(elem)
            ));
        }
        let need = b as usize / 64 + 1;
        if words.len() < need {
            words.resize(need, 0);
        }
        for n in a..=b {
            words[n as usize / 64] |= 1u64 << (n % 64);
        }
    }
    if words.is_empty() {
        return Err(format!(
            "{} lists nothing (a list is like \"0-3,7\")",
            crate::error::echo(list)
        ));
    }
    Ok(Some(Mask(words)))
}

fn number(s: &str, elem: &str, max: u32) -> Result<u32, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{} is not a number or a range of numbers (a list is like \"0-3,7\")",
            crate::error::echo(elem)
        ));
    }
    match s.parse::<u32>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(format!(
            "{} is above {max}, the largest number berth accepts here",
            crate::error::echo(s)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(list: &str) -> Vec<u32> {
        parse(list, 65536).unwrap().unwrap().members().collect()
    }

    #[test]
    fn parses_what_runc_parses() {
        assert_eq!(parse("", 65536).unwrap(), None);
        assert_eq!(set("0"), [0]);
        assert_eq!(set("0-1"), [0, 1]);
        assert_eq!(set(",0,1,"), [0, 1]);
        assert_eq!(set("0,1,2-3"), [0, 1, 2, 3]);
        assert_eq!(set("1, 2, 1-2"), [1, 2]);
        assert_eq!(set("    , 1   , 3  ,  5-7,    "), [1, 3, 5, 6, 7]);
        assert_eq!(set("127-129, 1"), [1, 127, 128, 129]);
        assert_eq!(set("0,65536"), [0, 65536]);
        for bad in [
            "-", "1-", "-3", ",", " ", "54-53", "1 - 2", "65537", "0-65537", "a", "+1",
        ] {
            assert!(parse(bad, 65536).is_err(), "{bad:?}");
        }
        let e = parse("54-53", 65536).unwrap_err();
        assert!(
            e.contains("\"54-53\"") && e.contains("start is above the end"),
            "{e}"
        );
        let e = parse("2", 1).unwrap_err();
        assert!(e.contains("above 1"), "{e}");
    }

    #[test]
    fn masks_and_lists() {
        let m = parse("0-2,5,64", 65536).unwrap().unwrap();
        assert_eq!(m.words(), [0b100111, 1]);
        assert_eq!(m.bits(), 65);
        assert_eq!(m.to_list(), "0-2,5,64");
        assert_eq!(parse(" 3 ,1,2,", 99).unwrap().unwrap().to_list(), "1-3");
        assert_eq!(parse("0", 9).unwrap().unwrap().bits(), 1);
    }
}
