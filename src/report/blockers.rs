//! `report --blockers`: the threads others wait for most, and what each was
//! doing while they waited, as a chain ("A waits for B; B sleeps in
//! clock_nanosleep", or "B waits for C; C ...").
//!
//! Self-contained on purpose: it sees rows of (ts, tid, comm, state,
//! wait_class, syscall, blocker_tid, weight_us) through [`BlockRow`] and
//! knows nothing of files or query engines, so whichever engine reads the
//! files feeds it. Rows may be fed more than once (the engine makes extra
//! passes for the threads [`Blockers::wanted`] names after a pass): a
//! waiter's row counts once per (ts, tid), a blocker's row is looked up by
//! (ts, tid).
//!
//! Thread time waiting on a blocker is the sum of the waiters' `weight_us`
//! over rows naming it in `blocker_tid`. What the blocker was doing is its
//! own row at the same tick, weighted by the waiting it caused; ticks with
//! no row of it (not sampled: another `--pid`, not active without `--all`)
//! show as "not sampled".

use std::collections::{BTreeMap, HashMap, HashSet};

/// One sample row, as far as blockers go.
#[derive(Debug, Clone, Copy)]
pub struct BlockRow<'a> {
    pub ts_us: i64,
    pub tid: u32,
    pub comm: &'a str,
    pub state: &'a str,
    pub wait_class: &'a str,
    pub syscall: Option<&'a str>,
    pub blocker_tid: Option<u32>,
    pub weight_us: i64,
}

/// What a thread was doing at one tick.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Doing {
    pub state: String,
    pub wait_class: String,
    pub syscall: Option<String>,
    /// Whom it waited for itself.
    pub blocker_tid: Option<u32>,
}

/// A blocker, what the waiting on it came to, and what it did meanwhile.
#[derive(Debug, Clone, PartialEq)]
pub struct Chain {
    pub tid: u32,
    /// Its name (from its own rows; empty when never sampled).
    pub comm: String,
    /// Thread time others spent waiting for it, microseconds.
    pub waited_us: i64,
    /// Distinct threads that waited for it.
    pub waiters: usize,
    /// What it was doing, largest share first: (doing, waited_us during
    /// it); None: not sampled at those ticks.
    pub doing: Vec<(Option<Doing>, i64)>,
    /// Its own main blocker, when the largest share of its doing is a wait
    /// for another thread (the next level of the chain).
    pub next: Option<Box<Chain>>,
}

/// The accumulated rows.
#[derive(Default)]
pub struct Blockers {
    /// (ts, waiter) -> (blocker, weight): each waiter row once.
    waits: HashMap<(i64, u32), (u32, i64)>,
    /// (ts, tid) -> what a wanted thread was doing.
    at: HashMap<(i64, u32), Doing>,
    comms: HashMap<u32, String>,
    wanted: HashSet<u32>,
}

impl Blockers {
    pub fn new() -> Blockers {
        Blockers::default()
    }

    /// Take one row.
    pub fn feed(&mut self, row: &BlockRow<'_>) {
        if let Some(blocker) = row.blocker_tid.filter(|&b| b != row.tid) {
            self.waits
                .insert((row.ts_us, row.tid), (blocker, row.weight_us));
            self.wanted.insert(blocker);
        }
        if self.wanted.contains(&row.tid) {
            self.comms
                .entry(row.tid)
                .or_insert_with(|| row.comm.to_string());
            self.at.insert(
                (row.ts_us, row.tid),
                Doing {
                    state: row.state.to_string(),
                    wait_class: row.wait_class.to_string(),
                    syscall: row.syscall.map(str::to_string),
                    blocker_tid: row.blocker_tid,
                },
            );
        }
    }

    /// Threads whose rows are wanted: every blocker seen so far. A pass
    /// that adds some asks for another pass over the rows.
    pub fn wanted(&self) -> usize {
        self.wanted.len()
    }

    /// Whether `tid`'s rows are wanted.
    pub fn wants(&self, tid: u32) -> bool {
        self.wanted.contains(&tid)
    }

    /// The `top` blockers by thread time waited on them, each with a chain
    /// of at most `depth` levels.
    pub fn chains(&self, top: usize, depth: usize) -> Vec<Chain> {
        let mut by_blocker: HashMap<u32, Vec<(i64, u32, i64)>> = HashMap::new();
        for (&(ts, waiter), &(blocker, weight)) in &self.waits {
            by_blocker
                .entry(blocker)
                .or_default()
                .push((ts, waiter, weight));
        }
        let mut chains: Vec<Chain> = by_blocker
            .iter()
            .map(|(&tid, waits)| {
                self.chain(tid, waits, &by_blocker, depth.max(1), &mut HashSet::new())
            })
            .collect();
        chains.sort_by(|a, b| b.waited_us.cmp(&a.waited_us).then(a.tid.cmp(&b.tid)));
        chains.truncate(top);
        chains
    }

    fn chain(
        &self,
        tid: u32,
        waits: &[(i64, u32, i64)],
        by_blocker: &HashMap<u32, Vec<(i64, u32, i64)>>,
        depth: usize,
        seen: &mut HashSet<u32>,
    ) -> Chain {
        seen.insert(tid);
        let mut doing: BTreeMap<Option<Doing>, i64> = BTreeMap::new();
        let mut waiters = HashSet::new();
        let mut waited_us = 0;
        for &(ts, waiter, weight) in waits {
            waited_us += weight;
            waiters.insert(waiter);
            *doing.entry(self.at.get(&(ts, tid)).cloned()).or_default() += weight;
        }
        let mut doing: Vec<(Option<Doing>, i64)> = doing.into_iter().collect();
        doing.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        // The next level: the thread it waited for most while others
        // waited for it, at those ticks (a cycle stops the chain).
        let next = (depth > 1)
            .then(|| doing.first().and_then(|(d, _)| d.as_ref()?.blocker_tid))
            .flatten()
            .filter(|next| !seen.contains(next))
            .map(|next| {
                let ticks: HashSet<i64> = waits.iter().map(|w| w.0).collect();
                let own: Vec<(i64, u32, i64)> = by_blocker
                    .get(&next)
                    .map(|all| {
                        all.iter()
                            .filter(|w| w.1 == tid && ticks.contains(&w.0))
                            .copied()
                            .collect()
                    })
                    .unwrap_or_default();
                Box::new(self.chain(next, &own, by_blocker, depth - 1, seen))
            });
        Chain {
            tid,
            comm: self.comms.get(&tid).cloned().unwrap_or_default(),
            waited_us,
            waiters: waiters.len(),
            doing,
            next,
        }
    }
}

/// `state/wait_class in syscall` of a doing, or "not sampled".
pub fn doing_text(doing: &Option<Doing>) -> String {
    match doing {
        None => "not sampled".to_string(),
        Some(d) => {
            let mut text = format!("{} ({})", d.state, d.wait_class);
            if let Some(syscall) = &d.syscall {
                text.push_str(" in ");
                text.push_str(syscall);
            }
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row<'a>(
        ts: i64,
        tid: u32,
        comm: &'a str,
        state: &'a str,
        syscall: &'a str,
        blocker: Option<u32>,
    ) -> BlockRow<'a> {
        BlockRow {
            ts_us: ts,
            tid,
            comm,
            state,
            wait_class: if blocker.is_some() { "LOCK" } else { "TIMER" },
            syscall: Some(syscall),
            blocker_tid: blocker,
            weight_us: 10_000,
        }
    }

    #[test]
    fn a_chain_of_two_levels() {
        let mut b = Blockers::new();
        // Pass 1 then 2: three waiters on 10 (which waits on 20 for two
        // ticks of three), 20 sleeps; one waiter on 30.
        for _pass in 0..2 {
            for ts in 0..3 {
                for waiter in [1, 2, 3] {
                    b.feed(&row(ts, waiter, "w", "SLEEP", "futex", Some(10)));
                }
                let ten = if ts < 2 { Some(20) } else { None };
                b.feed(&row(
                    ts,
                    10,
                    "holder",
                    "SLEEP",
                    if ten.is_some() {
                        "futex"
                    } else {
                        "clock_nanosleep"
                    },
                    ten,
                ));
                b.feed(&row(ts, 20, "deep", "SLEEP", "clock_nanosleep", None));
                b.feed(&row(ts, 4, "w4", "SLEEP", "futex", Some(30)));
            }
        }
        let chains = b.chains(10, 3);
        assert_eq!(chains.len(), 3);
        let first = &chains[0];
        assert_eq!(
            (
                first.tid,
                first.comm.as_str(),
                first.waiters,
                first.waited_us
            ),
            (10, "holder", 3, 90_000)
        );
        assert_eq!(first.doing[0].1, 60_000);
        assert_eq!(doing_text(&first.doing[0].0), "SLEEP (LOCK) in futex");
        let next = first.next.as_ref().expect("second level");
        assert_eq!(
            (next.tid, next.comm.as_str(), next.waited_us),
            (20, "deep", 20_000)
        );
        assert_eq!(
            doing_text(&next.doing[0].0),
            "SLEEP (TIMER) in clock_nanosleep"
        );
        // 30 was never sampled.
        let never = chains.iter().find(|c| c.tid == 30).expect("30");
        assert_eq!(doing_text(&never.doing[0].0), "not sampled");
        assert!(b.chains(1, 1)[0].next.is_none());
    }
}
