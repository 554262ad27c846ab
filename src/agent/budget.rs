//! `--max-cpu`: the agent's CPU budget, kept by taking fewer ticks.

use tracing::info;

use super::clock::process_cpu_ns;

/// --max-cpu: the agent's own CPU time (all its threads) measured every
/// second; over the budget, the stride between taken ticks doubles, below
/// a third of it, halves. Deadlines stay on the schedule of the configured
/// frequency, a tick is taken every `stride` of them, and its rows weigh
/// `stride` times as much, so sums of weight_us stay thread-time.
pub struct CpuBudget {
    percent: u32,
    since_mono_ns: u64,
    since_cpu_ns: u64,
    stride: u64,
    max_stride: u64,
}

impl CpuBudget {
    pub fn new(percent: u32, frequency: u32, now_ns: u64) -> CpuBudget {
        CpuBudget {
            percent,
            since_mono_ns: now_ns,
            since_cpu_ns: process_cpu_ns(),
            stride: 1,
            // Never below one tick a second.
            max_stride: u64::from(frequency).max(1),
        }
    }

    /// Re-measure if a second has passed; the stride to use from now on.
    pub fn update(&mut self, now_ns: u64) -> u64 {
        let elapsed = now_ns.saturating_sub(self.since_mono_ns);
        if elapsed < 1_000_000_000 {
            return self.stride;
        }
        let cpu = process_cpu_ns();
        let used_percent = (cpu.saturating_sub(self.since_cpu_ns) * 100) as f64 / elapsed as f64;
        self.since_mono_ns = now_ns;
        self.since_cpu_ns = cpu;
        let before = self.stride;
        if used_percent > f64::from(self.percent) {
            self.stride = (self.stride * 2).min(self.max_stride);
        } else if used_percent < f64::from(self.percent) / 3.0 {
            self.stride = (self.stride / 2).max(1);
        }
        if self.stride != before {
            info!(
                cpu_percent = format!("{used_percent:.1}"),
                max_cpu = self.percent,
                stride = self.stride,
                "CPU budget: taking one tick in {} (weight_us scaled to match)",
                self.stride
            );
        }
        self.stride
    }
}
