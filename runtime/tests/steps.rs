//! `steps_until` on a real plan: a propagate-only run stops at the state asked for.

use std::path::Path;
use vocc_runtime::plan::{steps_until, Plan, State};
use vocc_runtime::schema::load_plan;

fn plan() -> Plan {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plans/ok/osg.json");
    load_plan(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn ids(plan: &Plan, target: State) -> Vec<&str> {
    steps_until(plan, target)
        .into_iter()
        .map(|s| s.id.as_str())
        .collect()
}

#[test]
fn staged_stops_after_staging() {
    let plan = plan();
    assert_eq!(
        ids(&plan, State::Staged),
        [
            "stage:c01:osg/os",
            "stage:c01:osg/vdt",
            "stage:c01:osg/apps",
            "stage:c02:osg/os"
        ]
    );
}

#[test]
fn loaded_adds_the_loads_and_starts_nothing() {
    let plan = plan();
    let ids = ids(&plan, State::Loaded);
    assert_eq!(ids.len(), 7);
    assert_eq!(
        ids[4..],
        ["load:osg-head", "load:osg-worker1", "load:osg-worker2"]
    );
}

#[test]
fn running_and_paused_take_every_step_unstaged_and_stopped_none() {
    let plan = plan();
    assert_eq!(steps_until(&plan, State::Running).len(), plan.steps.len());
    assert_eq!(steps_until(&plan, State::Paused).len(), plan.steps.len());
    assert!(steps_until(&plan, State::Unstaged).is_empty());
    assert!(steps_until(&plan, State::Stopped).is_empty());
}

#[test]
fn a_step_waiting_for_a_later_state_pulls_it_in() {
    // A hand-written plan where a load waits for another node's readiness: stopping at
    // `loaded` must still start and wait for that node.
    let mut plan = plan();
    let load = plan
        .steps
        .iter_mut()
        .find(|s| s.id == "load:osg-worker1")
        .unwrap();
    load.after.push("ready:osg-head".to_owned());
    let ids = ids(&plan, State::Loaded);
    assert!(
        ids.contains(&"start:osg-head") && ids.contains(&"ready:osg-head"),
        "{ids:?}"
    );
    assert!(!ids.contains(&"start:osg-worker1"), "{ids:?}");
}
