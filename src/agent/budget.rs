//! `--max-cpu`: the agent's CPU budget, kept by taking fewer ticks.

use tracing::info;

use super::clock::process_cpu_ns;

/// --max-cpu: the agent's own CPU time (all its threads) measured every
/// second; over the budget, the stride between taken ticks grows at once
/// to what the last second's cost says brings it to 80% of the budget (the
/// cost is nearly proportional to the ticks taken; doubling took several
/// seconds to catch up with a heavy load), below a third of it, halves.
/// Deadlines stay on the schedule of the configured frequency, a tick is
/// taken every `stride` of them, and its rows weigh `stride` times as much,
/// so sums of weight_us stay thread-time.
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
            self.stride =
                over_budget_stride(self.stride, used_percent, self.percent).min(self.max_stride);
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

/// The stride that brings a cost of `used_percent` at `stride` down to 80%
/// of the budget, assuming cost proportional to the ticks taken; at least
/// double the current one.
fn over_budget_stride(stride: u64, used_percent: f64, budget_percent: u32) -> u64 {
    let target = f64::from(budget_percent.max(1)) * 0.8;
    let proportional = (stride as f64 * used_percent / target).ceil();
    (stride * 2).max(proportional.min(u64::MAX as f64 / 2.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::over_budget_stride;

    #[test]
    fn over_budget_jumps_to_the_budget_in_one_step() {
        // 160% at every tick with a 10% budget: one tick in 20.
        assert_eq!(over_budget_stride(1, 160.0, 10), 20);
        // Just over: at least double.
        assert_eq!(over_budget_stride(4, 10.5, 10), 8);
        // From a stride already grown.
        assert_eq!(over_budget_stride(8, 30.0, 10), 30);
    }
}
