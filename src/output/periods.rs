//! The open periods of every table, kept in step: opened, flushed and
//! published together, stacks first (a sample row never precedes the
//! stack it refers to), samples before what joins to them.

use std::time::Duration;

use anyhow::Result;

use super::period::{Abandoned, PeriodFiles, PeriodWriter, Target};
use crate::bpf::TrackKinds;
use crate::store::schema::{Iorq, Samples, Stacks, Syscalls, Ticks};

/// The open period of every table.
#[derive(Default)]
pub struct OpenPeriods {
    pub stacks: PeriodWriter<Stacks>,
    pub samples: PeriodWriter<Samples>,
    /// With --track syscalls.
    pub syscalls: Option<PeriodWriter<Syscalls>>,
    /// With --track io.
    pub iorq: Option<PeriodWriter<Iorq>>,
    pub ticks: PeriodWriter<Ticks>,
}

impl OpenPeriods {
    pub fn new(track: TrackKinds) -> OpenPeriods {
        OpenPeriods {
            syscalls: track.syscalls.then(PeriodWriter::default),
            iorq: track.io.then(PeriodWriter::default),
            ..OpenPeriods::default()
        }
    }

    /// Every table written, stacks first (a sample row never precedes the
    /// stack it refers to), samples before what joins to them.
    pub fn all(&self) -> impl Iterator<Item = &dyn PeriodFiles> {
        [
            Some(&self.stacks as &dyn PeriodFiles),
            Some(&self.samples as &dyn PeriodFiles),
            self.syscalls.as_ref().map(|t| t as &dyn PeriodFiles),
            self.iorq.as_ref().map(|t| t as &dyn PeriodFiles),
            Some(&self.ticks as &dyn PeriodFiles),
        ]
        .into_iter()
        .flatten()
    }

    pub fn all_mut(&mut self) -> impl Iterator<Item = &mut dyn PeriodFiles> {
        [
            Some(&mut self.stacks as &mut dyn PeriodFiles),
            Some(&mut self.samples as &mut dyn PeriodFiles),
            self.syscalls.as_mut().map(|t| t as &mut dyn PeriodFiles),
            self.iorq.as_mut().map(|t| t as &mut dyn PeriodFiles),
            Some(&mut self.ticks as &mut dyn PeriodFiles),
        ]
        .into_iter()
        .flatten()
    }

    /// Give up every table's period; (samples, others).
    pub fn abandon(&mut self, target: &Target<'_>) -> (Option<Abandoned>, Vec<Abandoned>) {
        let samples = self.samples.abandon(target);
        let others = self.all_mut().filter_map(|t| t.abandon(target)).collect();
        (samples, others)
    }

    pub fn journals(&self) -> Vec<String> {
        self.all()
            .filter_map(|t| t.journal())
            .map(String::from)
            .collect()
    }

    pub fn needs_rotation(&self, ts_us: i64) -> bool {
        self.all().any(|t| t.needs_rotation(ts_us))
    }

    /// Open every table's period (stacks first); whether the stacks
    /// period is new.
    pub fn ensure_open(
        &mut self,
        target: &Target<'_>,
        host: &str,
        ts_us: i64,
        rotate: Duration,
    ) -> Result<bool> {
        let fresh = self.stacks.journal().is_none();
        for table in self.all_mut() {
            table.ensure_open(target, host, ts_us, rotate)?;
        }
        Ok(fresh)
    }

    /// Flush all tables together, stacks first, when the flush interval
    /// has passed for any; whether they were flushed.
    pub fn flush_if_due(&mut self, interval: Duration) -> Result<bool> {
        if !self.all().any(|t| t.flush_due(interval)) {
            return Ok(false);
        }
        for table in self.all_mut() {
            table.flush_if_due(Duration::ZERO)?;
        }
        Ok(true)
    }

    /// Publish every table's period, stacks first; counts into
    /// `published` as it goes (a later table's failure does not undo an
    /// earlier table's publication).
    pub fn publish(&mut self, target: &Target<'_>, published: &mut Published) -> Result<()> {
        published.files |= self.stacks.publish(target)? > 0;
        let sample_rows = self.samples.publish(target)?;
        published.sample_rows += sample_rows;
        published.files |= sample_rows > 0;
        // Stacks and samples have nothing open any more.
        for table in self.all_mut() {
            published.files |= table.publish(target)? > 0;
        }
        Ok(())
    }
}

/// What a publication did.
#[derive(Debug, Default)]
pub struct Published {
    /// Whether any file with rows was published.
    pub files: bool,
    pub sample_rows: u64,
}
