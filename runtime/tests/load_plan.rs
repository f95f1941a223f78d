//! `load_plan` on data: every plan in `plans/ok` loads and writes back unchanged; every
//! case in `plans/bad` is rejected with the error it states. A bad case is a JSON file
//! with either `text` (the plan as it is) or `base` (a plan of `plans/ok`) and `change`
//! (a list of `{"at": <JSON pointer>, "set": <value>}` or `{"at": ..., "remove": true}`),
//! and `error`, the expected message. `VOCC_BLESS=1` writes the actual messages back.

use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use vocc_runtime::schema::load_plan;

fn dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/plans")
        .join(name)
}

fn cases(name: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir(name))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no cases in {name}");
    files
}

#[test]
fn good_plans_load_and_write_back_unchanged() {
    for path in cases("ok") {
        let text = fs::read_to_string(&path).unwrap();
        let plan = load_plan(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            serde_json::to_string_pretty(&plan).unwrap() + "\n",
            text,
            "{}",
            path.display()
        );
    }
}

/// The plan text a bad case describes.
fn case_text(case: &Value) -> String {
    if let Some(text) = case["text"].as_str() {
        return text.to_owned();
    }
    let base = case["base"].as_str().expect("a case has `text` or `base`");
    let mut plan: Value =
        serde_json::from_str(&fs::read_to_string(dir("ok").join(base)).unwrap()).unwrap();
    for change in case["change"]
        .as_array()
        .expect("a case with `base` has `change`")
    {
        let at = change["at"].as_str().unwrap();
        let (parent, key) = at.rsplit_once('/').unwrap();
        let parent = plan
            .pointer_mut(parent)
            .unwrap_or_else(|| panic!("no {parent} in {base}"));
        match (parent, change.get("set")) {
            (Value::Object(map), Some(value)) => {
                map.insert(key.to_owned(), value.clone());
            }
            (Value::Object(map), None) => {
                map.remove(key);
            }
            (Value::Array(items), Some(value)) => {
                items[key.parse::<usize>().unwrap()] = value.clone()
            }
            (Value::Array(items), None) => {
                items.remove(key.parse::<usize>().unwrap());
            }
            _ => panic!("{at} is not in an object or array"),
        }
    }
    serde_json::to_string_pretty(&plan).unwrap()
}

#[test]
fn bad_plans_are_rejected_with_a_clear_error() {
    let bless = std::env::var_os("VOCC_BLESS").is_some();
    let mut failures = Vec::new();
    for path in cases("bad") {
        let mut case: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        let actual = match load_plan(&case_text(&case)) {
            Ok(_) => "(loaded)".to_owned(),
            Err(e) => e.to_string(),
        };
        if bless {
            case["error"] = Value::String(actual);
            fs::write(&path, serde_json::to_string_pretty(&case).unwrap() + "\n").unwrap();
        } else if case["error"].as_str() != Some(actual.as_str()) {
            failures.push(format!(
                "{}\n  expected: {}\n  actual:   {actual}",
                path.display(),
                case["error"]
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n(VOCC_BLESS=1 rewrites the expected errors)",
        failures.join("\n")
    );
}
