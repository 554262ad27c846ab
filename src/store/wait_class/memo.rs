//! [`Memo`]: the writer's remembered wait classes (the rules searched
//! once per combination, not once per row).

use super::{base_name, classify, ThreadState, WaitClass, WaitFacts};

/// [`classify`] with its answers remembered, for a writer that classifies
/// the same few combinations row after row (the rules are ~40 conditions
/// with string comparisons; a remembered answer is one hash lookup and
/// one comparison of the kernel function's name). Keyed by the syscall's
/// number, which the caller guarantees names `facts.syscall`; at most
/// `MEMO_KFUNCS` kernel functions are kept per (state, flags, syscall),
/// the rest are classified each time. Same answers as `classify`, always.
#[derive(Debug, Default)]
pub struct Memo {
    known: rustc_hash::FxHashMap<MemoKey, Vec<Remembered>>,
}

/// A kernel function's base name (None without one) and its class.
type Remembered = (Option<Box<str>>, WaitClass);

/// State, flags (own I/O, kernel thread, kernel lock) and syscall number.
type MemoKey = (ThreadState, u8, Option<i32>);

/// Kernel functions remembered per (state, flags, syscall).
const MEMO_KFUNCS: usize = 16;

impl Memo {
    /// The class of `facts`, whose syscall is number `syscall_nr`.
    pub fn classify(&mut self, syscall_nr: Option<i32>, facts: &WaitFacts<'_>) -> WaitClass {
        let flags = u8::from(facts.own_io)
            | u8::from(facts.kthread) << 1
            | u8::from(facts.kernel_lock) << 2;
        let kfunc = facts.kfunc.map(base_name);
        let seen = self
            .known
            .entry((facts.state, flags, syscall_nr))
            .or_default();
        if let Some((_, class)) = seen.iter().find(|(k, _)| k.as_deref() == kfunc) {
            return *class;
        }
        let class = classify(facts);
        if seen.len() < MEMO_KFUNCS {
            seen.push((kfunc.map(Box::from), class));
        }
        class
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Kfunc, Syscall, RULES};
    use super::*;

    /// The memo answers as `classify` does, for every rule's own syscalls
    /// and kernel functions in every state and flag combination, asked
    /// twice (remembered the second time), and past its per-key limit.
    #[test]
    fn memo_answers_as_classify() {
        let mut syscalls: Vec<Option<&str>> = vec![None, Some("getppid")];
        let mut kfuncs: Vec<Option<String>> = vec![None, Some("x.isra.0".into())];
        for rule in RULES {
            if let Syscall::In(names) = rule.syscall {
                syscalls.extend(names.iter().map(|n| Some(*n)));
            }
            if let Kfunc::In(patterns) = rule.kfunc {
                for p in patterns {
                    let name = p.trim_end_matches('*');
                    kfuncs.push(Some(format!("{name}_x.constprop.0")));
                    kfuncs.push(Some(name.to_string()));
                }
            }
        }
        let mut memo = Memo::default();
        let mut asked = 0;
        for round in 0..2 {
            for state in ThreadState::ALL {
                for flags in 0..8u8 {
                    for (nr, syscall) in syscalls.iter().enumerate() {
                        for kfunc in &kfuncs {
                            let facts = WaitFacts {
                                state,
                                syscall: *syscall,
                                kfunc: kfunc.as_deref(),
                                own_io: flags & 1 != 0,
                                kthread: flags & 2 != 0,
                                kernel_lock: flags & 4 != 0,
                            };
                            let nr = syscall.map(|_| nr as i32);
                            assert_eq!(
                                memo.classify(nr, &facts),
                                classify(&facts),
                                "round {round}: {facts:?}"
                            );
                            asked += 1;
                        }
                    }
                }
            }
        }
        assert!(kfuncs.len() > MEMO_KFUNCS && asked > 1000, "{asked}");
    }
}
