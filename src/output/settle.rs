//! One tick's rows describe one instant: the CPUs as they were when the
//! scan started, without the sampler's own footprint.
//!
//! The sampler runs on one of the CPUs it samples. To take a sample it (or
//! the kernel work its wakeup causes) has taken that CPU from a thread,
//! which the table then shows as waiting for a CPU; without the sampler
//! that thread would have been running. [`restore_displaced`] puts it back
//! on its CPU, and [`settle_cpus`] keeps any CPU from being claimed twice.
//! Both work on the decoded samples, so the hooks pay nothing for them.

use crate::output::sample::Sample;
use crate::store::thread_state::ThreadState;

fn since_us(now_ns: u64, then_ns: u64) -> Option<u64> {
    (then_ns != 0 && then_ns <= now_ns).then(|| (now_ns - then_ns) / 1_000)
}

/// Put the thread the sampler displaced back on the sampler's CPU.
///
/// `sampler_cpu` is the CPU the scan runs on, `woke_ns` when the sampler
/// was due to wake (the tick's deadline), `now_ns` when the scan started.
/// The displaced thread is the one switched out last, involuntarily, from
/// that CPU and still waiting for it: by the agent itself, or, after the
/// sampler's wakeup, by whatever ran before the sampler did. A thread that
/// someone else preempted before the wakeup really waits, and stays so.
pub fn restore_displaced(samples: &mut [Sample], sampler_cpu: u32, woke_ns: u64, now_ns: u64) {
    let displaced = samples
        .iter_mut()
        .filter(|s| {
            s.state == ThreadState::RunQueue
                && s.cpu == sampler_cpu
                && s.preempted
                && s.switch_out_ns != 0
                && s.switch_out_ns <= now_ns
        })
        .max_by_key(|s| s.switch_out_ns);
    if let Some(s) = displaced {
        if s.agent_preempted || s.switch_out_ns >= woke_ns {
            s.state = ThreadState::OnCpu;
            s.state_since_us = since_us(now_ns, s.switch_in_ns);
            s.since_lower_bound = false;
            s.running_since_ns = s.switch_in_ns;
        }
    }
}

/// At any instant a CPU runs one thread. A thread reported on CPU because
/// the agent preempted it, or because its switch-out came after the scan
/// started, can collide with the thread that was really switched in last
/// on that CPU; keep the latest switch-in and report the others as waiting
/// since their switch-out.
pub fn settle_cpus(samples: &mut [Sample], now_ns: u64) {
    let mut holder: Vec<Option<usize>> = Vec::new();
    for i in 0..samples.len() {
        if samples[i].state != ThreadState::OnCpu {
            continue;
        }
        let cpu = samples[i].cpu as usize;
        if cpu >= holder.len() {
            holder.resize(cpu + 1, None);
        }
        let loser = match holder[cpu] {
            None => {
                holder[cpu] = Some(i);
                continue;
            }
            Some(j) if samples[i].running_since_ns > samples[j].running_since_ns => {
                holder[cpu] = Some(i);
                j
            }
            Some(_) => i,
        };
        let s = &mut samples[loser];
        s.state = ThreadState::RunQueue;
        s.state_since_us = since_us(now_ns, s.switch_out_ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A spinner preempted on `cpu` at `switch_out_ns`, running since 1 ms.
    fn preempted(tid: u32, cpu: u32, switch_out_ns: u64, by_agent: bool) -> Sample {
        Sample {
            tid,
            cpu,
            state: ThreadState::RunQueue,
            state_since_us: Some(0),
            switch_in_ns: 1_000_000,
            switch_out_ns,
            preempted: true,
            agent_preempted: by_agent,
            ..Default::default()
        }
    }

    fn states(samples: &[Sample]) -> Vec<(u32, ThreadState, Option<u64>)> {
        samples
            .iter()
            .map(|s| (s.tid, s.state, s.state_since_us))
            .collect()
    }

    #[test]
    fn the_thread_the_sampler_displaced_is_running() {
        let (woke, now) = (9_000_000, 9_500_000);
        // 1: displaced by the agent on CPU 0; 2: preempted there earlier
        // by someone else; 3: displaced by the agent, but on CPU 1.
        let mut samples = vec![
            preempted(1, 0, 9_100_000, true),
            preempted(2, 0, 5_000_000, false),
            preempted(3, 1, 9_200_000, true),
        ];
        restore_displaced(&mut samples, 0, woke, now);
        assert_eq!(
            states(&samples),
            vec![
                (1, ThreadState::OnCpu, Some(8_500)),
                (2, ThreadState::RunQueue, Some(0)),
                (3, ThreadState::RunQueue, Some(0)),
            ]
        );
        assert_eq!(samples[0].running_since_ns, 1_000_000);
    }

    #[test]
    fn kernel_work_after_the_wakeup_counts_as_the_sampler() {
        // Preempted after the wakeup by a kworker that ran before the
        // sampler: running, for the sample.
        let mut samples = vec![preempted(1, 0, 9_100_000, false)];
        restore_displaced(&mut samples, 0, 9_000_000, 9_500_000);
        assert_eq!(samples[0].state, ThreadState::OnCpu);
        // Preempted before the wakeup by someone else: it waits.
        let mut samples = vec![preempted(1, 0, 8_900_000, false)];
        restore_displaced(&mut samples, 0, 9_000_000, 9_500_000);
        assert_eq!(samples[0].state, ThreadState::RunQueue);
        // A switch-out after the scan started is not the sampler's doing.
        let mut samples = vec![preempted(1, 0, 9_600_000, true)];
        restore_displaced(&mut samples, 0, 9_000_000, 9_500_000);
        assert_eq!(samples[0].state, ThreadState::RunQueue);
    }

    #[test]
    fn only_the_latest_one_and_only_if_preempted() {
        let mut samples = vec![
            preempted(1, 0, 9_100_000, true),
            preempted(2, 0, 9_200_000, true),
        ];
        restore_displaced(&mut samples, 0, 9_000_000, 9_500_000);
        assert_eq!(samples[0].state, ThreadState::RunQueue);
        assert_eq!(samples[1].state, ThreadState::OnCpu);
        // Woken from a sleep (not preempted): waiting, whatever the time.
        let mut woken = preempted(1, 0, 9_100_000, false);
        woken.preempted = false;
        let mut samples = vec![woken];
        restore_displaced(&mut samples, 0, 9_000_000, 9_500_000);
        assert_eq!(samples[0].state, ThreadState::RunQueue);
    }

    #[test]
    fn one_thread_per_cpu() {
        let victim = Sample {
            tid: 42,
            state: ThreadState::OnCpu,
            cpu: 0,
            running_since_ns: 1_000_000,
            switch_out_ns: 2_000_000,
            ..Default::default()
        };
        let kworker = Sample {
            tid: 7,
            running_since_ns: 9_000_000,
            ..victim
        };
        let other_cpu = Sample {
            tid: 8,
            cpu: 1,
            ..victim
        };
        let mut samples = vec![victim, kworker, other_cpu];
        settle_cpus(&mut samples, 10_000_000);
        assert_eq!(
            states(&samples),
            vec![
                (42, ThreadState::RunQueue, Some(8_000)),
                (7, ThreadState::OnCpu, None),
                (8, ThreadState::OnCpu, None),
            ]
        );
    }
}
