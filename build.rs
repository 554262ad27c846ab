//! Builds the BPF programs in `bpf/` and generates the skeleton.
//!
//! Each `bpf/*.bpf.c` file is one concern; they are compiled separately and
//! linked with libbpf's static linker into one object, so they share the
//! maps defined in `maps.bpf.c`. The clang used is `$TASKSCOPE_CLANG`, else
//! `clang`, else the newest versioned `clang-N` on `$PATH`.
//!
//! It also records the git commit for `taskscope --version`
//! (`TASKSCOPE_GIT_COMMIT`): from the environment when set (builds from a
//! tarball), else `git rev-parse`, else "unknown".

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use libbpf_cargo::SkeletonBuilder;

const SOURCES: &[&str] = &[
    "maps.bpf.c",
    "sched.bpf.c",
    "syscall.bpf.c",
    "blockio.bpf.c",
    "iter.bpf.c",
    "oncpu.bpf.c",
    "waits.bpf.c",
];

fn main() {
    git_commit();
    packed_relocations();
    if let Err(err) = build() {
        // One clear line, visible in cargo's output.
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

/// Link the binaries with packed relative relocations (DT_RELR) where the
/// host's linker and C library support them (binutils ≥ 2.38, glibc ≥
/// 2.36): the dynamic loader then applies DataFusion's ~235,000 relative
/// relocations from a few kilobytes of bitmap instead of 5.6 MB of
/// entries, so `main` — which blocks the stopping signals first thing —
/// starts sooner after exec. Probed by linking and running a small
/// program; anything else (a cross build, an old toolchain) links as
/// before.
fn packed_relocations() {
    const FLAG: &str = "-Wl,-z,pack-relative-relocs";
    if env::var("TARGET").ok() != env::var("HOST").ok() {
        return;
    }
    let Ok(out_dir) = env::var("OUT_DIR").map(PathBuf::from) else {
        return;
    };
    let source = out_dir.join("relr_probe.c");
    let program = out_dir.join("relr_probe");
    let probe =
        "static const char *p[] = {\"taskscope\"}; int main(void) { return p[0][0] != 't'; }\n";
    if std::fs::write(&source, probe).is_err() {
        return;
    }
    let linked = Command::new(env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-pie", "-fPIE", FLAG, "-o"])
        .arg(&program)
        .arg(&source)
        .status()
        .is_ok_and(|s| s.success());
    if linked && Command::new(&program).status().is_ok_and(|s| s.success()) {
        println!("cargo:rustc-link-arg-bins={FLAG}");
    }
}

fn build() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let bpf_dir = manifest_dir.join("bpf");
    println!("cargo:rerun-if-changed=bpf");
    println!("cargo:rerun-if-env-changed=TASKSCOPE_CLANG");

    let clang = find_clang()?;
    let arch = vmlinux_arch()?;
    let vmlinux_dir = bpf_dir.join("vmlinux").join(arch);
    if !vmlinux_dir.join("vmlinux.h").exists() {
        anyhow::bail!(
            "no vmlinux.h for {arch}: generate it with `bpftool btf dump file /sys/kernel/btf/vmlinux format c > {}`",
            vmlinux_dir.join("vmlinux.h").display()
        );
    }

    let mut objects = Vec::new();
    for source in SOURCES {
        let obj = out_dir.join(source.replace(".bpf.c", ".o"));
        SkeletonBuilder::new()
            .source(bpf_dir.join(source))
            .obj(&obj)
            .clang(&clang)
            .clang_args([
                format!("-I{}", bpf_dir.display()),
                format!("-I{}", vmlinux_dir.display()),
                "-Wall".to_string(),
                "-Werror".to_string(),
                "-Wno-unused-function".to_string(),
                "-mcpu=v3".to_string(),
            ])
            .build()
            .map_err(|err| {
                anyhow::anyhow!("compiling bpf/{source} with {}: {err:#}", clang.display())
            })?;
        objects.push(obj);
    }

    let linked = out_dir.join("taskscope.bpf.o");
    let mut linker = libbpf_rs::Linker::new(&linked)?;
    for obj in &objects {
        linker.add_file(obj)?;
    }
    linker.link()?;

    SkeletonBuilder::new()
        .obj(&linked)
        .generate(out_dir.join("taskscope.skel.rs"))?;
    Ok(())
}

fn vmlinux_arch() -> anyhow::Result<&'static str> {
    match env::var("CARGO_CFG_TARGET_ARCH")?.as_str() {
        "x86_64" => Ok("x86_64"),
        "aarch64" => Ok("aarch64"),
        other => anyhow::bail!("taskscope's BPF programs support x86_64 and aarch64, not {other}"),
    }
}

/// A clang that can target BPF: `$TASKSCOPE_CLANG`, `clang`, `clang-N`.
fn find_clang() -> anyhow::Result<PathBuf> {
    if let Some(clang) = env::var_os("TASKSCOPE_CLANG") {
        let clang = PathBuf::from(clang);
        return if targets_bpf(&clang) {
            Ok(clang)
        } else {
            anyhow::bail!(
                "TASKSCOPE_CLANG={} is not a clang that can target BPF",
                clang.display()
            )
        };
    }
    let mut candidates = vec!["clang".to_string()];
    candidates.extend((11..=25).rev().map(|v| format!("clang-{v}")));
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|c| targets_bpf(c))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no clang found to compile the BPF programs: install Debian's `clang` package \
                 (apt-get install clang libelf-dev zlib1g-dev pkg-config) or set TASKSCOPE_CLANG"
            )
        })
}

fn targets_bpf(clang: &Path) -> bool {
    Command::new(clang)
        .arg("--print-targets")
        .output()
        .map(|out| out.status.success() && String::from_utf8_lossy(&out.stdout).contains("bpf"))
        .unwrap_or(false)
}

/// Set `TASKSCOPE_GIT_COMMIT` for `taskscope --version`.
fn git_commit() {
    println!("cargo:rerun-if-env-changed=TASKSCOPE_GIT_COMMIT");
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").args(args).output().ok()?;
        let text = String::from_utf8(out.stdout).ok()?;
        (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
    };
    let commit = env::var("TASKSCOPE_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_string());
    // Rerun when HEAD moves (a commit, a checkout), worktrees included. A
    // missing file would make cargo rerun this script on every build.
    let head_ref = git(&["symbolic-ref", "-q", "HEAD"]);
    for name in std::iter::once("HEAD").chain(head_ref.as_deref()) {
        if let Some(file) = git(&["rev-parse", "--git-path", name]) {
            if Path::new(&file).exists() {
                println!("cargo:rerun-if-changed={file}");
            }
        }
    }
    println!("cargo:rustc-env=TASKSCOPE_GIT_COMMIT={commit}");
}
