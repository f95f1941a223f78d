//! What a bare token is, decided by its shape alone: numbers, number ranges, durations,
//! sizes, addresses, paths, references, name ranges, variables and plain words.
//!
//! The checks run in a fixed order (documented in GRAMMAR.md); the first shape that
//! matches wins. A token that has the shape of a number, size, address or range but an
//! impossible value is an error, so that `512X` or `300.1.2.3` are not silently taken
//! as names.

use crate::syntax::ValueKind;
use nom::branch::alt;
use nom::bytes::complete::{tag, take_till1, take_while};
use nom::character::complete::{alpha1, char, digit1, one_of, satisfy};
use nom::combinator::{all_consuming, opt, recognize, rest};
use nom::sequence::{pair, preceded, tuple};
use nom::IResult;
use std::net::Ipv4Addr;

/// Why a bare token is not a valid value; the parser turns it into a diagnostic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadValue {
    pub message: String,
    pub label: &'static str,
    pub hint: String,
}

fn bad(message: String, label: &'static str, hint: impl Into<String>) -> BadValue {
    BadValue {
        message,
        label,
        hint: hint.into(),
    }
}

/// Runs a nom parser that must consume the whole token.
fn whole<'a, O>(parser: impl FnMut(&'a str) -> IResult<&'a str, O>, s: &'a str) -> Option<O> {
    all_consuming(parser)(s).ok().map(|(_, o)| o)
}

/// The token as quoted in messages: long tokens are cut so a message stays one line.
fn shown(raw: &str) -> String {
    const MAX: usize = 40;
    match raw.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &raw[..cut]),
        None => raw.to_string(),
    }
}

/// `[A-Za-z_][A-Za-z0-9_-]*`
fn var_name(s: &str) -> IResult<&str, &str> {
    recognize(pair(
        satisfy(|c| c.is_ascii_alphabetic() || c == '_'),
        take_while(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
    ))(s)
}

/// `digits (. digits)? unit i? B?` as (integer part, fraction digits, unit letter).
fn size_parts(s: &str) -> IResult<&str, (&str, Option<&str>, char)> {
    let (s, (int, frac, unit, _, _)) = tuple((
        digit1,
        opt(preceded(char('.'), digit1)),
        one_of("KMGTkmgt"),
        opt(char('i')),
        opt(char('B')),
    ))(s)?;
    Ok((s, (int, frac, unit)))
}

/// `digits .. digits` as the two numbers, still text.
fn int_range_parts(s: &str) -> IResult<&str, (&str, &str)> {
    let (s, (lo, _, hi)) = tuple((digit1, tag(".."), digit1))(s)?;
    Ok((s, (lo, hi)))
}

/// `digits unit` with a unit of time (`s`, `min`, `h`), as the number and the seconds
/// the unit is worth.
fn duration_parts(s: &str) -> IResult<&str, (&str, u64)> {
    let (s, n) = digit1(s)?;
    let (s, unit) = alt((tag("s"), tag("min"), tag("h")))(s)?;
    let secs = match unit {
        "s" => 1,
        "min" => 60,
        _ => 3600,
    };
    Ok((s, (n, secs)))
}

/// `digits (. digits)? letters`: a number with some unit, valid or not; the letters.
fn number_with_letters(s: &str) -> IResult<&str, &str> {
    preceded(pair(digit1, opt(preceded(char('.'), digit1))), alpha1)(s)
}

/// `d.d.d.d (/ d)?` as the four octets and the prefix, all still text.
fn ip_parts(s: &str) -> IResult<&str, ([&str; 4], Option<&str>)> {
    let (s, (a, _, b, _, c, _, d)) = tuple((
        digit1,
        char('.'),
        digit1,
        char('.'),
        digit1,
        char('.'),
        digit1,
    ))(s)?;
    let (s, prefix) = opt(preceded(char('/'), digit1))(s)?;
    Ok((s, ([a, b, c, d], prefix)))
}

/// `prefix [lo-hi] suffix` with a non-empty prefix.
fn range_parts(s: &str) -> IResult<&str, (&str, &str, &str, &str)> {
    let (s, (prefix, _, lo, _, hi, _, suffix)) = tuple((
        take_till1(|c| c == '['),
        char('['),
        digit1,
        char('-'),
        digit1,
        char(']'),
        rest,
    ))(s)?;
    Ok((s, (prefix, lo, hi, suffix)))
}

/// Whether the unit letters of a number were meant as a unit of time.
fn looks_like_time(letters: &str) -> bool {
    const TIME: &[&str] = &[
        "sec", "secs", "second", "seconds", "mn", "mins", "minute", "minutes", "hr", "hrs", "hour",
        "hours", "d", "day", "days", "ms",
    ];
    TIME.contains(&letters.to_ascii_lowercase().as_str())
}

fn too_large_number(raw: &str) -> BadValue {
    bad(
        format!("number `{}` is too large", shown(raw)),
        "too large",
        format!("the largest number is {}", u64::MAX),
    )
}

/// Classifies one bare token (never empty, never containing whitespace or `{}"#;`).
pub(crate) fn classify(raw: &str) -> Result<ValueKind, BadValue> {
    match raw {
        "+" => return Ok(ValueKind::Plus),
        "=" => return Ok(ValueKind::Eq),
        _ => {}
    }
    if let Some(name) = raw.strip_prefix('$') {
        return match whole(var_name, name) {
            Some(_) => Ok(ValueKind::Var(name.to_string())),
            None => Err(bad(
                format!("invalid variable name `{}`", shown(raw)),
                "not a variable name",
                "a variable name starts with a letter or `_` and continues with letters, \
                 digits, `_` or `-`, as in `$workers`",
            )),
        };
    }
    if whole(digit1, raw).is_some() {
        return raw
            .parse()
            .map(ValueKind::Int)
            .map_err(|_| too_large_number(raw));
    }
    if let Some((lo, hi)) = whole(int_range_parts, raw) {
        let lo_n: u64 = lo.parse().map_err(|_| too_large_number(lo))?;
        let hi_n: u64 = hi.parse().map_err(|_| too_large_number(hi))?;
        if lo_n > hi_n {
            return Err(bad(
                format!("empty range `{}`", shown(raw)),
                "first number is larger than the last",
                format!("write the smaller number first, as in `{hi_n}..{lo_n}`"),
            ));
        }
        return Ok(ValueKind::IntRange(lo_n, hi_n));
    }
    if let Some((n, unit)) = whole(duration_parts, raw) {
        return n
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(unit))
            .map(ValueKind::Duration)
            .ok_or_else(|| {
                bad(
                    format!("duration `{}` is too large", shown(raw)),
                    "too large",
                    format!("the longest duration is {} seconds", u64::MAX),
                )
            });
    }
    if let Some((int, frac, unit)) = whole(size_parts, raw) {
        return size(raw, int, frac, unit).map(ValueKind::Size);
    }
    if let Some(letters) = whole(number_with_letters, raw) {
        return Err(bad(
            format!("unknown size unit `{}`", shown(letters)),
            "unknown unit",
            if looks_like_time(letters) {
                "a duration takes s, min or h, as in `10min`"
            } else {
                "use K, M, G or T, as in `512M`"
            },
        ));
    }
    if let Some((octets, prefix)) = whole(ip_parts, raw) {
        return address(raw, octets, prefix);
    }
    if raw.starts_with('/') {
        return Ok(ValueKind::Path(raw.to_string()));
    }
    if let Some((target, path)) = raw.split_once(':') {
        if !target.is_empty() && !target.contains('/') && !path.is_empty() {
            return Ok(ValueKind::Ref {
                target: target.to_string(),
                path: path.to_string(),
            });
        }
    }
    if let Some((prefix, lo, hi, suffix)) = whole(range_parts, raw) {
        if suffix.contains('[') {
            return Err(bad(
                format!("more than one range in `{}`", shown(raw)),
                "several ranges",
                "a name has at most one range, as in `c[01-16]`",
            ));
        }
        let lo_n: u64 = lo.parse().map_err(|_| too_large_number(lo))?;
        let hi_n: u64 = hi.parse().map_err(|_| too_large_number(hi))?;
        if lo_n > hi_n {
            return Err(bad(
                format!("empty range `{}`", shown(raw)),
                "first number is larger than the last",
                "write the smaller number first, as in `c[01-16]`",
            ));
        }
        return Ok(ValueKind::Range {
            prefix: prefix.to_string(),
            lo: lo_n,
            hi: hi_n,
            width: lo.len(),
            suffix: suffix.to_string(),
        });
    }
    Ok(ValueKind::Word(raw.to_string()))
}

/// Bytes of `int.frac` times the binary unit; a fraction of a byte is dropped.
fn size(raw: &str, int: &str, frac: Option<&str>, unit: char) -> Result<u64, BadValue> {
    let too_large = || {
        bad(
            format!("size `{}` is too large", shown(raw)),
            "too large",
            format!(
                "the largest size is {} bytes (just under 16777216T)",
                u64::MAX
            ),
        )
    };
    let power = match unit.to_ascii_uppercase() {
        'K' => 1,
        'M' => 2,
        'G' => 3,
        _ => 4,
    };
    let mult: u128 = 1u128 << (10 * power);
    // More than 20 integer digits is beyond u64 whatever the unit; stopping here keeps
    // the arithmetic below inside u128.
    if int.trim_start_matches('0').len() > 20 {
        return Err(too_large());
    }
    let whole_part: u128 = int.parse().map_err(|_| too_large())?;
    // Fraction digits beyond the 20th are worth less than one byte even for T.
    let frac = frac.unwrap_or("");
    let frac = &frac[..frac.len().min(20)];
    let frac_part: u128 = if frac.is_empty() {
        0
    } else {
        let num: u128 = frac.parse().map_err(|_| too_large())?;
        num * mult / 10u128.pow(frac.len() as u32)
    };
    let total = whole_part * mult + frac_part;
    u64::try_from(total).map_err(|_| too_large())
}

fn address(raw: &str, octets: [&str; 4], prefix: Option<&str>) -> Result<ValueKind, BadValue> {
    let mut bytes = [0u8; 4];
    for (b, o) in bytes.iter_mut().zip(octets) {
        *b = o.parse().map_err(|_| {
            bad(
                format!("invalid address `{}`", shown(raw)),
                "not an IPv4 address",
                "each of the four numbers of an address is between 0 and 255",
            )
        })?;
    }
    let ip = Ipv4Addr::from(bytes);
    match prefix {
        None => Ok(ValueKind::Ip(ip)),
        Some(p) => match p.parse::<u8>() {
            Ok(len) if len <= 32 => Ok(ValueKind::Cidr(ip, len)),
            _ => Err(bad(
                format!("invalid prefix length in `{}`", shown(raw)),
                "prefix length out of range",
                "the prefix length after `/` is between 0 and 32, as in `10.20.0.0/24`",
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ValueKind::*;

    fn ok(raw: &str) -> ValueKind {
        match classify(raw) {
            Ok(v) => v,
            Err(e) => panic!("{raw}: {}", e.message),
        }
    }

    fn err(raw: &str) -> String {
        match classify(raw) {
            Ok(v) => panic!("{raw}: expected an error, got {v:?}"),
            Err(e) => e.message,
        }
    }

    #[test]
    fn shapes() {
        assert_eq!(ok("+"), Plus);
        assert_eq!(ok("="), Eq);
        assert_eq!(ok("$workers"), Var("workers".into()));
        assert_eq!(ok("007"), Int(7));
        assert_eq!(ok("192.0.2.10"), Ip(Ipv4Addr::new(192, 0, 2, 10)));
        assert_eq!(ok("10.20.0.0/24"), Cidr(Ipv4Addr::new(10, 20, 0, 0), 24));
        assert_eq!(ok("/opt/vdt"), Path("/opt/vdt".into()));
        assert_eq!(
            ok("head:/opt/vdt"),
            Ref {
                target: "head".into(),
                path: "/opt/vdt".into()
            }
        );
        assert_eq!(ok("/a:b"), Path("/a:b".into()));
        assert_eq!(ok("a/b:c"), Word("a/b:c".into()));
        assert_eq!(ok("head:"), Word("head:".into()));
        assert_eq!(
            ok("c[01-16]-ib"),
            Range {
                prefix: "c".into(),
                lo: 1,
                hi: 16,
                width: 2,
                suffix: "-ib".into()
            }
        );
        assert_eq!(ok("1.5"), Word("1.5".into()));
        assert_eq!(ok("2.6.32"), Word("2.6.32".into()));
        assert_eq!(ok("g++"), Word("g++".into()));
        assert_eq!(ok("1..3"), IntRange(1, 3));
        assert_eq!(ok("2..2"), IntRange(2, 2));
        assert_eq!(ok("1..x"), Word("1..x".into()));
        assert_eq!(ok("../a"), Word("../a".into()));
        assert_eq!(ok("1...3"), Word("1...3".into()));
    }

    #[test]
    fn durations_take_seconds_minutes_or_hours() {
        assert_eq!(ok("30s"), Duration(30));
        assert_eq!(ok("10min"), Duration(600));
        assert_eq!(ok("2h"), Duration(7200));
        assert_eq!(ok("0s"), Duration(0));
        // `m` is a size unit (mebibytes): minutes are `min`.
        assert_eq!(ok("2m"), Size(2 << 20));
    }

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!(ok("512M"), Size(512 << 20));
        assert_eq!(ok("2g"), Size(2 << 30));
        assert_eq!(ok("1.5G"), Size(3 << 29));
        assert_eq!(ok("750MiB"), Size(750 << 20));
        assert_eq!(ok("96MB"), Size(96 << 20));
        assert_eq!(ok("1Ki"), Size(1024));
        assert_eq!(ok("1.3K"), Size(1331));
        assert_eq!(ok("16777215T"), Size(16777215 << 40));
        assert_eq!(ok("0.000000000000000000000000001T"), Size(0));
    }

    #[test]
    fn errors() {
        assert_eq!(err("512X"), "unknown size unit `X`");
        assert_eq!(err("2Gb"), "unknown size unit `Gb`");
        assert_eq!(err("16777216T"), "size `16777216T` is too large");
        assert_eq!(
            err("99999999999999999999999999999999999G"),
            "size `99999999999999999999999999999999999G` is too large"
        );
        assert_eq!(
            err("18446744073709551616"),
            "number `18446744073709551616` is too large"
        );
        assert_eq!(err("300.1.2.3"), "invalid address `300.1.2.3`");
        assert_eq!(err("10.0.0.0/33"), "invalid prefix length in `10.0.0.0/33`");
        assert_eq!(err("c[16-01]"), "empty range `c[16-01]`");
        assert_eq!(err("c[1-2]d[3-4]"), "more than one range in `c[1-2]d[3-4]`");
        assert_eq!(err("$1"), "invalid variable name `$1`");
        assert_eq!(err("3..1"), "empty range `3..1`");
        assert_eq!(
            err("1..99999999999999999999999"),
            "number `99999999999999999999999` is too large"
        );
        assert_eq!(
            err("9999999999999999999h"),
            "duration `9999999999999999999h` is too large"
        );
        assert_eq!(err("2d"), "unknown size unit `d`");
        assert_eq!(
            err("c[1-99999999999999999999999]"),
            "number `99999999999999999999999` is too large"
        );
    }
}
