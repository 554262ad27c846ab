//! The cost floors of the agent's hooks, for `benches/hooks.rs`: empty
//! programs attached alone, on the syscall tracepoints or on the two
//! scheduler tracepoints a same-CPU pipe ping-pong runs.
//!
//! Every tp_btf program on `sys_enter`/`sys_exit` moves every syscall of
//! the machine onto the slower syscall-work path before its first
//! instruction runs; every program on `sched_switch`/`sched_wakeup` adds
//! the tracepoint's call into BPF to every switch and wakeup. The bench
//! shows each floor beside the agent's own hooks in the same run. The
//! agent never attaches these programs.

use std::mem::MaybeUninit;

use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, OpenObject};

use super::skel::{TaskscopeSkel, TaskscopeSkelBuilder};

/// Which empty programs a floor attaches.
#[derive(Clone, Copy, Debug)]
pub enum Floor {
    /// `sys_enter` and `sys_exit`.
    Syscalls,
    /// `sched_switch` and `sched_wakeup`.
    Scheduler,
}

impl Floor {
    /// The programs' names in the BPF object.
    fn programs(self) -> [&'static str; 2] {
        match self {
            Floor::Syscalls => ["empty_sys_enter", "empty_sys_exit"],
            Floor::Scheduler => ["floor_switch", "floor_wakeup"],
        }
    }
}

/// The empty hooks of one floor, attached until dropped.
pub struct EmptyHooks {
    // Detach before the skeleton goes away.
    _links: Vec<Link>,
    _skel: TaskscopeSkel<'static>,
}

impl EmptyHooks {
    /// Load only the floor's two empty programs (and the maps every object
    /// has) and attach them.
    pub fn attach(floor: Floor) -> Result<EmptyHooks> {
        // As in `Agent::load`: the skeleton borrows its open object.
        let open_object: &'static mut MaybeUninit<OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open = TaskscopeSkelBuilder::default()
            .open(open_object)
            .context("cannot open the BPF object")?;
        let names = floor.programs();
        for mut prog in open.open_object_mut().progs_mut() {
            let wanted = prog.name().to_str().is_some_and(|n| names.contains(&n));
            prog.set_autoload(wanted);
        }
        let skel = open
            .load()
            .with_context(|| format!("cannot load the empty {floor:?} hooks"))?;
        let progs = &skel.progs;
        let chosen = match floor {
            Floor::Syscalls => [&progs.empty_sys_enter, &progs.empty_sys_exit],
            Floor::Scheduler => [&progs.floor_switch, &progs.floor_wakeup],
        };
        let links = chosen
            .into_iter()
            .zip(names)
            .map(|(prog, name)| {
                prog.attach()
                    .with_context(|| format!("cannot attach the empty program {name}"))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(EmptyHooks {
            _links: links,
            _skel: skel,
        })
    }
}
