//! Unit tests of stack resolution (ids, memos, frame classification).

use super::*;
use crate::store::schema::FrameKind;

#[test]
fn ids_depend_on_kind_and_frames_only() {
    let a = stack_id(StackKind::User, "main+0x1;_start+0x2", 0);
    assert_eq!(a, stack_id(StackKind::User, "main+0x1;_start+0x2", 0));
    assert_ne!(a, stack_id(StackKind::Kernel, "main+0x1;_start+0x2", 0));
    assert_ne!(a, stack_id(StackKind::User, "main+0x1;_start+0x3", 0));
    assert_ne!(a, stack_id(StackKind::User, "main+0x1;_start+0x2", 1));
    assert!(a >= 0);
}

fn frames(names: &[&str]) -> Vec<Frames> {
    names
        .iter()
        .map(|n| Frames {
            texts: vec![Arc::from(format!("{n}+0x1").as_str())],
            function: Some(Arc::from(*n)),
            module: Arc::from("m"),
            sched: false,
            kind: FrameKind::Native,
        })
        .collect()
}

#[test]
fn definitions_are_written_once_per_period() {
    let mut r = StackResolver::new();
    let id = r
        .define(StackKind::User, &frames(&["f", "start_thread"]), false)
        .unwrap();
    assert_eq!(
        r.define(StackKind::User, &frames(&["f", "start_thread"]), false),
        Some(id)
    );
    let def = r.unwritten(id).expect("first time in this period");
    assert_eq!(
        (def.frames.as_str(), def.depth, def.module.as_str()),
        ("f+0x1;start_thread+0x1", 2, "m")
    );
    assert_eq!(def.frame_kinds, "native;native");
    assert!(r.unwritten(id).is_none());
    r.new_period();
    assert!(r.unwritten(id).is_some());
    assert_eq!(r.define(StackKind::User, &[], false), None);
}

#[test]
fn frame_kinds_follow_every_text_and_texts_hold_no_separator() {
    let mut r = StackResolver::new();
    let mut f = frames(&["py::busy:/tmp/x.py", "_PyEval_EvalFrameDefault", "main"]);
    f[0].kind = FrameKind::Jit;
    // An address inside an inlined call has two texts of one kind.
    f[1].texts
        .insert(0, Arc::from("<[u8; 4]>::inner [inlined]"));
    let id = r.define(StackKind::User, &f, false).unwrap();
    let def = r.unwritten(id).unwrap();
    assert_eq!(
        def.frames,
        "py::busy:/tmp/x.py+0x1;<[u8_ 4]>::inner [inlined];_PyEval_EvalFrameDefault+0x1;main+0x1"
    );
    assert_eq!(def.frame_kinds, "jit;native;native;native");
    assert_eq!(def.depth, 4);
    assert_eq!(
        def.frames.split(';').count(),
        def.frame_kinds.split(';').count()
    );
}

#[test]
fn eviction_keeps_the_definitions_threads_still_use() {
    let mut r = StackResolver::new();
    let used = r
        .define(
            StackKind::Kernel,
            &frames(&["schedule_timeout", "do_sys_poll"]),
            false,
        )
        .unwrap();
    let old = r
        .define(
            StackKind::Kernel,
            &frames(&["pipe_read", "vfs_read"]),
            false,
        )
        .unwrap();
    r.by_slot.insert(
        7,
        (
            1,
            Resolved {
                kstack: Some(used),
                ..Resolved::default()
            },
        ),
    );
    r.kernel_memo.insert(1, (Some(old), None));
    r.evict_definitions();
    assert!(r.definitions.contains_key(&used) && !r.definitions.contains_key(&old));
    assert!(r.kernel_memo.is_empty(), "memos may name evicted ids");
    // A thread still sleeping where it was gets its id defined again in
    // a new period.
    r.new_period();
    assert!(r.unwritten(used).is_some());
}

#[test]
fn content_keys_tell_stacks_apart() {
    let a = content_key(&(&vec![1u64, 2, 3], true, false));
    assert_eq!(a, content_key(&(&vec![1u64, 2, 3], true, false)));
    assert_ne!(a, content_key(&(&vec![1u64, 2, 3], false, false)));
    assert_ne!(a, content_key(&(&vec![1u64, 2, 4], true, false)));
}

#[test]
fn switch_frames_and_entries() {
    let mut f = frames(&[
        "bpf_prog_1234_on_sched_switch",
        "__traceiter_sched_switch",
        "finish_task_switch.isra.0",
        "io_schedule",
        "folio_wait_bit",
        "start_thread",
    ]);
    f[3].sched = true;
    assert_eq!(f.iter().take_while(|f| is_switch_frame(f)).count(), 4);
    assert!(is_thread_entry(&f[5]) && !is_thread_entry(&f[4]));
}
