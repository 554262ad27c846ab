//! `man/taskscope.8`, generated from the command-line definition.
//!
//! clap_mangen renders the name, synopsis, description and options of the
//! top-level command and of each subcommand (one section each, so a single
//! page documents every flag); the sections a CLI definition cannot know
//! — files, signals, exit status, permissions, environment, examples —
//! are written here in roff. `taskscope generate manpage` prints the page;
//! a test fails when the checked-in page differs from it or misses a flag.

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::Cli;

/// The page, as `taskscope generate manpage` prints it.
pub fn render() -> Result<String> {
    let cli = Cli::command();
    let mut page = Vec::new();
    let man = clap_mangen::Man::new(cli.clone())
        .section("8")
        .manual("System Administration")
        .source(format!("taskscope {}", env!("CARGO_PKG_VERSION")));
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    page.extend_from_slice(SYNOPSIS.as_bytes());
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    for sub in cli.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        subcommand_section(sub, &mut page)?;
    }
    page.extend_from_slice(EXTRA_SECTIONS.as_bytes());
    let page = String::from_utf8(page).context("the man page is not UTF-8")?;
    // Each clap_mangen render starts with the same two-line preamble;
    // the page needs it once.
    let mut out = String::new();
    let mut seen_preamble = false;
    for line in page.lines() {
        let preamble = line.starts_with(".ie \\n(.g .ds Aq") || line.starts_with(".el .ds Aq");
        if preamble && seen_preamble && !line.starts_with(".el") {
            continue;
        }
        if preamble && line.starts_with(".el") {
            if seen_preamble {
                continue;
            }
            seen_preamble = true;
        }
        out.push_str(line);
        out.push('\n');
    }
    Ok(out)
}

/// `.SH "TASKSCOPE RUN"`: the subcommand's synopsis, description and
/// options, with clap_mangen's section headers turned into this one's.
fn subcommand_section(sub: &clap::Command, page: &mut Vec<u8>) -> Result<()> {
    let name = format!("taskscope {}", sub.get_name());
    let sub = sub
        .clone()
        .bin_name(name.clone())
        .disable_help_flag(true)
        .mut_args(|arg| arg.help_heading(None::<&str>));
    let man = clap_mangen::Man::new(sub);
    let section = |render: &dyn Fn(&mut Vec<u8>) -> std::io::Result<()>| -> Result<String> {
        let mut out = Vec::new();
        render(&mut out)?;
        let text = String::from_utf8(out).context("the man page is not UTF-8")?;
        // Drop clap_mangen's preamble (the page has it once, from the
        // title) and its own .SH line; the body stays.
        let mut body = String::new();
        let mut header_dropped = false;
        for line in text.lines() {
            if line.starts_with(".ie \\n(.g .ds Aq") || line.starts_with(".el .ds Aq") {
                continue;
            }
            if !header_dropped && line.starts_with(".SH ") {
                header_dropped = true;
                continue;
            }
            body.push_str(line);
            body.push('\n');
        }
        Ok(body)
    };
    let synopsis = section(&|out| man.render_synopsis_section(out))?;
    let description = section(&|out| man.render_description_section(out))?;
    let options = section(&|out| man.render_options_section(out))?;
    page.extend_from_slice(format!(".SH \"{}\"\n", name.to_uppercase()).as_bytes());
    page.extend_from_slice(synopsis.as_bytes());
    page.extend_from_slice(b".PP\n");
    page.extend_from_slice(description.as_bytes());
    if !options.trim().is_empty() {
        page.extend_from_slice(b".PP\n\\fBOptions\\fR\n");
        page.extend_from_slice(options.as_bytes());
    }
    Ok(())
}

const SYNOPSIS: &str = r#".SH SYNOPSIS
\fBtaskscope\fR [\fB\-v\fR]... \fBrun\fR [\fIOPTIONS\fR]
.br
\fBtaskscope report\fR [\fB\-\-dir\fR \fIDIR\fR] [\fB\-\-since\fR \fIDURATION\fR | \fB\-\-from\fR \fITIME\fR] [\fB\-\-to\fR \fITIME\fR] [\fB\-\-by\fR \fICOLUMNS\fR] [\fB\-\-where\fR \fIPREDICATE\fR] [\fB\-\-latency\fR | \fB\-\-timeline\fR] [\fIOPTIONS\fR]
.br
\fBtaskscope flamegraph\fR [\fB\-\-dir\fR \fIDIR\fR] [\fB\-\-since\fR \fIDURATION\fR] [\fB\-\-where\fR \fIPREDICATE\fR] [\fB\-\-kind\fR \fIKINDS\fR] [\fB\-o\fR \fIFILE\fR] [\fB\-\-folded\fR]
.br
\fBtaskscope serve\fR [\fB\-\-dir\fR \fIDIR\fR] [\fB\-\-listen\fR \fIADDR:PORT\fR] [\fB\-\-token\-file\fR \fIFILE\fR]
.br
\fBtaskscope top\fR [\fB\-\-pin\-dir\fR \fIDIR\fR] [\fB\-\-interval\fR \fIDURATION\fR] [\fB\-\-by\fR \fICOLUMNS\fR] [\fB\-\-dir\fR \fIDIR\fR [\fB\-\-since\fR \fIDURATION\fR | \fB\-\-from\fR \fITIME\fR] [\fB\-\-to\fR \fITIME\fR]]
.br
\fBtaskscope sql\fR [\fB\-\-dir\fR \fIDIR\fR] [\fB\-\-since\fR \fIDURATION\fR | \fB\-\-from\fR \fITIME\fR] [\fB\-\-to\fR \fITIME\fR] [\fB\-\-format\fR \fItable\fR|\fIcsv\fR|\fIjson\fR] (\fIQUERY\fR | \fB\-f\fR \fIFILE\fR)
.br
\fBtaskscope sql \-\-live\fR [\fB\-\-pin\-dir\fR \fIDIR\fR] [\fB\-\-interval\fR \fIDURATION\fR] [\fB\-\-window\fR \fIDURATION\fR] [\fB\-\-count\fR \fIN\fR] [\fB\-\-all\fR] [\fB\-\-format\fR \fItable\fR|\fIcsv\fR|\fIjson\fR] (\fIQUERY\fR | \fB\-f\fR \fIFILE\fR)
.br
\fBtaskscope export\fR (\fB\-\-from\fR \fITIME\fR [\fB\-\-to\fR \fITIME\fR] | \fB\-\-since\fR \fIDURATION\fR | \fB\-\-day\fR \fIDAY\fR) \fB\-o\fR \fIPATH\fR [\fIOPTIONS\fR]
.br
\fBtaskscope import\fR \fIARCHIVE\fR [\fB\-\-dir\fR \fIDIR\fR]
.br
\fBtaskscope doctor\fR [\fB\-\-config\fR \fIFILE\fR]
.br
\fBtaskscope schema\fR [\fB\-\-format\fR \fItext\fR|\fImarkdown\fR]
.br
\fBtaskscope\fR \fB\-\-version\fR
"#;

const EXTRA_SECTIONS: &str = r#".SH FILES
.TP
\fI/etc/taskscope/taskscope.toml\fR
Settings read by \fBtaskscope run \-\-config\fR; every key is the long name of a
\fBrun\fR flag.
The packaged service passes this file; a flag given on the command line wins over it.
.TP
\fI/var/lib/taskscope/\fR
Default output directory (the service's StateDirectory):
\fItable\fR\fB/date=\fR\fIYYYY\-MM\-DD\fR\fB/hour=\fR\fIHH\fR\fB/\fR\fIhost\fR\-\fIYYYYMMDD\fR\fBT\fR\fIHHMMSS\fR\fBZ.csv.zst\fR
(or \fB.parquet\fR), one directory per table (samples, stacks, ticks).
Times are UTC.
.TP
\fI/var/lib/taskscope/.inprogress/\fR
Periods being written; published into their partition when complete, recovered after a crash.
\fBreport\fR, \fBflamegraph\fR, \fBsql\fR and \fBexport\fR read them up to their last complete tick.
.TP
\fI/var/lib/taskscope/archive/\fR
Daily archives written by \fBtaskscope\-export.service\fR.
.TP
\fI/sys/fs/bpf/taskscope/\fR
The pinned thread table (\fB\-\-pin\-dir\fR): \fBthreads\fR and the maps decoding it needs
(\fBsyscall_args\fR, \fBwaits\fR, \fBfds\fR), mode 0600, read live by \fBtaskscope top\fR as root.
When no BPF filesystem is mounted at \fI/sys/fs/bpf\fR, \fBrun\fR mounts one there (mode 0755)
and leaves it mounted; it mounts nowhere else.
.TP
\fI/usr/share/taskscope/taskscope.sql\fR
DuckDB views and queries over the output directory.
.SH "TIMES AND DURATIONS"
A \fITIME\fR is a date and time, \fB2026\-11\-30 08:00\fR (seconds and a fraction optional,
\fBT\fR instead of the space), or a date alone (its midnight).
Without an offset it is UTC; an offset is honoured: \fB2026\-11\-30T09:00+01:00\fR,
\fB2026\-11\-30 09:00 +01:00\fR, \fB...Z\fR, \fB... UTC\fR.
Dates and times that do not exist (\fB2026\-02\-30\fR, \fB24:00\fR) are errors.
Times are shown in UTC.
A \fIDAY\fR is \fBtoday\fR, \fByesterday\fR or \fIYYYY\-MM\-DD\fR, a whole UTC day.
.PP
A \fIDURATION\fR is a number of seconds or a length such as \fB90s\fR, \fB30m\fR,
\fB1h30m\fR, \fB"2 hours"\fR, \fB1d12h\fR or \fBPT1H\fR; a day is 24 hours;
months, years and negative lengths are errors.
The same forms are read from the settings file.
.PP
The window of \fBreport\fR, \fBflamegraph\fR, \fBsql\fR and \fBexport\fR ends at \fB\-\-to\fR or now;
\fB\-\-since\fR counts back from its end; \fBreport\fR, \fBflamegraph\fR and \fBsql\fR default to the
last hour. A window that ends before it starts or starts after now is an error (exit 2).
.SH SIGNALS
.TP
\fBSIGTERM\fR, \fBSIGINT\fR
Stop sampling, publish every open period and exit 0 (1 if one cannot be published), within about two seconds.
.TP
\fBSIGHUP\fR
Publish the periods being written now and go on sampling into new files
(\fBsystemctl reload taskscope\fR).
Settings are not re\-read; restart the service after editing the settings file.
.SH "EXIT STATUS"
.TP
\fB0\fR
Success; for \fBdoctor\fR and \fBrun \-\-check\fR: the agent can run here.
.TP
\fB1\fR
Runtime error (privileges, BTF, output directory, the kernel refused the programs,
an export or import failed, or \fBrun\fR could not publish its last periods: the rows
wait in \fI.inprogress/\fR for the next start); for \fBdoctor\fR and \fBrun \-\-check\fR:
the agent cannot run here.
.TP
\fB2\fR
Bad command line or settings file (the message names the file and line), or bad SQL
for \fBsql\fR (the message gives the line and column).
.TP
\fB3\fR
For \fBreport\fR, \fBflamegraph\fR, \fBsql\fR and \fBexport\fR: an incomplete answer.
Files that could not be read (unreadable, truncated, damaged, a wrong header or a value
of the wrong type) or periods missing a table the answer needs are named on stderr, one
line each, and left out with their whole period; the rest is answered (or archived).
A window without any data is status 1, and the message says where the data is.
.SH PERMISSIONS
\fBtaskscope run\fR needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN) to load its programs.
For complete data it also uses CAP_SYS_PTRACE (executables and user stacks of other users'
processes), CAP_DAC_READ_SEARCH (binaries in directories it cannot search),
CAP_CHECKPOINT_RESTORE (binaries deleted since they started) and CAP_SYSLOG (kernel symbol names);
CAP_CHOWN only with \fB\-\-group\fR.
Without them it runs degraded; \fBtaskscope doctor\fR says what is missing.
.PP
The output directory must be owned by the agent's user (root), not writable by others,
not a symlink, and not below a directory others can write to, except a sticky one owned by
root such as \fI/tmp\fR: there the agent creates it (owned by root, 0755), and the sticky
bit keeps other users from renaming or removing it.
Files are mode 0644 and directories 0755 unless \fB\-\-file\-mode\fR and \fB\-\-group\fR say otherwise.
.PP
What the files reveal of other users' processes: thread names, executables, files and
sockets waited on, and in \fBproc_title\fR only argv[0] as each process left it: a title a
process set for itself (\fBpostgres: walwriter\fR) shows, the arguments of a command line
(\fBmysql \-pPASSWORD\fR, \fB\-\-token=...\fR) are never recorded.
Everyone who can read the files can read these.
.PP
\fBexport\fR, \fBimport\fR and \fBschema\fR need no privileges: any user who can read the
data can export it.
An archive is no more readable than the files it holds.
.SH ENVIRONMENT
.TP
\fBNOTIFY_SOCKET\fR, \fBWATCHDOG_USEC\fR, \fBWATCHDOG_PID\fR
Set by systemd for Type=notify services: \fBrun\fR sends READY=1 once its programs are
attached and the first tick is written, WATCHDOG=1 from its sampling loop, and STOPPING=1.
.TP
\fBTASKSCOPE_LOG\fR
Log filter (tracing's EnvFilter syntax, e.g. \fBdebug\fR); overrides \fB\-v\fR.
Logs go to the journal when stderr is connected to it (JOURNAL_STREAM), else to stderr.
.SH EXAMPLES
Sample every active thread at 10 Hz for a minute:
.PP
.RS 4
.nf
taskscope run \-\-frequency 10 \-\-duration 1m \-\-output\-dir /root/ts
.fi
.RE
.PP
Check what the service would be able to do:
.PP
.RS 4
.nf
taskscope doctor \-\-config /etc/taskscope/taskscope.toml
.fi
.RE
.PP
Export the last two hours for a post\-mortem, read it elsewhere:
.PP
.RS 4
.nf
taskscope export \-\-since 2h \-o incident.tar.zst
taskscope export \-\-from "2026\-11\-30 09:00 +01:00" \-o incident.tar.zst   # to now
taskscope import incident.tar.zst \-\-dir incident
duckdb \-c "SELECT state, count(*) FROM read_csv('incident/samples/*/*/*.csv.zst') GROUP BY ALL"
.fi
.RE
.PP
Where threads spent their time, with awk:
.PP
.RS 4
.nf
zstdcat /var/lib/taskscope/samples/*/*/*.csv.zst |
  awk \-F, '$1 != "ts" { n[$7]++ } END { for (s in n) print n[s], s }'
.fi
.RE
.SH "SEE ALSO"
\fBsystemd.service\fR(5), \fBsystemd.exec\fR(5), \fBcapabilities\fR(7), \fBbpf\fR(2), \fBduckdb\fR(1)
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_visible_flag_of_every_command_is_on_the_page() {
        let page = render().unwrap();
        let cli = Cli::command();
        let commands = std::iter::once(&cli).chain(cli.get_subcommands());
        for command in commands.filter(|c| !c.is_hide_set()) {
            for arg in command.get_arguments().filter(|a| !a.is_hide_set()) {
                if let Some(long) = arg.get_long() {
                    let roff = format!("\\-\\-{}", long.replace('-', "\\-"));
                    assert!(
                        page.contains(&roff),
                        "--{long} of {} is not on the page",
                        command.get_name()
                    );
                }
            }
            if command.get_name() != "taskscope" {
                let header = format!(".SH \"TASKSCOPE {}\"", command.get_name().to_uppercase());
                assert!(page.contains(&header), "no section {header}");
            }
        }
        assert!(
            !page.contains("test\\-rotate\\-secs"),
            "hidden flags stay hidden"
        );
        // The hand-written synopsis names every visible subcommand.
        for sub in cli.get_subcommands().filter(|c| !c.is_hide_set()) {
            let name = sub.get_name();
            assert!(
                SYNOPSIS.contains(&format!("\\fBtaskscope {name}\\fR"))
                    || SYNOPSIS.contains(&format!("\\fB{name}\\fR")),
                "SYNOPSIS in src/manpage.rs lacks `taskscope {name}`"
            );
        }
        for section in [
            "FILES",
            "SIGNALS",
            "\"EXIT STATUS\"",
            "PERMISSIONS",
            "EXAMPLES",
        ] {
            assert!(page.contains(&format!(".SH {section}\n")), "no {section}");
        }
    }
}
