//! Unit tests of the CPython frame reader, on the machine's real
//! interpreters (pyenv 3.10–3.13, Debian's python3.11).

use super::*;
use crate::output::stacks::maps::{read_maps, FileCache};
use std::time::{Duration, Instant};

/// Start `python -c script` and wait for the line it prints when ready.
fn spawn_ready(python: &str, script: &str) -> std::process::Child {
    let mut child = std::process::Command::new(python)
        .args(["-c", script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {python}: {e}"));
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("piped stdout")),
        &mut line,
    )
    .expect("python's ready line");
    child
}

#[test]
fn other_versions_and_garbage_are_refused() {
    let mut bytes = vec![0u8; DEBUG_OFFSETS_SIZE];
    assert!(Layout::of_debug_offsets(&bytes, 0x030d_00f0).is_none());
    bytes[..8].copy_from_slice(b"xdebugpy");
    bytes[8..16].copy_from_slice(&0x030c_01f0u64.to_le_bytes());
    assert!(
        Layout::of_debug_offsets(&bytes, 0x030c_01f0).is_none(),
        "3.12 has no such layout"
    );
    bytes[8..16].copy_from_slice(&0x030d_00f0u64.to_le_bytes());
    let layout = Layout::of_debug_offsets(&bytes, 0x030d_00f0).unwrap();
    assert_eq!(layout.version, 0x030d_00f0);
    assert!(
        Layout::of_debug_offsets(&bytes, 0x030d_01f0).is_none(),
        "the file's version and the runtime's differ"
    );
    assert!(Layout::of_debug_offsets(&bytes[..100], 0x030d_00f0).is_none());
    // Releases whose headers were not checked have no table.
    for unchecked in [
        0x030b_03f0,
        0x030c_00f0,
        0x030c_02f0,
        0x030a_0df0,
        0x030e_00f0,
    ] {
        assert!(Layout::of_release(unchecked).is_none(), "{unchecked:x}");
    }
    assert!(Layout::of_release(0x030b_07f0).is_some());
}

/// Start `python` on a script whose main thread sleeps in
/// `Waiter.py_sleep` (called from `outer`) and whose other thread
/// sleeps in `py_worker`; read both.
fn sleeping_threads_show_their_functions(python: &str) {
    assert!(
        Path::new(python).is_file(),
        "{python} is missing: it is part of the machine image (pyenv, Debian's python3.11)"
    );
    let script = "import threading, time\nclass Waiter:\n    def py_sleep(self):\n        time.sleep(30)\ndef outer():\n    Waiter().py_sleep()\ndef py_worker():\n    time.sleep(30)\nthreading.Thread(target=py_worker, daemon=True).start()\nprint('ready', flush=True)\nouter()\n";
    let mut child = spawn_ready(python, script);
    let pid = child.id();
    let mut files = FileCache::default();
    let maps = read_maps(pid, &mut files).unwrap();
    let found = interpreter(pid, &maps, &mut SymbolCache::default());
    // One cache for every read, as the writer keeps one per process.
    let mut cache = ReadCache::default();
    // The main thread reaches the sleep soon after printing.
    let start = Instant::now();
    let groups = loop {
        let groups = found.and_then(|i| i.thread_frames(pid, pid, &mut cache));
        let depth = groups.as_ref().map_or(0, |g| g.iter().flatten().count());
        if depth >= 3 || start.elapsed() > Duration::from_secs(5) {
            break groups;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // The other thread, by its own id; a thread that is not Python's:
    // nothing.
    let worker: u32 = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .find(|&tid| tid != pid)
        .expect("the worker thread");
    let worker_groups = found.and_then(|i| i.thread_frames(pid, worker, &mut cache));
    // Read again through the cache (thread state and code objects
    // known): the same.
    let again = found.and_then(|i| i.thread_frames(pid, worker, &mut cache));
    assert_eq!(worker_groups, again);
    assert!(cache.tstates.len() >= 2 && !cache.codes.is_empty());
    // The chain as the on-CPU sample walks it with the published
    // offsets: the same groups; a fingerprint that changed names nothing.
    let published = found.and_then(|i| i.published(pid, worker, &mut cache));
    let chain = published.and_then(|t| walk_like_bpf(pid, worker, &t));
    let from_chain = found
        .zip(chain.as_ref())
        .and_then(|(i, c)| i.chain_frames(pid, c, &mut cache));
    let mut changed = chain.clone().unwrap_or_default();
    if let Some(frame) = changed.iter_mut().find(|(code, _, _)| *code != 1) {
        frame.1 ^= 1;
    }
    let from_changed = found.and_then(|i| i.chain_frames(pid, &changed, &mut cache));
    // Instruction pointers outside their code (none, before it, past its
    // end, odd): the first line, never another.
    let lost: Vec<Option<Vec<Vec<PyFrame>>>> = [0, 8, 1 << 40, 1]
        .into_iter()
        .map(|bad| {
            let mut lost = chain.clone().unwrap_or_default();
            for frame in lost.iter_mut().filter(|(code, _, _)| *code != 1) {
                frame.2 = match bad {
                    1 => frame.2 | 1,
                    8 => (frame.0 & !7) + 8,
                    bad => bad,
                };
            }
            found.and_then(|i| i.chain_frames(pid, &lost, &mut cache))
        })
        .collect();
    let other = found.and_then(|i| i.thread_frames(pid, 1, &mut cache));
    let _ = child.kill();
    let _ = child.wait();
    let found = found.unwrap_or_else(|| panic!("{python}: no covered interpreter found"));
    assert!(other.is_none());
    let groups = groups.expect("the main thread's frames");
    // One call of the eval loop runs the whole script.
    assert_eq!(groups.len(), 1, "{groups:?}");
    let names: Vec<&str> = groups[0].iter().map(|f| f.qualname.as_str()).collect();
    assert_eq!(names, ["Waiter.py_sleep", "outer", "<module>"], "{python}");
    assert_eq!(
        (groups[0][0].filename.as_str(), groups[0][0].firstlineno),
        ("<string>", 3)
    );
    // Each frame's line is the one executing: the sleep, the calls.
    let lines: Vec<(u32, u32)> = groups[0].iter().map(|f| (f.firstlineno, f.line)).collect();
    assert_eq!(lines, [(3, 4), (5, 6), (1, 11)], "{python}");
    // The worker: its function, then `Thread.run`, `_bootstrap_inner`,
    // `_bootstrap` (in one loop call or several: 3.11 enters the loop
    // again for the call through `CALL_FUNCTION_EX`, 3.12+ do not).
    let worker_groups = worker_groups.expect("the worker's frames");
    let worker_names: Vec<&str> = worker_groups
        .iter()
        .flatten()
        .map(|f| f.qualname.as_str())
        .collect();
    assert_eq!(
        worker_names.first(),
        Some(&"py_worker"),
        "{worker_groups:?}"
    );
    assert!(worker_names.contains(&"Thread.run"), "{worker_groups:?}");
    let py_worker = &worker_groups[0][0];
    assert_eq!((py_worker.firstlineno, py_worker.line), (7, 8), "{python}");
    for lost in lost {
        let lost = lost.unwrap_or_else(|| panic!("{python}: lost instruction pointers"));
        let firsts: Vec<Vec<PyFrame>> = worker_groups
            .iter()
            .map(|g| {
                g.iter()
                    .map(|f| PyFrame {
                        line: f.firstlineno,
                        ..f.clone()
                    })
                    .collect()
            })
            .collect();
        assert_eq!(lost, firsts, "{python}");
    }
    assert_eq!(
        worker_names.last(),
        Some(&"Thread._bootstrap"),
        "{worker_groups:?}"
    );
    assert!(found.layout.version >> 16 >= 0x030b);
    assert!(published.is_some_and(|t| t.tgid == pid), "{python}");
    assert_eq!(from_chain, Some(worker_groups), "{python}: {chain:x?}");
    assert_eq!(from_changed, None, "{python}");
}

/// Thread `tid`'s chain read as `bpf/python.bpf.h` reads it, from what
/// `Interpreter::published` gives the sample.
fn walk_like_bpf(
    pid: u32,
    tid: u32,
    t: &crate::bpf::types::ts_py_thread,
) -> Option<Vec<(u64, u64, u64)>> {
    let m = Memory(nix::unistd::Pid::from_raw(i32::try_from(pid).ok()?));
    let at = |base: u64, off: u32| base + u64::from(off);
    if m.u64(at(t.tstate, t.native_id))? != u64::from(tid) {
        return None;
    }
    let mut frame = m.u64(at(t.tstate, t.current))?;
    if t.cframe_current != u32::MAX && frame != 0 {
        frame = m.u64(at(frame, t.cframe_current))?;
    }
    let mut out = Vec::new();
    while frame != 0 {
        let code = m.u64(at(frame, t.code))?;
        let previous = m.u64(at(frame, t.previous))?;
        let marker = m.read(at(frame, t.marker), 1)?[0];
        if t.shim_owner != u32::MAX && u32::from(marker) == t.shim_owner {
            out.push((1, 0, 0));
        } else {
            let qualname = m.u64(at(code, t.code_qualname))?;
            let filename = m.u64(at(code, t.code_filename))?;
            let line = m.u64(at(code, t.code_firstlineno))? & 0xffff_ffff;
            let closes = t.shim_owner == u32::MAX && marker != 0;
            out.push((
                code | u64::from(closes),
                qualname ^ filename.rotate_left(17) ^ line,
                m.u64(at(frame, t.instr))?,
            ));
        }
        frame = previous;
    }
    Some(out)
}

#[test]
fn a_sleeping_python_313_thread_shows_its_functions() {
    sleeping_threads_show_their_functions("/root/.pyenv/versions/3.13.0/bin/python3.13");
}

#[test]
fn a_sleeping_python_312_thread_shows_its_functions() {
    sleeping_threads_show_their_functions("/root/.pyenv/versions/3.12.1/bin/python3.12");
}

#[test]
fn a_sleeping_python_311_thread_shows_its_functions() {
    sleeping_threads_show_their_functions("/root/.pyenv/versions/3.11.7/bin/python3.11");
}

#[test]
fn debians_static_python_311_shows_its_functions() {
    sleeping_threads_show_their_functions("/usr/bin/python3.11");
}

#[test]
fn a_python_without_a_table_is_not_read() {
    let python = "/root/.pyenv/versions/3.10.13/bin/python3.10";
    assert!(Path::new(python).is_file(), "{python} is missing (pyenv)");
    let mut child = spawn_ready(
        python,
        "import time; print('ready', flush=True); time.sleep(30)",
    );
    let pid = child.id();
    let maps = read_maps(pid, &mut FileCache::default()).unwrap();
    let found = interpreter(pid, &maps, &mut SymbolCache::default());
    let _ = child.kill();
    let _ = child.wait();
    assert!(found.is_none(), "{found:?}");
}
