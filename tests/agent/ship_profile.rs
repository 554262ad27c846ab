//! `run --ship-to` configured by the AWS shared files and the endpoint
//! settings, against the real s3s-fs server (see `ship`): a named profile
//! ships, a missing one refuses to start, and
//! `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` / `ignore_configured_endpoint_urls`
//! turn the environment's and the profile's endpoints off.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::ship::{assert_all_shipped, free_port, BUCKET, KEY, PREFIX, S3, SECRET};
use crate::support::{assert_success, exclusive, require_root, scratch, wait_with_limit, AgentRun};

/// `run --ship-to` with the credentials, region and endpoint only in the
/// AWS shared files (`AWS_PROFILE`), none in the environment.
fn agent_with_profile(dir: &Path, out: &Path, profile: &str) -> Command {
    let mut command = AgentRun::new()
        .output(out)
        .args(["--format", "parquet", "--test-rotate-secs", "2"])
        .args(["--stacks", "none", "--duration", "6"])
        .args(["--ship-to", &format!("s3://{BUCKET}/{PREFIX}")])
        .env("AWS_PROFILE", profile)
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.join("credentials"))
        .env("AWS_CONFIG_FILE", dir.join("config"))
        .command();
    for name in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ENDPOINT",
    ] {
        command.env_remove(name);
    }
    command
}

#[test]
fn a_named_aws_profile_ships_and_a_missing_one_refuses_to_start() {
    require_root();
    let _guard = exclusive();
    let dir = scratch();
    let out = dir.path().join("out");
    let s3 = S3::start(&dir.path().join("s3"), free_port());
    std::fs::write(
        dir.path().join("credentials"),
        format!("[default]\naws_access_key_id = WRONG\naws_secret_access_key = WRONG\n\n[fleet]\naws_access_key_id = {KEY}\naws_secret_access_key = {SECRET}\n"),
    )
    .expect("credentials file");
    std::fs::write(
        dir.path().join("config"),
        format!(
            "[profile fleet]\nregion = us-east-1\nendpoint_url = http://127.0.0.1:{}\n",
            s3.port
        ),
    )
    .expect("config file");

    let child = agent_with_profile(dir.path(), &out, "fleet")
        .spawn()
        .expect("start taskscope");
    let run = wait_with_limit(child, Duration::from_secs(90));
    assert_success(&run);
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(log.contains("shipping: up to date"), "log:\n{log}");
    assert!(!log.contains(SECRET), "the secret is in the log:\n{log}");
    assert!(assert_all_shipped(&out, &s3) >= 2);

    let child = agent_with_profile(dir.path(), &dir.path().join("out2"), "nope")
        .spawn()
        .expect("start taskscope");
    let run = wait_with_limit(child, Duration::from_secs(60));
    assert_eq!(run.status.code(), Some(2), "{run:?}");
    let error = String::from_utf8_lossy(&run.stderr);
    let expected = format!(
        "AWS_PROFILE=nope: no such profile in {} or {}",
        dir.path().join("credentials").display(),
        dir.path().join("config").display()
    );
    assert_eq!(
        error
            .lines()
            .filter(|line| line.contains(&expected))
            .count(),
        1,
        "stderr:\n{error}"
    );
}

/// `run --check --ship-to` with `variables` (and nothing else of AWS's in
/// the environment): its `ship-to:` line.
fn check_with(dir: &Path, variables: &[(&str, String)]) -> String {
    let mut command = agent_with_profile(dir, &dir.join("out-check"), "fleet");
    command.env_remove("AWS_PROFILE").arg("--check");
    for (name, value) in variables {
        command.env(name, value);
    }
    let run = wait_with_limit(
        command.spawn().expect("run --check"),
        Duration::from_secs(90),
    );
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    stdout
        .lines()
        .find(|line| line.starts_with("ship-to: "))
        .unwrap_or_else(|| panic!("no ship-to line: {stdout}"))
        .to_string()
}

#[test]
fn ignoring_configured_endpoints_turns_the_environments_and_the_profiles_off() {
    require_root();
    let _guard = exclusive();
    let dir = scratch();
    let s3 = S3::start(&dir.path().join("s3"), free_port());
    let local = format!("http://127.0.0.1:{}", s3.port);
    std::fs::write(
        dir.path().join("credentials"),
        format!("[fleet]\naws_access_key_id = {KEY}\naws_secret_access_key = {SECRET}\n"),
    )
    .expect("credentials file");
    std::fs::write(
        dir.path().join("config"),
        format!("[profile fleet]\nregion = us-east-1\nendpoint_url = {local}\n\n[profile ignoring]\nregion = us-east-1\nendpoint_url = {local}\nignore_configured_endpoint_urls = true\n"),
    )
    .expect("config file");
    let keys = [
        ("AWS_ACCESS_KEY_ID", KEY.to_string()),
        ("AWS_SECRET_ACCESS_KEY", SECRET.to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
    ];
    let reachable = format!("ship-to: s3://{BUCKET}/{PREFIX} is reachable");
    let not = format!("ship-to: s3://{BUCKET}/{PREFIX} is NOT reachable");
    // Not reachable because the request went to AWS (named in the error),
    // not to the local store.
    let to_aws = |line: &str| {
        line.starts_with(&not) && line.contains(".amazonaws.com") && !line.contains("127.0.0.1")
    };
    // The environment's endpoint, used, then ignored (AWS's own endpoint
    // then: unreachable offline, or refusing these keys online).
    let env = [&keys[..], &[("AWS_ENDPOINT_URL", local.clone())]].concat();
    let line = check_with(dir.path(), &env);
    assert!(line.starts_with(&reachable), "{line}");
    let ignoring = [
        &env[..],
        &[("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true".to_string())],
    ]
    .concat();
    let line = check_with(dir.path(), &ignoring);
    assert!(to_aws(&line), "{line}");
    // The profile's endpoint, used, then ignored by the profile, and the
    // variable's false overriding the profile's true.
    let line = check_with(dir.path(), &[("AWS_PROFILE", "fleet".to_string())]);
    assert!(line.starts_with(&reachable), "{line}");
    let with_keys = |profile: &str, ignore: Option<&str>| {
        let mut variables = keys[..2].to_vec();
        variables.push(("AWS_PROFILE", profile.to_string()));
        if let Some(value) = ignore {
            variables.push(("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", value.to_string()));
        }
        variables
    };
    let line = check_with(dir.path(), &with_keys("ignoring", None));
    assert!(to_aws(&line), "{line}");
    let line = check_with(dir.path(), &with_keys("ignoring", Some("false")));
    assert!(line.starts_with(&reachable), "{line}");
}
