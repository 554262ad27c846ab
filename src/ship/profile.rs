//! The AWS shared files (`~/.aws/credentials`, `~/.aws/config`) read as
//! the AWS CLI reads them, for the settings the S3 client can take: keys,
//! session token, region and endpoint of the profile `AWS_PROFILE` (or
//! `default`).
//!
//! The decision a reader must know: the environment always wins, as in the
//! AWS SDKs. Keys come from the profile only when `AWS_ACCESS_KEY_ID` is
//! not set, and then all together from the profile (never a key from one
//! place and a secret or token from another); within the profile the
//! credentials file wins over the config file, key by key. A profile that
//! asks for something the shipper cannot do (assume-role, SSO,
//! `credential_process`) is an error, never silently skipped. Errors name
//! files, lines and setting names, never a value.
//!
//! Endpoints follow the SDKs' order: `AWS_ENDPOINT_URL_S3`, then
//! `AWS_ENDPOINT_URL`, then the `s3 = endpoint_url` of the profile's
//! `[services NAME]` section, then the profile's own `endpoint_url`; and
//! none of them when `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` (or, when that
//! is not set, the profile's `ignore_configured_endpoint_urls`) is true.
//! An `endpoint_url` nested under the profile's own `s3 =` (a convention
//! of the third-party awscli-plugin-endpoint, which the SDKs do not read)
//! is an error rather than silently not used. In the config file
//! `[profile default]` is the default profile as `[default]` is; when both
//! are there `[profile default]` is used, as in the AWS SDKs for Rust and
//! Java.
//!
//! The files are parsed with `rust-ini` (the smallest well-kept INI
//! crate; the AWS SDK's own parser comes with the whole SDK runtime),
//! with quotes and escapes off and indented lines continuing the value
//! above, which is how the AWS files nest `s3 =` sub-settings. rust-ini
//! accepts lines the SDKs reject (an unclosed `[section`, a line without
//! `=`), so each line is checked against the SDKs' rules first
//! (`check_lines`) and a broken file is named with its first broken line.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use ini::{Ini, ParseOption};

/// What a profile adds to the environment; `None` where the environment
/// already says or the profile does not.
#[derive(Default, PartialEq, Eq)]
pub struct ProfileSettings {
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub region: Option<String>,
    /// An endpoint from the profile is explicit, as `AWS_ENDPOINT_URL` is.
    pub endpoint_url: Option<String>,
    /// `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` or the profile's
    /// `ignore_configured_endpoint_urls` is true: no endpoint from the
    /// environment either.
    pub ignore_endpoints: bool,
}

/// Never shows a key, secret or token, only whether it is set.
impl std::fmt::Debug for ProfileSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |value: &Option<String>| value.as_ref().map(|_| "(set)");
        f.debug_struct("ProfileSettings")
            .field("access_key_id", &set(&self.access_key_id))
            .field("secret_access_key", &set(&self.secret_access_key))
            .field("session_token", &set(&self.session_token))
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field("ignore_endpoints", &self.ignore_endpoints)
            .finish()
    }
}

/// Keys of profiles whose credentials come some way the shipper cannot
/// take, and what that way is called.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("role_arn", "assume-role"),
    ("source_profile", "assume-role"),
    ("credential_source", "assume-role"),
    ("credential_process", "credential_process"),
    ("sso_session", "SSO"),
    ("sso_start_url", "SSO"),
    ("sso_account_id", "SSO"),
    ("web_identity_token_file", "web identity in a profile"),
];

/// The environment variables that give an endpoint, most specific first.
pub const ENDPOINT_VARIABLES: &[&str] =
    &["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"];
/// The variable and the profile setting that turn every configured
/// endpoint off.
const IGNORE_VARIABLE: &str = "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS";
const IGNORE_SETTING: &str = "ignore_configured_endpoint_urls";

/// `true` or `false` as the SDKs read them (any case); `None` otherwise.
fn boolean(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// The settings of the profile the process environment chooses.
pub fn from_process_environment() -> Result<ProfileSettings> {
    resolve(&|name| std::env::var(name).ok().filter(|value| !value.is_empty()))
}

/// The settings of the profile chosen by `environment` (a variable's
/// value, if set and not empty), for what the environment does not set.
pub fn resolve(environment: &dyn Fn(&str) -> Option<String>) -> Result<ProfileSettings> {
    let named = environment("AWS_PROFILE");
    let profile = named.clone().unwrap_or_else(|| "default".to_string());
    let home = environment("HOME").map(PathBuf::from);
    let file = |variable: &str, default: &str| {
        environment(variable)
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(default)))
    };
    let credentials_file = file("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials");
    let config_file = file("AWS_CONFIG_FILE", ".aws/config");
    let credentials = load(credentials_file.as_deref())?;
    let config = load(config_file.as_deref())?;
    let config_section = if profile != "default" {
        format!("profile {profile}")
    } else if config
        .as_ref()
        .is_some_and(|c| c.section(Some("profile default")).is_some())
    {
        "profile default".to_string()
    } else {
        profile.clone()
    };
    // The environment's word on ignoring endpoints, if it has one.
    let environment_ignores = environment(IGNORE_VARIABLE)
        .map(|value| {
            boolean(&value)
                .ok_or_else(|| anyhow::anyhow!("{IGNORE_VARIABLE} is neither true nor false"))
        })
        .transpose();
    let from_credentials = properties(credentials.as_ref(), &profile);
    let from_config = properties(config.as_ref(), &config_section);
    if from_credentials.is_none() && from_config.is_none() {
        if named.is_some() {
            bail!(
                "AWS_PROFILE={profile}: no such profile in {} or {}",
                shown(credentials_file.as_deref()),
                shown(config_file.as_deref())
            );
        }
        return Ok(ProfileSettings {
            ignore_endpoints: environment_ignores?.unwrap_or(false),
            ..ProfileSettings::default()
        });
    }
    // The credentials file wins, key by key.
    let mut merged = from_config.unwrap_or_default();
    merged.extend(from_credentials.unwrap_or_default());
    let get = |key: &str| merged.get(key).filter(|v| !v.is_empty()).cloned();
    let where_ = || {
        format!(
            "profile '{profile}' ({} / {})",
            shown(credentials_file.as_deref()),
            shown(config_file.as_deref())
        )
    };

    let mut settings = ProfileSettings::default();
    if environment("AWS_ACCESS_KEY_ID").is_none() {
        if let Some((key, way)) = UNSUPPORTED.iter().find(|(key, _)| get(key).is_some()) {
            bail!("{} sets {key}: {way} profiles are not supported by --ship-to; export AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or use an instance or web identity role", where_());
        }
        settings.access_key_id = get("aws_access_key_id");
        settings.secret_access_key = get("aws_secret_access_key");
        settings.session_token = get("aws_session_token");
        if settings.access_key_id.is_some() != settings.secret_access_key.is_some() {
            bail!(
                "{} sets only one of aws_access_key_id and aws_secret_access_key",
                where_()
            );
        }
        // object_store would pair the environment's token with the
        // profile's keys (the SDKs ignore such a token): refuse instead.
        if settings.access_key_id.is_some() && environment("AWS_SESSION_TOKEN").is_some() {
            bail!("AWS_SESSION_TOKEN is set without AWS_ACCESS_KEY_ID while the keys come from {}: unset it or export the keys it belongs to", where_());
        }
    }
    if environment("AWS_REGION").is_none() && environment("AWS_DEFAULT_REGION").is_none() {
        settings.region = get("region");
    }
    let ignore = match environment_ignores? {
        Some(ignore) => ignore,
        None => match get(IGNORE_SETTING) {
            Some(value) => boolean(&value).ok_or_else(|| {
                anyhow::anyhow!(
                    "{} sets {IGNORE_SETTING} to neither true nor false",
                    where_()
                )
            })?,
            None => false,
        },
    };
    settings.ignore_endpoints = ignore;
    let from_environment = ENDPOINT_VARIABLES
        .iter()
        .any(|name| environment(name).is_some());
    if !ignore && !from_environment {
        if get("s3").is_some_and(|block| nested(&block, "endpoint_url").is_some()) {
            bail!("{} sets endpoint_url under s3 =, which the AWS SDKs do not read: give it as the profile's endpoint_url, or in the s3 = of a [services NAME] section named by services = NAME", where_());
        }
        // As the SDKs: the `[services NAME]` section's `s3 = endpoint_url`
        // first, then the profile's own endpoint_url.
        let services_endpoint = match get("services") {
            Some(services) => {
                let Some(section) = properties(config.as_ref(), &format!("services {services}"))
                else {
                    bail!(
                        "{} sets services = {services} but {} has no [services {services}] section",
                        where_(),
                        shown(config_file.as_deref())
                    );
                };
                section
                    .get("s3")
                    .and_then(|block| nested(block, "endpoint_url"))
            }
            None => None,
        };
        settings.endpoint_url = services_endpoint.or_else(|| get("endpoint_url"));
    }
    Ok(settings)
}

/// The file at `path` parsed, or `None` when there is no such file.
fn load(path: Option<&Path>) -> Result<Option<Ini>> {
    let Some(path) = path else { return Ok(None) };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => bail!("cannot read {}: {err}", path.display()),
    };
    let malformed = |line: usize, msg: &str| {
        anyhow::anyhow!(
            "{}, line {line}: not an AWS config/credentials file ({msg})",
            path.display()
        )
    };
    if let Err((line, msg)) = check_lines(&text) {
        return Err(malformed(line, msg));
    }
    let options = ParseOption {
        enabled_quote: false,
        enabled_escape: false,
        enabled_indented_mutiline_value: true,
        enabled_preserve_key_leading_whitespace: false,
    };
    Ini::load_from_str_opt(&text, options)
        .map(Some)
        .map_err(|err| malformed(err.line, &err.msg))
}

/// The line rules of the AWS shared files that `rust-ini` does not
/// enforce (it reads an unclosed `[section` up to the file's end and joins
/// a line without `=` to the next key): a section header ends with `]`
/// (a comment may follow it), a setting has a name and `=`, settings come
/// after a header, and an indented line continues a setting. The first
/// broken line's number (from 1) and what is wrong with it.
fn check_lines(text: &str) -> Result<(), (usize, &'static str)> {
    let mut in_section = false;
    let mut after_setting = false;
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim_end();
        let trimmed = line.trim_start();
        let number = index + 1;
        if trimmed.is_empty() || trimmed.starts_with(['#', ';']) {
            continue;
        }
        if trimmed.len() < line.len() {
            // Indented: the value of the setting above goes on.
            if !after_setting {
                return Err((number, "an indented line continues no setting"));
            }
            continue;
        }
        if let Some(header) = trimmed.strip_prefix('[') {
            let closed = header
                .split(['#', ';'])
                .next()
                .is_some_and(|head| head.trim_end().ends_with(']'));
            if !closed {
                return Err((number, "a section header must end with ']'"));
            }
            in_section = true;
            after_setting = false;
            continue;
        }
        match trimmed.split_once('=') {
            None => return Err((number, "a setting needs '='")),
            Some((name, _)) if name.trim().is_empty() => {
                return Err((number, "a setting needs a name before '='"))
            }
            Some(_) if !in_section => return Err((number, "a setting before any [section]")),
            Some(_) => after_setting = true,
        }
    }
    Ok(())
}

/// The settings of `[section]`, if the file has one.
fn properties(file: Option<&Ini>, section: &str) -> Option<HashMap<String, String>> {
    let properties = file?.section(Some(section))?;
    Some(
        properties
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect(),
    )
}

/// `key` of a nested block (`s3 =` followed by indented `key = value`).
fn nested(block: &str, key: &str) -> Option<String> {
    block.lines().find_map(|line| {
        let (name, value) = line.split_once('=')?;
        (name.trim() == key && !value.trim().is_empty()).then(|| value.trim().to_string())
    })
}

fn shown(path: Option<&Path>) -> String {
    path.map_or_else(|| "(no HOME)".to_string(), |p| p.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `resolve` over `variables`, with HOME at `home`.
    fn resolve_with(home: &Path, variables: &[(&str, &str)]) -> Result<ProfileSettings> {
        let mut all: HashMap<String, String> = variables
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        all.insert("HOME".into(), home.display().to_string());
        resolve(&|name| all.get(name).cloned())
    }

    fn write(home: &Path, name: &str, text: &str) {
        std::fs::create_dir_all(home.join(".aws")).unwrap();
        std::fs::write(home.join(".aws").join(name), text).unwrap();
    }

    #[test]
    fn credentials_file_wins_over_config_and_environment_over_both() {
        let home = tempfile::tempdir().unwrap();
        let home = home.path();
        write(
            home,
            "credentials",
            "[fleet]\naws_access_key_id = AKCRED\naws_secret_access_key = s=cred\n",
        );
        write(
            home,
            "config",
            "[default]\nregion = eu-west-1\n\n[profile fleet]\n# a comment\naws_access_key_id = AKCONF\naws_secret_access_key = sconf\naws_session_token = tconf\nregion = eu-north-1\nendpoint_url = http://store:9000\n",
        );
        let fleet = resolve_with(home, &[("AWS_PROFILE", "fleet")]).unwrap();
        assert_eq!(fleet.access_key_id.as_deref(), Some("AKCRED"));
        assert_eq!(fleet.secret_access_key.as_deref(), Some("s=cred"));
        assert_eq!(fleet.session_token.as_deref(), Some("tconf"));
        assert_eq!(fleet.region.as_deref(), Some("eu-north-1"));
        assert_eq!(fleet.endpoint_url.as_deref(), Some("http://store:9000"));

        // Keys, region and endpoint in the environment: the profile adds nothing.
        let env = resolve_with(
            home,
            &[
                ("AWS_PROFILE", "fleet"),
                ("AWS_ACCESS_KEY_ID", "AKENV"),
                ("AWS_DEFAULT_REGION", "us-west-2"),
                ("AWS_ENDPOINT_URL_S3", "https://s3.example"),
            ],
        )
        .unwrap();
        assert!(env == ProfileSettings::default());

        // No AWS_PROFILE: [default], which has only a region.
        let default = resolve_with(home, &[]).unwrap();
        assert_eq!(default.region.as_deref(), Some("eu-west-1"));
        assert_eq!(default.access_key_id, None);
    }

    #[test]
    fn files_named_by_the_environment_and_the_services_endpoint() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("conf.ini");
        std::fs::write(
            &config,
            "[profile edge]\nendpoint_url = https://general\nservices = local\ns3 =\n  addressing_style = path\n\n[services local]\ns3 =\n  endpoint_url = http://127.0.0.1:9000\n",
        )
        .unwrap();
        let settings = resolve_with(
            Path::new("/nonexistent"),
            &[
                ("AWS_PROFILE", "edge"),
                ("AWS_CONFIG_FILE", config.to_str().unwrap()),
            ],
        )
        .unwrap();
        assert_eq!(
            settings.endpoint_url.as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(settings.access_key_id, None);
    }

    #[test]
    fn missing_unsupported_and_malformed_profiles_are_one_line_errors() {
        let home = tempfile::tempdir().unwrap();
        let home = home.path();
        // No files and no AWS_PROFILE: nothing to add, no error.
        assert!(resolve_with(home, &[]).unwrap() == ProfileSettings::default());
        let err = resolve_with(home, &[("AWS_PROFILE", "nope")])
            .unwrap_err()
            .to_string();
        let credentials = home.join(".aws/credentials");
        let config = home.join(".aws/config");
        assert_eq!(
            err,
            format!(
                "AWS_PROFILE=nope: no such profile in {} or {}",
                credentials.display(),
                config.display()
            )
        );

        write(home, "config", "[profile sso]\nsso_session = corp\nregion = x\n[profile half]\naws_access_key_id = AKSECRETVALUE\n[profile whole]\naws_access_key_id = AK\naws_secret_access_key = S\n");
        let err = resolve_with(home, &[("AWS_PROFILE", "sso")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sets sso_session: SSO profiles are not supported"),
            "{err}"
        );
        // With keys in the environment the profile's credentials are not used.
        assert!(resolve_with(home, &[("AWS_PROFILE", "sso"), ("AWS_ACCESS_KEY_ID", "AK")]).is_ok());
        let err = resolve_with(
            home,
            &[
                ("AWS_PROFILE", "whole"),
                ("AWS_SESSION_TOKEN", "TOKENVALUE"),
            ],
        );
        let err = err.unwrap_err().to_string();
        assert!(err.starts_with("AWS_SESSION_TOKEN is set without"), "{err}");
        assert!(!err.contains("TOKENVALUE"), "a value in an error: {err}");
        let err = resolve_with(home, &[("AWS_PROFILE", "half")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("only one of aws_access_key_id"), "{err}");
        assert!(!err.contains("AKSECRETVALUE"), "a value in an error: {err}");

        write(
            home,
            "credentials",
            "[ok]\naws_access_key_id = AK\n= orphan value\n",
        );
        let err = resolve_with(home, &[]).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}, line 3:", credentials.display())),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }

    #[test]
    fn broken_lines_are_named_by_their_own_number() {
        let cases: &[(&str, usize, &str)] = &[
            ("[fleet\naws_access_key_id = AK\n\n", 1, "must end with ']'"),
            (
                "[fleet]\naws_access_key_id AK\naws_secret_access_key = S\n",
                2,
                "needs '='",
            ),
            (
                "aws_access_key_id = AK\n[fleet]\n",
                1,
                "before any [section]",
            ),
            (
                "[fleet]\n  endpoint_url = http://x\n",
                2,
                "continues no setting",
            ),
            ("[a]\nx = 1\n[b]\n = 2\n", 4, "continues no setting"),
            ("[a]\nx = 1\n=2\n", 3, "needs a name"),
        ];
        for (text, line, what) in cases {
            assert_eq!(
                check_lines(text).unwrap_err().0,
                *line,
                "{text:?}: {:?}",
                check_lines(text)
            );
            assert!(check_lines(text).unwrap_err().1.contains(what), "{text:?}");
        }
        // What the AWS files really hold passes: comments, a comment after
        // a header, nested sub-settings, blank lines, `=` in a value.
        let good = "# top\n[default] ; the default\nregion = eu-west-1\n\n\
                    [profile fleet]\ns3 =\n  endpoint_url = http://h:9000\n  \
                    addressing_style = path\naws_secret_access_key = a=b\n";
        assert_eq!(check_lines(good), Ok(()));

        let home = tempfile::tempdir().unwrap();
        let home = home.path();
        write(home, "config", "[profile fleet]\nregion = x\n");
        write(home, "credentials", "[fleet\naws_access_key_id = AK\n");
        let credentials = home.join(".aws/credentials");
        let err = resolve_with(home, &[("AWS_PROFILE", "fleet")])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "{}, line 1: not an AWS config/credentials file (a section header must end with ']')",
                credentials.display()
            )
        );
    }

    #[test]
    fn profile_default_is_the_default_profile_and_wins_over_default() {
        let home = tempfile::tempdir().unwrap();
        let home = home.path();
        write(
            home,
            "config",
            "[profile default]\nregion = eu-central-1\nendpoint_url = http://pd:9000\n",
        );
        let settings = resolve_with(home, &[]).unwrap();
        assert_eq!(settings.region.as_deref(), Some("eu-central-1"));
        assert_eq!(settings.endpoint_url.as_deref(), Some("http://pd:9000"));
        // Named explicitly, the same.
        let named = resolve_with(home, &[("AWS_PROFILE", "default")]).unwrap();
        assert!(named == settings, "{named:?}");
        // Both: [profile default], whole (no key of [default] mixed in).
        write(
            home,
            "config",
            "[default]\nregion = us-west-1\naws_access_key_id = AKD\naws_secret_access_key = SD\n\n[profile default]\nregion = eu-central-1\n",
        );
        let both = resolve_with(home, &[]).unwrap();
        assert_eq!(both.region.as_deref(), Some("eu-central-1"));
        assert_eq!(both.access_key_id, None);
    }

    #[test]
    fn endpoints_in_the_sdks_order_and_the_services_section_must_exist() {
        let home = tempfile::tempdir().unwrap();
        let home = home.path();
        write(
            home,
            "config",
            "[profile both]\nendpoint_url = https://global\nservices = local\n\n[profile global]\nendpoint_url = https://global\n\n[profile other]\nservices = dynamo-only\nendpoint_url = https://global\n\n[profile missing]\nservices = nowhere\n\n[services local]\ns3 =\n  endpoint_url = http://s3-local:9000\n\n[services dynamo-only]\ndynamodb =\n  endpoint_url = http://dynamo:8000\n",
        );
        let endpoint =
            |variables: &[(&str, &str)]| resolve_with(home, variables).unwrap().endpoint_url;
        // services s3 > the profile's endpoint_url.
        assert_eq!(
            endpoint(&[("AWS_PROFILE", "both")]).as_deref(),
            Some("http://s3-local:9000")
        );
        assert_eq!(
            endpoint(&[("AWS_PROFILE", "global")]).as_deref(),
            Some("https://global")
        );
        // A services section without s3: the profile's endpoint_url.
        assert_eq!(
            endpoint(&[("AWS_PROFILE", "other")]).as_deref(),
            Some("https://global")
        );
        // AWS_ENDPOINT_URL (and _S3) > both: the profile gives none.
        for variable in ENDPOINT_VARIABLES {
            assert_eq!(
                endpoint(&[("AWS_PROFILE", "both"), (variable, "http://env")]),
                None
            );
        }
        let err = resolve_with(home, &[("AWS_PROFILE", "missing")])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "profile 'missing' ({} / {}) sets services = nowhere but {} has no [services nowhere] section",
                home.join(".aws/credentials").display(),
                home.join(".aws/config").display(),
                home.join(".aws/config").display()
            )
        );
    }

    #[test]
    fn an_endpoint_nested_in_the_profiles_own_s3_block_is_an_error() {
        let home = tempfile::tempdir().unwrap();
        let home = home.path();
        write(
            home,
            "config",
            "[profile plugin]\nregion = eu-west-1\ns3 =\n  endpoint_url = http://minio:9000\n  addressing_style = path\n",
        );
        let err = resolve_with(home, &[("AWS_PROFILE", "plugin")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sets endpoint_url under s3 =, which the AWS SDKs do not read"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        // Not consulted when the environment gives the endpoint or all are ignored.
        let env = resolve_with(
            home,
            &[("AWS_PROFILE", "plugin"), ("AWS_ENDPOINT_URL", "http://e")],
        );
        assert_eq!(env.unwrap().region.as_deref(), Some("eu-west-1"));
        let ignored = resolve_with(
            home,
            &[
                ("AWS_PROFILE", "plugin"),
                ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"),
            ],
        )
        .unwrap();
        assert!(ignored.ignore_endpoints && ignored.endpoint_url.is_none());
    }

    #[test]
    fn ignore_configured_endpoint_urls_from_the_environment_or_the_profile() {
        let home = tempfile::tempdir().unwrap();
        let home = home.path();
        write(
            home,
            "config",
            "[profile ignoring]\nendpoint_url = http://store:9000\nservices = local\nignore_configured_endpoint_urls = TRUE\n\n[profile using]\nendpoint_url = http://store:9000\nignore_configured_endpoint_urls = false\n\n[profile odd]\nignore_configured_endpoint_urls = yes\n\n[services local]\ns3 =\n  endpoint_url = http://s3-local:9000\n",
        );
        let ignoring = resolve_with(home, &[("AWS_PROFILE", "ignoring")]).unwrap();
        assert!(ignoring.ignore_endpoints);
        assert_eq!(ignoring.endpoint_url, None);
        let using = resolve_with(home, &[("AWS_PROFILE", "using")]).unwrap();
        assert!(!using.ignore_endpoints);
        assert_eq!(using.endpoint_url.as_deref(), Some("http://store:9000"));
        // The environment variable wins over the profile, both ways.
        let env_false = resolve_with(
            home,
            &[
                ("AWS_PROFILE", "ignoring"),
                ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "false"),
            ],
        )
        .unwrap();
        assert!(!env_false.ignore_endpoints);
        assert_eq!(
            env_false.endpoint_url.as_deref(),
            Some("http://s3-local:9000")
        );
        let env_true = resolve_with(
            home,
            &[
                ("AWS_PROFILE", "using"),
                ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"),
            ],
        )
        .unwrap();
        assert!(env_true.ignore_endpoints && env_true.endpoint_url.is_none());
        // Without any profile: the environment's word still counts.
        let empty = tempfile::tempdir().unwrap();
        let bare = resolve_with(
            empty.path(),
            &[("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "True")],
        )
        .unwrap();
        assert!(bare.ignore_endpoints);
        // Anything else than true/false: one line, no guessing.
        let err = resolve_with(home, &[("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "1")])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS is neither true nor false"
        );
        let err = resolve_with(home, &[("AWS_PROFILE", "odd")])
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("sets ignore_configured_endpoint_urls to neither true nor false"),
            "{err}"
        );
    }
}
