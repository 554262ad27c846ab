//! Writer throughput: rows per second and bytes per row of the file
//! writer alone, on synthetic ticks shaped like real ones (10,000 threads
//! of a few hundred processes, mostly sleeping, some in syscalls and I/O),
//! with the stages timed separately. No BPF; runs as any user.
//! `cargo bench --bench writer`.

mod common;

use std::time::{Duration, Instant};

use common::{files_below, median};
use taskscope::agent::decode::decode;
use taskscope::bpf::types::{ts_thread, ts_thread_flags};
use taskscope::bpf::ThreadEntry;
use taskscope::output::identity::Identity;
use taskscope::output::rows::{sample_row, SampleNames};
use taskscope::output::sample::Sample;
use taskscope::output::tick::{Tick, TickStats};
use taskscope::output::{Formats, OutputDir, Writer, WriterConfig};
use taskscope::store::csv::CsvFile;
use taskscope::store::schema::{SampleRow, Samples};
use taskscope::store::thread_state::ThreadState;
use taskscope::store::wait_class::{classify, Memo, WaitFacts};

const THREADS: u32 = 10_000;
const TICKS: i64 = 60;

/// One tick of synthetic samples, `tick` seconds into the run.
fn tick_samples(tick: u64) -> Vec<Sample> {
    let now = 1_000_000_000_000 + tick * 1_000_000_000;
    (0..THREADS)
        .map(|i| {
            let busy = i % 50 == 0;
            let mut entry = ts_thread {
                tid: 1_000 + i,
                tgid: 1_000 + i / 40 * 40,
                flags: ts_thread_flags::TS_F_SWITCH_KNOWN.0
                    | ts_thread_flags::TS_F_IN_SYSCALL.0
                    | ts_thread_flags::TS_F_ENTER_KNOWN.0
                    | ts_thread_flags::TS_F_ARGS_KNOWN.0,
                sched_state: 1,
                switch_out_ns: now - 1_000_000 * u64::from(i % 997) - 17 * u64::from(i),
                switch_in_ns: now - 2_000_000_000,
                syscall_nr: [202, 0, 7, 230, 232][(i % 5) as usize],
                syscall_enter_ns: now - 1_000_000 * u64::from(i % 997) - 20_000,
                syscall_args: [u64::from(i % 64), 0x7ffd_1234_0000 + u64::from(i) * 64, 128],
                cpu: i % 2,
                euid: if i % 3 == 0 { 0 } else { 1000 },
                cgroup_id: 1,
                exe_id: u64::from(i / 40) + 1,
                ..Default::default()
            };
            entry.comm[..8].copy_from_slice(&b"worker-0".map(|b| b as i8));
            entry.comm[7] = (b'0' + (i % 10) as u8) as i8;
            if busy {
                entry.flags |= ts_thread_flags::TS_F_ON_CPU.0;
            }
            decode(
                &ThreadEntry {
                    thread: entry,
                    ..Default::default()
                },
                now,
            )
        })
        .collect()
}

const NAMES: (&str, &str, &str) = (
    "/usr/lib/jvm/java-17/bin/java",
    "root",
    "/system.slice/app.service",
);

/// A sample as the writer turns it into a row (names fixed; with
/// `containers`, every second process is in a Kubernetes container; with
/// `title`, every row has a 34-byte proc_title).
fn row<'a>(
    sample: &Sample,
    comm: &'a str,
    ts_us: i64,
    containers: bool,
    title: bool,
) -> SampleRow<'a> {
    let in_container = containers && (sample.tgid / 40).is_multiple_of(2);
    let names = SampleNames {
        comm,
        exe: NAMES.0,
        user: NAMES.1,
        cgroup: NAMES.2,
        io_dev: None,
        host: "bench-host",
        container: in_container.then(container),
        waker_comm: "",
        target: Default::default(),
        // Filled on every row, as for a fleet of retitled processes.
        proc_title: if title {
            "postgres: app appdb [local] UPDATE"
        } else {
            ""
        },
    };
    // One memo of wait classes for the run, as the writer keeps one.
    thread_local! {
        static CLASSES: std::cell::RefCell<Memo> = std::cell::RefCell::default();
    }
    CLASSES
        .with_borrow_mut(|classes| sample_row(classes, ts_us, 1_000_000, sample, names, &NO_STACKS))
}

/// A Kubernetes container's identity.
fn container() -> &'static Identity {
    static IDENTITY: std::sync::OnceLock<Identity> = std::sync::OnceLock::new();
    IDENTITY.get_or_init(|| Identity {
        container_id: "cafe0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab".into(),
        container_runtime: "containerd".into(),
        container_name: "app".into(),
        pod_name: "web-7d9f8c6b5-x2x4z".into(),
        pod_namespace: "production".into(),
        pod_uid: "11111111-2222-3333-4444-555555555555".into(),
    })
}

static NO_STACKS: taskscope::output::stacks::Resolved = taskscope::output::stacks::Resolved {
    kstack: None,
    ustack: None,
    kfunc: None,
};

/// CPU per row (ns) of `class` over the `waits` cases, one figure per
/// tick of `THREADS` rows; `class` gets the case's index and its facts.
fn per_row(
    waits: &[(ThreadState, Option<&str>, Option<&str>)],
    mut class: impl FnMut(usize, &WaitFacts<'_>),
) -> Vec<f64> {
    (0..TICKS)
        .map(|_| {
            let start = Instant::now();
            for i in 0..THREADS as usize {
                let case = i % waits.len();
                let (state, syscall, kfunc) = waits[case];
                class(
                    case,
                    &WaitFacts {
                        state,
                        syscall,
                        kfunc: std::hint::black_box(kfunc),
                        own_io: false,
                        kthread: syscall.is_none(),
                        kernel_lock: false,
                    },
                );
            }
            start.elapsed().as_nanos() as f64 / f64::from(THREADS)
        })
        .collect()
}

fn main() {
    let ticks: Vec<Vec<Sample>> = (0..TICKS as u64).map(tick_samples).collect();

    // Stage 1, for comparison: the same rows through the csv crate's writer
    // into a null sink (what taskscope used before its own encoder).
    let mut format = Vec::new();
    for samples in &ticks {
        let mut csv = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(std::io::sink());
        let start = Instant::now();
        for sample in samples {
            let comm = String::from_utf8_lossy(sample.comm_bytes());
            let row = row(sample, &comm, 1, false, true);
            for column in <Samples as taskscope::store::schema::Table>::columns() {
                match (column.value)(&row) {
                    taskscope::store::schema::Value::Null => csv.write_field(b"").unwrap(),
                    taskscope::store::schema::Value::Int(v) => {
                        csv.write_field(itoa::Buffer::new().format(v)).unwrap()
                    }
                    taskscope::store::schema::Value::Text(t) => csv.write_field(t).unwrap(),
                    taskscope::store::schema::Value::Timestamp(_) => {
                        csv.write_field("2026-11-22 13:00:00.000000").unwrap()
                    }
                    taskscope::store::schema::Value::Bool(b) => {
                        csv.write_field(if b { "true" } else { "false" }).unwrap()
                    }
                }
            }
            csv.write_record(None::<&[u8]>).unwrap();
        }
        format.push(start.elapsed().as_nanos() as f64 / samples.len() as f64);
    }

    // Stage 2: the real CsvFile (format + zstd) into a file, without and
    // with containers (identity columns filled on half the rows).
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-writer");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // Alternating: titles, containers (and titles), no titles.
    let mut compress = [Vec::new(), Vec::new(), Vec::new()];
    for round in 0..6 {
        let variant = round % 3;
        let (containers, title) = (variant == 1, variant != 2);
        let file = std::fs::File::create(dir.join("stage2.csv.zst")).unwrap();
        let mut csv_file = CsvFile::create::<Samples>(file).unwrap();
        for (i, samples) in ticks.iter().enumerate() {
            let start = Instant::now();
            for sample in samples {
                let comm = String::from_utf8_lossy(sample.comm_bytes());
                let ts_us = 1_795_352_645_000_000 + i as i64 * 1_000_000;
                csv_file
                    .write_row::<Samples>(&row(sample, &comm, ts_us, containers, title))
                    .unwrap();
            }
            compress[variant].push(start.elapsed().as_nanos() as f64 / samples.len() as f64);
        }
        csv_file.finish().unwrap();
    }

    // Stage 3: the whole Writer per format, ticks 100 ms apart (10 Hz):
    // enrichment with /proc lookups that fail fast for these made-up pids,
    // journal, Parquet, flushes, publication.
    let mut results = Vec::new();
    for (label, formats) in [
        (
            "CSV (csv.zst)",
            Formats {
                csv: true,
                parquet: false,
            },
        ),
        (
            "Parquet (+ CSV journal)",
            Formats {
                csv: false,
                parquet: true,
            },
        ),
        (
            "CSV and Parquet",
            Formats {
                csv: true,
                parquet: true,
            },
        ),
    ] {
        let out = dir.join(format!(
            "out-{}-{}",
            u8::from(formats.csv),
            u8::from(formats.parquet)
        ));
        let plan = taskscope::output::dir::check(&out).unwrap();
        let mut config =
            WriterConfig::csv("bench", Duration::from_secs(3_600), Duration::from_secs(10));
        config.formats = formats;
        let mut writer = Writer::new(OutputDir::create(&plan).unwrap(), config).unwrap();
        let mut per_row = Vec::new();
        let cpu_start = common::thread_cpu();
        for (i, samples) in ticks.iter().enumerate() {
            let rows = samples.len();
            let tick = Tick {
                ts_us: 1_795_352_645_000_000 + i as i64 * 100_000,
                mono_ns: 0,
                weight_us: 100_000,
                samples: samples.clone(),
                completions: Vec::new(),
                stacks: Vec::new(),
                stats: TickStats::default(),
            };
            let start = Instant::now();
            writer.write_tick(&tick);
            per_row.push(start.elapsed().as_nanos() as f64 / rows as f64);
        }
        let stats = writer.close();
        let cpu = (common::thread_cpu() - cpu_start).as_secs_f64();
        let bytes = |ext: &str| -> u64 {
            files_below(&out.join("samples"))
                .iter()
                .filter(|p| p.to_string_lossy().ends_with(ext))
                .map(|p| std::fs::metadata(p).unwrap().len())
                .sum()
        };
        let csv_bytes = bytes(".csv.zst");
        let parquet_bytes = bytes(".parquet");
        results.push((
            label,
            median(&mut per_row),
            stats.rows as f64 / cpu,
            csv_bytes as f64 / stats.rows as f64,
            parquet_bytes as f64 / stats.rows as f64,
        ));
    }

    // Wait class inference (writer thread, per row) on waits as real
    // kernel stacks name them: the rules are searched in order.
    let waits: [(ThreadState, Option<&str>, Option<&str>); 8] = [
        (ThreadState::Sleep, Some("futex"), Some("futex_do_wait")),
        (
            ThreadState::Sleep,
            Some("epoll_wait"),
            Some("do_epoll_wait"),
        ),
        (ThreadState::Sleep, Some("read"), Some("anon_pipe_read")),
        (
            ThreadState::Sleep,
            Some("clock_nanosleep"),
            Some("hrtimer_nanosleep"),
        ),
        (ThreadState::Sleep, Some("recvfrom"), Some("sk_wait_data")),
        (
            ThreadState::Uninterruptible,
            Some("fdatasync"),
            Some("submit_bio_wait"),
        ),
        (ThreadState::Idle, None, Some("worker_thread")),
        (ThreadState::Sleep, None, Some("rcu_gp_kthread.isra.0")),
    ];
    let mut classify_ns = per_row(&waits, |_, facts| {
        std::hint::black_box(classify(facts));
    });
    // The same through the writer's memo (the syscall's number stands for
    // its name: here the case's index).
    let mut memo = Memo::default();
    let mut memo_ns = per_row(&waits, |case, facts| {
        std::hint::black_box(memo.classify(facts.syscall.map(|_| case as i32), facts));
    });

    println!("| writer stage ({THREADS} rows per tick, {TICKS} ticks) | CPU per row |");
    println!("| --- | --- |");
    println!(
        "| csv crate formatting only, for comparison | {:.2} µs |",
        median(&mut format) / 1e3
    );
    let [plain, with_containers, without_titles] = &mut compress;
    println!(
        "| CSV encoder + zstd into a file (proc_title filled) | {:.2} µs |",
        median(plain) / 1e3
    );
    println!(
        "| same, half the rows in a Kubernetes container (identity columns filled) | {:.2} µs |",
        median(with_containers) / 1e3
    );
    println!(
        "| same, proc_title empty (the rows above have a 34-byte title) | {:.2} µs |",
        median(without_titles) / 1e3
    );
    println!(
        "| wait class inference, real kernel functions | {:.3} µs |",
        median(&mut classify_ns) / 1e3
    );
    println!(
        "| the same through the writer's memo (`wait_class::Memo`) | {:.3} µs |",
        median(&mut memo_ns) / 1e3
    );
    println!();
    println!("| whole writer, 10,000 threads × 10 Hz | CPU per row | rows/s per CPU | bytes/row CSV | bytes/row Parquet |");
    println!("| --- | --- | --- | --- | --- |");
    for (label, per_row, rate, csv, parquet) in results {
        let show = |b: f64| {
            if b > 0.0 {
                format!("{b:.1}")
            } else {
                "–".to_string()
            }
        };
        println!(
            "| {label} | {:.2} µs | {:.0} | {} | {} |",
            per_row / 1e3,
            rate,
            show(csv),
            show(parquet)
        );
    }
}
