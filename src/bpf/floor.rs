//! The cost floor of a per-syscall hook, for `benches/hooks.rs`: an empty
//! `sys_enter` and `sys_exit` program attached alone.
//!
//! Every tp_btf program on those tracepoints moves every syscall of the
//! machine onto the slower syscall-work path before its first instruction
//! runs; the bench shows that floor beside the agent's own hooks in the
//! same run. The agent never attaches these programs.

use std::mem::MaybeUninit;

use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, OpenObject};

use super::skel::{TaskscopeSkel, TaskscopeSkelBuilder};

/// The empty syscall hooks, attached until dropped.
pub struct EmptySyscallHooks {
    // Detach before the skeleton goes away.
    _links: Vec<Link>,
    _skel: TaskscopeSkel<'static>,
}

impl EmptySyscallHooks {
    /// Load only the two empty programs (and the maps every object has)
    /// and attach them.
    pub fn attach() -> Result<EmptySyscallHooks> {
        // As in `Agent::load`: the skeleton borrows its open object.
        let open_object: &'static mut MaybeUninit<OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open = TaskscopeSkelBuilder::default()
            .open(open_object)
            .context("cannot open the BPF object")?;
        for mut prog in open.open_object_mut().progs_mut() {
            let empty = matches!(
                prog.name().to_str(),
                Some("empty_sys_enter" | "empty_sys_exit")
            );
            prog.set_autoload(empty);
        }
        let skel = open.load().context("cannot load the empty syscall hooks")?;
        let links = vec![
            skel.progs
                .empty_sys_enter
                .attach()
                .context("cannot attach the empty sys_enter")?,
            skel.progs
                .empty_sys_exit
                .attach()
                .context("cannot attach the empty sys_exit")?,
        ];
        Ok(EmptySyscallHooks {
            _links: links,
            _skel: skel,
        })
    }
}
