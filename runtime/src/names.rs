//! The one rule for names from a plan that become paths (labels) and for the paths a
//! plan gives (relative paths of labels), and the small value checks `load_plan` makes
//! (addresses, MACs, digests). Every check says what is wrong and what is allowed.
//!
//! Invariant: a label is never empty, never `.` or `..`, holds no `/`, no control
//! character and no shell or option syntax (it does not start with `-`), so joining one
//! to a directory stays inside that directory.

use std::net::IpAddr;

/// The longest label: a file name with room for an extension, far below `NAME_MAX`.
pub const LABEL_MAX: usize = 128;

/// What a label may be, for messages. The schema (`plan.rs`) says the same with the
/// pattern `^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}$`.
pub const LABEL_RULE: &str = "use 1 to 128 ASCII letters, digits, `-`, `_`, `.` and `+`, \
                              starting with a letter, a digit or `_`";

/// Why `s` is not a label, if it is not one.
pub fn label_problem(s: &str) -> Option<&'static str> {
    let first = s.bytes().next()?;
    if s.len() > LABEL_MAX {
        return Some("is too long for a label");
    }
    if !(first.is_ascii_alphanumeric() || first == b'_') {
        return Some("is not a label");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b))
    {
        return Some("is not a label");
    }
    None
}

/// Whether `s` is a label.
pub fn is_label(s: &str) -> bool {
    !s.is_empty() && label_problem(s).is_none()
}

/// Why `path` is not a relative path of labels under the directory `under` (as in
/// `nodes/x` under `nodes`), if it is not one. Checked lexically: no absolute path, no
/// empty, `.` or `..` component, so joining it to its root stays inside the root.
pub fn rel_path_problem(path: &str, under: &str) -> Option<String> {
    if path.is_empty() {
        return Some("is empty".to_owned());
    }
    if path.starts_with('/') {
        return Some("is absolute".to_owned());
    }
    let parts: Vec<&str> = path.split('/').collect();
    if parts.contains(&"..") {
        return Some("leaves its root with `..`".to_owned());
    }
    if let Some(bad) = parts.iter().find(|p| !is_label(p)) {
        return Some(if bad.is_empty() {
            "has an empty component".to_owned()
        } else {
            format!("has the component `{}`, which is not a label", shown(bad))
        });
    }
    if parts.len() < 2 || parts[0] != under {
        return Some(format!("is not under `{under}/`"));
    }
    None
}

/// Why `store` cannot be a store directory: it may be absolute (a site's
/// `/var/lib/vocc`) or relative to the plan, but never climbs with `..`.
pub fn store_problem(store: &str) -> Option<&'static str> {
    if store.is_empty() {
        return Some("is empty");
    }
    if store.split('/').any(|p| p == "..") {
        return Some("climbs out with `..`");
    }
    None
}

/// Whether `s` is an IP address (v4 in dotted quads, or v6).
pub fn is_address(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok()
}

/// Whether `s` is `<address>/<prefix length>` with a prefix that fits the address.
pub fn is_subnet(s: &str) -> bool {
    let Some((addr, len)) = s.split_once('/') else {
        return false;
    };
    let Ok(addr) = addr.parse::<IpAddr>() else {
        return false;
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    len.parse::<u8>().is_ok_and(|l| l <= max) && !len.starts_with('+')
}

/// Whether `s` is a MAC address: six two-digit hexadecimal numbers separated by `:`.
pub fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether `s` is a host name or a dotted domain of labels (a host's address may be
/// either an IP address or a name).
pub fn is_host_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_label)
}

/// Whether `s` is a sha256 digest in lowercase hexadecimal.
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `s` made safe to print: control characters escaped, long values cut.
pub fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(80).flat_map(char::escape_debug).collect();
    if s.chars().count() > 80 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_plain_names_and_paths_stay_inside() {
        for good in ["demo", "demo-head", "os+worker", "tiny.v2", "_base", "C01"] {
            assert!(is_label(good), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "-x",
            "+x",
            ".hidden",
            "a/b",
            "/abs",
            "a b",
            "a\nb",
            "a\u{1b}[31m",
        ] {
            assert!(!is_label(bad), "{bad:?}");
        }
        assert!(!is_label(&"a".repeat(LABEL_MAX + 1)));
        assert_eq!(rel_path_problem("nodes/demo-head", "nodes"), None);
        assert_eq!(rel_path_problem("layers/demo/os.img", "layers"), None);
        for bad in [
            "",
            "/tmp/x",
            "../../victim",
            "nodes/../../x",
            "nodes//x",
            "nodes/./x",
            "nodes",
            "layers/x",
        ] {
            assert!(rel_path_problem(bad, "nodes").is_some(), "{bad:?}");
        }
        assert_eq!(store_problem("/var/lib/vocc"), None);
        assert_eq!(store_problem(".vocc/store"), None);
        assert!(store_problem("../../etc").is_some());
    }

    #[test]
    fn values_are_checked_by_their_kind() {
        assert!(is_mac("52:54:00:aB:00:10"));
        assert!(!is_mac("zz:zz") && !is_mac("52:54:00:00:00:zz") && !is_mac("52:54:00:00:00"));
        assert!(is_address("10.1.2.3") && is_address("fe80::1"));
        assert!(!is_address("999.1.1.1") && !is_address("10.1.2"));
        assert!(is_subnet("10.20.0.0/24") && !is_subnet("10.20.0.0/33") && !is_subnet("x/8"));
        assert!(is_sha256(&"a0".repeat(32)) && !is_sha256("abc"));
        assert_eq!(shown("a\u{1b}[31m\n"), "a\\u{1b}[31m\\n");
    }
}
