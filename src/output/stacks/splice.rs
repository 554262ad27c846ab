//! Python frames in place of the interpreter loop's native frames.
//!
//! A CPython thread's native user stack shows one `_PyEval_EvalFrameDefault`
//! frame per call of the eval loop; each runs one group of Python frames
//! (`python::Interpreter::thread_frames`). The splice replaces the i-th
//! loop frame (innermost first) with the i-th group, and keeps every other
//! native frame (C extensions, libc, the interpreter's call machinery)
//! where it is. It only happens when the counts agree: as many groups as
//! loop frames for a stack that reaches its thread's entry point, at least
//! as many for one cut short (its outermost loop frames are missing).
//! Anything else — the thread moved on between the two reads, a loop frame
//! the symbolizer could not name — keeps the native frames.

use std::path::Path;
use std::sync::Arc;

use super::python::PyFrame;
use super::symbolize::Frames;
use crate::store::schema::FrameKind;

/// The eval loop's function (gcc may split a `.cold` part off).
pub fn is_eval_loop(frames: &Frames) -> bool {
    frames.function.as_deref().is_some_and(|f| {
        f == "_PyEval_EvalFrameDefault"
            || f.strip_prefix("_PyEval_EvalFrameDefault")
                .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// Whether `groups` can replace the loop frames of `native`: as many
/// (at least as many if the stack is not `complete`), and at least one.
pub fn agrees(native: &[Frames], groups: &[Vec<PyFrame>], complete: bool) -> bool {
    let loops = native.iter().filter(|f| is_eval_loop(f)).count();
    loops > 0 && groups.len() >= loops && (!complete || groups.len() == loops)
}

/// `native` (innermost first) with each loop frame replaced by its group
/// of Python frames; `None` when the counts do not agree (or there is no
/// loop frame at all).
pub fn splice(native: &[Frames], groups: &[Vec<PyFrame>], complete: bool) -> Option<Vec<Frames>> {
    if !agrees(native, groups, complete) {
        return None;
    }
    let mut groups = groups.iter();
    let mut out = Vec::with_capacity(native.len() + groups.len() * 4);
    for frames in native {
        if !is_eval_loop(frames) {
            out.push(frames.clone());
            continue;
        }
        match groups.next() {
            // A loop that had not started its first frame yet (or had
            // just returned from its last): nothing to name it by.
            Some(group) if !group.is_empty() => out.extend(group.iter().map(python_frame)),
            _ => out.push(frames.clone()),
        }
    }
    Some(out)
}

/// A Python frame as a stack frame: `qualname [file:line]` (the file's
/// base name, as native frames show theirs; the line executing — for a
/// caller, the line of the call in progress — or the function's first
/// line when it cannot be told).
pub fn python_frame(frame: &PyFrame) -> Frames {
    let file = Path::new(&frame.filename).file_name().map_or_else(
        || frame.filename.clone(),
        |f| f.to_string_lossy().into_owned(),
    );
    let text = format!("{} [{file}:{}]", frame.qualname, frame.line);
    Frames {
        texts: vec![Arc::from(text.as_str())],
        function: Some(Arc::from(frame.qualname.as_str())),
        module: Arc::from(file.as_str()),
        sched: false,
        kind: FrameKind::Python,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn native(name: &str) -> Frames {
        Frames {
            texts: vec![Arc::from(format!("{name}+0x10").as_str())],
            function: Some(Arc::from(name)),
            module: Arc::from("libpython3.12.so.1.0"),
            sched: false,
            kind: FrameKind::Native,
        }
    }

    fn py(name: &str) -> PyFrame {
        PyFrame {
            qualname: name.to_string(),
            filename: "/srv/app/prog.py".to_string(),
            firstlineno: 7,
            line: 12,
        }
    }

    fn texts(frames: &[Frames]) -> Vec<String> {
        frames.iter().map(|f| f.texts[0].to_string()).collect()
    }

    #[test]
    fn each_loop_frame_becomes_its_group_and_c_frames_stay() {
        let stack = [
            native("clock_nanosleep"),
            native("time_sleep"),
            native("_PyEval_EvalFrameDefault"),
            native("_PyObject_Call"),
            native("_PyEval_EvalFrameDefault.cold"),
            native("start_thread"),
        ];
        let groups = [vec![py("py_sleep"), py("run")], vec![py("_bootstrap")]];
        let spliced = splice(&stack, &groups, true).unwrap();
        assert_eq!(
            texts(&spliced),
            [
                "clock_nanosleep+0x10",
                "time_sleep+0x10",
                "py_sleep [prog.py:12]",
                "run [prog.py:12]",
                "_PyObject_Call+0x10",
                "_bootstrap [prog.py:12]",
                "start_thread+0x10"
            ]
        );
        assert_eq!(spliced[2].kind, FrameKind::Python);
        assert_eq!(&*spliced[2].module, "prog.py");
    }

    #[test]
    fn a_frame_shows_its_current_line_and_two_lines_are_two_frames() {
        let at = |line| PyFrame {
            line,
            ..py("py_spin")
        };
        assert_eq!(&*python_frame(&at(12)).texts[0], "py_spin [prog.py:12]");
        assert_ne!(python_frame(&at(12)).texts, python_frame(&at(13)).texts);
        // Groups differing by a line only are different keys.
        assert_ne!(vec![vec![at(12)]], vec![vec![at(13)]]);
    }

    #[test]
    fn counts_that_disagree_keep_the_native_frames() {
        let stack = [native("read"), native("_PyEval_EvalFrameDefault")];
        // More groups than loop frames in a complete stack: moved on.
        assert!(splice(&stack, &[vec![py("a")], vec![py("b")]], true).is_none());
        // Fewer.
        assert!(splice(&stack, &[], true).is_none());
        assert!(splice(&stack, &[], false).is_none());
        // A cut stack takes the innermost groups.
        let cut = splice(&stack, &[vec![py("a")], vec![py("b")]], false).unwrap();
        assert_eq!(texts(&cut), ["read+0x10", "a [prog.py:12]"]);
        // No loop frame: nothing to replace.
        assert!(splice(&[native("read")], &[vec![py("a")]], false).is_none());
        assert!(!is_eval_loop(&native("_PyEval_EvalFrameDefaultX")));
        // An empty group keeps its loop frame.
        let empty = splice(&stack, &[vec![]], true).unwrap();
        assert_eq!(
            texts(&empty),
            ["read+0x10", "_PyEval_EvalFrameDefault+0x10"]
        );
    }
}
