//! Running a dependency graph of tasks on a bounded pool of threads. A task starts once
//! everything it waits for has succeeded; when a task fails, everything that waits for
//! it (directly or not) is skipped, and the rest of the graph goes on.
//!
//! The caller's `done` runs on the calling thread, one result at a time and in
//! completion order, so it may update shared records (the journal) without locks.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::sync::{Condvar, Mutex};

/// How a task ended: its result, or `None` when it was skipped because something it
/// waits for failed (the index of that task is given).
pub enum Ended<T, E> {
    Ran(Result<T, E>),
    Skipped { because: usize },
}

/// Runs tasks `0..deps.len()`; `deps[i]` are the tasks `i` waits for (indices must be
/// in range; a cycle leaves its tasks unrun and reported as skipped by themselves).
pub fn run<T, E, W, D>(deps: &[Vec<usize>], jobs: usize, work: W, mut done: D)
where
    T: Send,
    E: Send,
    W: Fn(usize) -> Result<T, E> + Sync,
    D: FnMut(usize, Ended<T, E>),
{
    let n = deps.len();
    if n == 0 {
        return;
    }
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut waiting: Vec<usize> = vec![0; n];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            dependents[d].push(i);
            waiting[i] += 1;
        }
    }
    let queue = Mutex::new((VecDeque::new(), false));
    let wake = Condvar::new();
    let (tx, rx) = mpsc::channel::<(usize, Result<T, E>)>();
    let workers = jobs.clamp(1, n);

    std::thread::scope(|scope| {
        for _ in 0..workers {
            let tx = tx.clone();
            let (queue, wake, work) = (&queue, &wake, &work);
            scope.spawn(move || loop {
                let task = {
                    let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
                    loop {
                        if let Some(t) = q.0.pop_front() {
                            break Some(t);
                        }
                        if q.1 {
                            break None;
                        }
                        q = wake.wait(q).unwrap_or_else(|e| e.into_inner());
                    }
                };
                let Some(task) = task else { return };
                if tx.send((task, work(task))).is_err() {
                    return;
                }
            });
        }
        drop(tx);

        let push = |tasks: &[usize]| {
            if tasks.is_empty() {
                return;
            }
            let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
            q.0.extend(tasks.iter().copied());
            drop(q);
            // One waiter per task: waking every idle worker for each task would cost
            // O(jobs) per step.
            for _ in tasks {
                wake.notify_one();
            }
        };
        let mut skipped = vec![false; n];
        let mut resolved = 0usize;
        let mut in_flight = 0usize;
        let initial: Vec<usize> = (0..n).filter(|&i| waiting[i] == 0).collect();
        in_flight += initial.len();
        push(&initial);
        while resolved < n && in_flight > 0 {
            let Ok((task, result)) = rx.recv() else { break };
            in_flight -= 1;
            resolved += 1;
            let ok = result.is_ok();
            done(task, Ended::Ran(result));
            if ok {
                let mut ready = Vec::new();
                for &d in &dependents[task] {
                    waiting[d] -= 1;
                    if waiting[d] == 0 && !skipped[d] {
                        ready.push(d);
                    }
                }
                in_flight += ready.len();
                push(&ready);
            } else {
                let mut stack = dependents[task].clone();
                while let Some(d) = stack.pop() {
                    if !skipped[d] {
                        skipped[d] = true;
                        resolved += 1;
                        done(d, Ended::Skipped { because: task });
                        stack.extend(dependents[d].iter().copied());
                    }
                }
            }
        }
        // Tasks never reached (a cycle) are reported rather than silently dropped.
        for i in 0..n {
            if waiting[i] > 0 && !skipped[i] && resolved < n {
                skipped[i] = true;
                resolved += 1;
                done(i, Ended::Skipped { because: i });
            }
        }
        let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
        q.1 = true;
        drop(q);
        wake.notify_all();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_in_dependency_order_and_skips_after_a_failure() {
        // 0 → 1 → 2, 0 → 3; 1 fails.
        let deps = vec![vec![], vec![0], vec![1], vec![0]];
        let mut seen = Vec::new();
        run(
            &deps,
            4,
            |i| if i == 1 { Err("no") } else { Ok(i) },
            |i, e| {
                seen.push(match e {
                    Ended::Ran(Ok(_)) => format!("{i} ok"),
                    Ended::Ran(Err(_)) => format!("{i} failed"),
                    Ended::Skipped { because } => format!("{i} skipped by {because}"),
                })
            },
        );
        assert_eq!(seen[0], "0 ok");
        assert!(seen.contains(&"1 failed".to_owned()));
        assert!(seen.contains(&"2 skipped by 1".to_owned()));
        assert!(seen.contains(&"3 ok".to_owned()));
        assert_eq!(seen.len(), 4);
    }

    #[test]
    fn a_diamond_runs_each_task_once() {
        let deps = vec![vec![], vec![0], vec![0], vec![1, 2]];
        let mut count = 0;
        run(&deps, 2, Ok::<_, ()>, |_, e| {
            assert!(matches!(e, Ended::Ran(Ok(_))));
            count += 1
        });
        assert_eq!(count, 4);
    }
}
