//! The settings file of `taskscope run --config FILE` (TOML).
//!
//! Every key is the long name of a `run` flag, without the dashes
//! (`output-dir = "/var/lib/taskscope"`, `frequency = 10`, `all = true`,
//! `pid = [1234, 5678]`), so a flag added to `cli::RunArgs` has a key the
//! moment it exists: nothing here lists the flags.
//!
//! The one decision a reader must know: the file does not have a second
//! parser. Each setting is checked by clap exactly as if it were typed on
//! the command line (so a bad value gets clap's message, prefixed with the
//! file and line), and the settings then become the *defaults* of the
//! `run` command before the real command line is parsed again. That is why
//! the command line always wins, list flags are replaced rather than
//! appended to, and `taskscope run --config F --frequency 5` means what it
//! says. The file is read only when `--config` is given: the packaged unit
//! passes `--config /etc/taskscope/taskscope.toml`; a hand-started agent
//! never picks up settings it was not told about.

use std::ffi::OsString;
use std::path::Path;

use anyhow::{anyhow, bail, Result};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, CommandFactory, FromArgMatches};
use toml::de::{DeTable, DeValue};

mod default_file;
mod trusted;

pub use default_file::default_file;

use super::{clap_message_line, Cli, Command, RunArgs};
use crate::error::Usage;

/// Where the packaged unit keeps the file.
pub const DEFAULT_PATH: &str = "/etc/taskscope/taskscope.toml";
/// `run` flags that are not settings: they say where the settings are and
/// what to do with them.
pub const NOT_SETTINGS: &[&str] = &["config", "check", "help"];
/// One key of the file, checked, as the flag it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The key, which is the flag's long name.
    pub key: String,
    /// clap's id of the flag.
    pub id: String,
    /// 1-based line of the key in the file.
    pub line: usize,
    /// The values, as they would be typed on the command line; empty for
    /// a switch set to false.
    pub values: Vec<String>,
    switch: bool,
}

impl Setting {
    /// The setting as command-line arguments.
    fn as_args(&self) -> Vec<String> {
        if self.switch {
            return match self.values.first().map(String::as_str) {
                Some("true") => vec![format!("--{}", self.key)],
                _ => Vec::new(),
            };
        }
        self.values
            .iter()
            .map(|value| format!("--{}={value}", self.key))
            .collect()
    }
}

/// The `run` subcommand's definition (it exists by construction of
/// `cli::Command`; the unit tests exercise this on every run).
pub(crate) fn run_command() -> clap::Command {
    Cli::command()
        .find_subcommand("run")
        .cloned()
        .expect("taskscope has a run subcommand")
}

/// The flags a settings file may set, by key.
pub fn keys() -> Vec<(String, Arg)> {
    run_command()
        .get_arguments()
        .filter(|arg| !arg.is_hide_set() && !NOT_SETTINGS.contains(&arg.get_id().as_str()))
        .filter_map(|arg| Some((arg.get_long()?.to_string(), arg.clone())))
        .collect()
}

/// Read, parse and check a settings file.
pub fn load(path: &Path) -> Result<Vec<Setting>> {
    let text = trusted::read(path)?;
    parse(&text).map_err(|err| anyhow!("{}:{err:#}", path.display()))
}

/// Parse settings from TOML text. Errors start with the line number
/// (`12: ...`); [`load`] puts the file name in front.
pub fn parse(text: &str) -> Result<Vec<Setting>> {
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let table = DeTable::parse(text).map_err(|err| {
        let line = err.span().map_or(1, |span| line_of(span.start));
        anyhow!("{line}: not valid TOML: {}", err.message().trim_end())
    })?;
    let keys = keys();
    let mut entries: Vec<_> = table.get_ref().iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    let mut settings = Vec::new();
    for (key, value) in entries {
        let line = line_of(key.span().start);
        let name = key.get_ref().as_ref();
        let Some((_, arg)) = keys.iter().find(|(known, _)| known == name) else {
            bail!("{line}: unknown key '{name}'{}", suggestion(name, &keys));
        };
        let setting = to_setting(name, arg, value.get_ref())
            .map_err(|err| anyhow!("{line}: {name}: {err}"))?;
        let setting = Setting { line, ..setting };
        check_alone(&setting).map_err(|err| anyhow!("{line}: {name}: {err}"))?;
        settings.push(setting);
    }
    check_together(&settings)?;
    Ok(settings)
}

/// The command-line form of one TOML value for `arg`.
fn to_setting(key: &str, arg: &Arg, value: &DeValue<'_>) -> Result<Setting> {
    let switch = matches!(arg.get_action(), ArgAction::SetTrue);
    let list = matches!(arg.get_action(), ArgAction::Append);
    let values = match (value, switch, list) {
        (DeValue::Boolean(b), true, _) => vec![b.to_string()],
        (_, true, _) => bail!("expected true or false"),
        (DeValue::Array(items), _, true) => {
            if items.is_empty() && !arg.get_default_values().is_empty() {
                bail!("an empty list would leave nothing; remove the key to get the default");
            }
            items
                .iter()
                .map(|item| scalar(item.get_ref()))
                .collect::<Result<_>>()?
        }
        (DeValue::Array(_), _, false) => bail!("expected a single value, not a list"),
        (value, _, _) => vec![scalar(value)?],
    };
    Ok(Setting {
        key: key.to_string(),
        id: arg.get_id().to_string(),
        line: 0,
        values,
        switch,
    })
}

/// A string or integer as typed on a command line.
fn scalar(value: &DeValue<'_>) -> Result<String> {
    match value {
        DeValue::String(text) => Ok(text.to_string()),
        DeValue::Integer(int) => match int.radix() {
            10 => Ok(int.as_str().to_string()),
            8 => Ok(format!("0o{}", int.as_str())),
            _ => bail!("write {int} as a decimal number or a string"),
        },
        DeValue::Boolean(_) => bail!("expected a value, not true or false"),
        DeValue::Float(_) => bail!("expected a whole number or a string"),
        DeValue::Datetime(_) => bail!("expected a string (times are written like \"1h\")"),
        DeValue::Array(_) => bail!("expected a single value, not a list"),
        DeValue::Table(_) => bail!("sections and tables are not used: put keys at the top level"),
    }
}

/// clap's verdict on one setting typed as `taskscope run --key=value`.
fn check_alone(setting: &Setting) -> Result<()> {
    let argv = ["taskscope".to_string(), "run".to_string()]
        .into_iter()
        .chain(setting.as_args());
    match Cli::command().try_get_matches_from(argv) {
        Ok(_) => Ok(()),
        Err(err) => bail!("{}", clap_message_line(&err)),
    }
}

/// clap's verdict on every setting at once (conflicts between keys).
fn check_together(settings: &[Setting]) -> Result<()> {
    let argv = ["taskscope".to_string(), "run".to_string()]
        .into_iter()
        .chain(settings.iter().flat_map(Setting::as_args));
    match Cli::command().try_get_matches_from(argv) {
        Ok(_) => Ok(()),
        Err(err) => bail!("{}: {}", lines(settings), clap_message_line(&err)),
    }
}

fn lines(settings: &[Setting]) -> String {
    settings
        .iter()
        .map(|s| s.line.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Make `settings` the defaults of `run`'s flags, except those the command
/// line (`given`) sets itself or contradicts.
pub fn with_settings(
    command: clap::Command,
    settings: &[Setting],
    given: Option<&ArgMatches>,
) -> clap::Command {
    let run = run_command();
    let on_command_line = |id: &str| {
        given.is_some_and(|m| {
            m.try_contains_id(id).unwrap_or(false)
                && m.value_source(id) == Some(ValueSource::CommandLine)
        })
    };
    let overruled = |setting: &Setting| {
        if on_command_line(&setting.id) {
            return true;
        }
        let Some(arg) = run
            .get_arguments()
            .find(|a| a.get_id() == setting.id.as_str())
        else {
            return false;
        };
        // A conflict holds in both directions, wherever it is declared.
        run.get_arg_conflicts_with(arg)
            .iter()
            .any(|other| on_command_line(other.get_id().as_str()))
            || run.get_arguments().any(|other| {
                on_command_line(other.get_id().as_str())
                    && run
                        .get_arg_conflicts_with(other)
                        .iter()
                        .any(|c| c.get_id() == arg.get_id())
            })
    };
    let kept: Vec<Setting> = settings
        .iter()
        .filter(|setting| !overruled(setting))
        .cloned()
        .collect();
    command.mut_subcommand("run", move |mut run| {
        for setting in kept {
            let values = setting.values.clone();
            run = run.mut_arg(setting.id.as_str(), move |arg| {
                if values.is_empty() {
                    arg.default_values(Vec::<String>::new())
                } else {
                    arg.default_values(values)
                }
            });
        }
        run
    })
}

/// " (did you mean 'frequency'?)" for a key one or two edits away.
fn suggestion(name: &str, keys: &[(String, Arg)]) -> String {
    keys.iter()
        .map(|(key, _)| (edit_distance(name, key), key))
        .filter(|(distance, _)| *distance <= 2)
        .min()
        .map(|(_, key)| format!(" (did you mean '{key}'?)"))
        .unwrap_or_else(|| " (keys are the long names of `taskscope run` flags)".to_string())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            current.push(
                (previous[j] + cost)
                    .min(previous[j + 1] + 1)
                    .min(current[j] + 1),
            );
        }
        previous = current;
    }
    previous[b.len()]
}

/// The flags of `run` with the settings of `path` (or none) as their
/// defaults and nothing on the command line: what `taskscope doctor
/// --config FILE` checks.
pub fn run_args_from_file(path: Option<&Path>) -> Result<RunArgs> {
    let loaded = path
        .map(load)
        .transpose()
        .map_err(|err| Usage::from_error(&err))?
        .unwrap_or_default();
    let argv = ["taskscope", "run"].map(OsString::from);
    let matches = with_settings(Cli::command(), &loaded, None)
        .try_get_matches_from(argv)
        .and_then(|matches| Cli::from_arg_matches(&matches))
        .map_err(|err| Usage(clap_message_line(&err)))?;
    match matches.command {
        Command::Run(run) => Ok(run),
        other => bail!("internal error: `taskscope run` parsed as {other:?}"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::cli::{parse_command_line, ParseFailure};
    use std::path::PathBuf;

    pub fn run_args(argv: &[&str]) -> std::result::Result<RunArgs, ParseFailure> {
        let argv = std::iter::once("taskscope").chain(argv.iter().copied());
        match parse_command_line(argv.map(OsString::from))?.command {
            Command::Run(run) => Ok(run),
            other => panic!("parsed as {other:?}"),
        }
    }

    /// A settings file in a private directory.
    pub fn file(text: &str) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("taskscope.toml");
        std::fs::write(&path, text).unwrap();
        let path = path.to_str().unwrap().to_string();
        (dir, path)
    }

    fn settings_error(text: &str) -> String {
        let (_dir, path) = file(text);
        match run_args(&["run", "--config", &path]) {
            Err(ParseFailure::Settings(err)) => format!("{err:#}").replace(&path, "FILE"),
            Err(ParseFailure::Clap(err)) => panic!("clap error: {err}"),
            Ok(run) => panic!("accepted: {run:?}"),
        }
    }

    #[test]
    fn round_trip_every_key_equals_the_same_flags() {
        // A non-default value for every key, and the same as flags.
        let text = r#"
output-dir = "/srv/taskscope"
frequency = 20
all = true
pid = [1]
duration = "90s"
format = ["csv", "parquet"]
stacks = ["kernel"]
track = ["syscalls", "io"]
syscalls = "exact"
rotate = "15m"
flush-interval = 5
max-disk = "2GiB"
max-age = "2d"
file-mode = "0640"
group = "root"
max-threads = 1024
max-cpu = 5
no-pin = true
ship-to = "s3://fleet/agents"
"#;
        let flags = [
            "run",
            "--output-dir=/srv/taskscope",
            "--frequency=20",
            "--all",
            "--pid=1",
            "--duration=90s",
            "--format=csv,parquet",
            "--stacks=kernel",
            "--track=syscalls,io",
            "--syscalls=exact",
            "--rotate=15m",
            "--flush-interval=5",
            "--max-disk=2GiB",
            "--max-age=2d",
            "--file-mode=0640",
            "--group=root",
            "--max-threads=1024",
            "--max-cpu=5",
            "--no-pin",
            "--ship-to=s3://fleet/agents",
        ];
        let settings = parse(text).unwrap();
        let mut set: Vec<&str> = settings.iter().map(|s| s.key.as_str()).collect();
        set.sort_unstable();
        let mut all: Vec<String> = keys()
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| k != "pin-dir")
            .collect();
        all.sort_unstable();
        assert_eq!(set, all, "the test must set every key but pin-dir");
        let (_dir, path) = file(text);
        let from_file = run_args(&["run", "--config", &path]).ok().unwrap();
        let from_flags = run_args(&flags).ok().unwrap();
        assert_eq!(
            format!(
                "{:?}",
                RunArgs {
                    config: None,
                    ..from_file
                }
            ),
            format!("{from_flags:?}")
        );
    }

    #[test]
    fn the_command_line_wins() {
        let (_dir, path) =
            file("frequency = 20\nformat = [\"parquet\"]\nall = true\nno-pin = true\n");
        let run = run_args(&[
            "run",
            "--config",
            &path,
            "--frequency",
            "5",
            "--format",
            "csv",
            "--pin-dir",
            "/sys/fs/bpf/x",
        ])
        .ok()
        .unwrap();
        assert_eq!(run.frequency, 5);
        assert_eq!(
            run.format,
            vec![crate::cli::run::Format::Csv],
            "replaced, not appended"
        );
        assert!(run.all, "from the file");
        assert!(
            !run.no_pin,
            "--pin-dir on the command line overrules no-pin in the file"
        );
        assert_eq!(run.pin_dir, PathBuf::from("/sys/fs/bpf/x"));
        // Where the file is silent, the built-in defaults hold.
        assert_eq!(run.max_age, std::time::Duration::from_secs(7 * 86_400));
    }

    #[test]
    fn unknown_keys_name_file_and_line() {
        assert_eq!(
            settings_error("all = true\n\nfrequncy = 5\n"),
            "FILE:3: unknown key 'frequncy' (did you mean 'frequency'?)"
        );
        assert_eq!(
            settings_error("colour = \"blue\"\n"),
            "FILE:1: unknown key 'colour' (keys are the long names of `taskscope run` flags)"
        );
        assert!(settings_error("[run]\nall = true\n").starts_with("FILE:1: unknown key 'run'"));
        assert!(settings_error("test-rotate-secs = 2\n").contains("unknown key"));
        assert!(settings_error("config = \"/x\"\n").contains("unknown key"));
    }

    #[test]
    fn bad_values_name_file_and_line() {
        let err = settings_error("# c\nfrequency = 5000\n");
        assert!(
            err.starts_with("FILE:2: frequency: invalid value '5000'"),
            "{err}"
        );
        let err = settings_error("all = \"yes\"\n");
        assert_eq!(err, "FILE:1: all: expected true or false");
        let err = settings_error("format = [\"json\"]\n");
        assert!(
            err.starts_with("FILE:1: format: invalid value 'json'"),
            "{err}"
        );
        let err = settings_error("\n\nrotate = \"1y\"\n");
        assert!(
            err.starts_with("FILE:3: rotate: invalid value '1y'"),
            "{err}"
        );
        let err = settings_error("frequency = 1.5\n");
        assert_eq!(
            err,
            "FILE:1: frequency: expected a whole number or a string"
        );
        let err = settings_error("format = []\n");
        assert!(err.contains("empty list"), "{err}");
        let err = settings_error("frequency = [1, 2]\n");
        assert!(err.contains("not a list"), "{err}");
        let err = settings_error("all = true\nfrequency = \n");
        assert!(err.starts_with("FILE:2: not valid TOML"), "{err}");
        let err = settings_error("pin-dir = \"/sys/fs/bpf/a\"\nno-pin = true\n");
        assert!(err.starts_with("FILE:1,2: the argument"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn octal_and_decimal_modes() {
        let run = |text: &str| {
            let (_dir, path) = file(text);
            run_args(&["run", "--config", &path])
                .ok()
                .unwrap()
                .file_mode
        };
        assert_eq!(run("file-mode = \"0640\"\n"), 0o640);
        assert_eq!(run("file-mode = 0o640\n"), 0o640);
        assert_eq!(run("file-mode = 640\n"), 0o640);
    }

    #[test]
    fn without_config_nothing_is_read() {
        let run = run_args(&["run", "--frequency", "3"]).ok().unwrap();
        assert_eq!(run.frequency, 3);
        assert_eq!(run.config, None);
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("frequncy", "frequency"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("max_age", "max-age"), 1);
    }
}
