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
mod tests;
