//! Slurm hostlist expressions: `worker1,…,worker8` becomes `worker[1-8]`, so that a
//! slurm.conf stays a few lines long for any cluster size.
//!
//! Names are taken in the order given. A name is a prefix and an optional decimal
//! suffix; consecutive names with the same prefix and consecutive numbers join one
//! range. Zero-padded numbers (`c01`) keep their width, and join only numbers of that
//! width, because Slurm reads `c[01-10]` as padded to two digits.

/// The hostlist expression of `names`.
pub fn compress<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut group: Option<Group<'_>> = None;
    for name in names {
        let (prefix, digits) = split(name);
        let Some(digits) = digits else {
            flush(&mut out, group.take());
            out.push(name.to_owned());
            continue;
        };
        let Ok(n) = digits.parse::<u64>() else {
            flush(&mut out, group.take());
            out.push(name.to_owned());
            continue;
        };
        let padded = digits.len() > 1 && digits.starts_with('0');
        if let Some(g) = group.as_mut().filter(|g| g.prefix == prefix) {
            let fits = match g.width {
                Some(w) => digits.len() == w,
                None => !padded,
            };
            if fits {
                match g.ranges.last_mut() {
                    Some(r) if r.1.checked_add(1) == Some(n) => r.1 = n,
                    _ => g.ranges.push((n, n)),
                }
                continue;
            }
        }
        flush(&mut out, group.take());
        group = Some(Group {
            prefix,
            width: padded.then_some(digits.len()),
            ranges: vec![(n, n)],
        });
    }
    flush(&mut out, group);
    out.join(",")
}

struct Group<'a> {
    prefix: &'a str,
    /// The digit count of zero-padded numbers; `None` for plain numbers.
    width: Option<usize>,
    ranges: Vec<(u64, u64)>,
}

fn split(name: &str) -> (&str, Option<&str>) {
    let cut = name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if cut == name.len() {
        (name, None)
    } else {
        (&name[..cut], Some(&name[cut..]))
    }
}

fn flush(out: &mut Vec<String>, group: Option<Group<'_>>) {
    let Some(g) = group else { return };
    let w = g.width.unwrap_or(0);
    if let [(lo, hi)] = g.ranges[..] {
        if lo == hi {
            out.push(format!("{}{lo:0w$}", g.prefix));
            return;
        }
    }
    let ranges: Vec<String> = g
        .ranges
        .iter()
        .map(|&(lo, hi)| {
            if lo == hi {
                format!("{lo:0w$}")
            } else {
                format!("{lo:0w$}-{hi:0w$}")
            }
        })
        .collect();
    out.push(format!("{}[{}]", g.prefix, ranges.join(",")));
}

#[cfg(test)]
mod tests {
    use super::compress;

    fn names(prefix: &str, r: std::ops::RangeInclusive<u32>) -> Vec<String> {
        r.map(|i| format!("{prefix}{i}")).collect()
    }

    #[test]
    fn ranges() {
        let w = names("worker", 1..=8);
        assert_eq!(compress(w.iter().map(String::as_str)), "worker[1-8]");
        assert_eq!(compress(["head"]), "head");
        assert_eq!(compress(["worker3"]), "worker3");
        assert_eq!(compress(["a1", "a2", "a4", "b1", "c"]), "a[1-2,4],b1,c");
        assert_eq!(compress(["n9", "n10", "n11"]), "n[9-11]");
        assert_eq!(compress(["c01", "c02", "c03", "c10"]), "c[01-03,10]");
        assert_eq!(compress(["c09", "c10", "c100"]), "c[09-10],c100");
        assert_eq!(compress(["x1", "x01"]), "x1,x01");
        assert_eq!(compress(["vo-a-w1", "vo-a-w2"]), "vo-a-w[1-2]");
        assert_eq!(compress(Vec::<&str>::new()), "");
        let big = names("worker", 1..=10_000);
        assert_eq!(compress(big.iter().map(String::as_str)), "worker[1-10000]");
    }
}
