//! Tests of the AWS profile settings: precedence, endpoints, and the
//! one-line errors for missing, unsupported and malformed files.

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
    let endpoint = |variables: &[(&str, &str)]| resolve_with(home, variables).unwrap().endpoint_url;
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
