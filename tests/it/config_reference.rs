//! The configuration reference (docs/configuration.md) is what
//! `tollgate config-reference` prints, and `check-config` lists every problem
//! of a file in one run.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

#[test]
fn docs_configuration_md_is_the_generated_reference() {
    let out = Command::new(BIN).arg("config-reference").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let generated = String::from_utf8(out.stdout).unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        generated == committed,
        "docs/configuration.md differs from the configuration schema (src/config_schema.rs); regenerate it with\n\n    \
         cargo run -- config-reference > docs/configuration.md\n"
    );
    // The README links it.
    let readme = include_str!("../../README.md");
    assert!(readme.contains("](docs/configuration.md)"), "README.md must link docs/configuration.md");
}

#[test]
fn check_config_reports_seven_mistakes_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tollgate.toml");
    // Seven mistakes serde would report one per run: an unknown key, wrong
    // types, bad choices, an unknown table, a bad address, a missing key.
    let text = "\
socket_mod = \"0600\"
max_connections = \"many\"
[durability]
mode = \"sometimes\"
[jwt]
ttl_secs = -5
[log]
format = \"xml\"
[tiers.Gold]
requests_per_minute = 5
[auth]
trusted_proxies = [\"127.0.0.1\", \"localhost\"]
";
    std::fs::write(&cfg, text).unwrap();
    let out = Command::new(BIN).arg("check-config").arg(&cfg).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    let expect = [
        ":1:1: socket_mod: unknown field `socket_mod`, expected one of `data`, `socket`, `socket_mode`",
        ":2:19: max_connections: invalid type: string \"many\", expected a non-negative integer",
        ":4:8: durability.mode: unknown variant `sometimes`, expected `relaxed` or `strict`",
        ":6:12: jwt.ttl_secs: invalid type: integer `-5`, expected a non-negative integer",
        ":8:10: log.format: unknown variant `xml`, expected `human` or `json`",
        ":9:8: tiers.Gold: unknown field `Gold`, expected one of `Free`, `Start`, `Master`, `Pro`",
        ":12:19: auth.trusted_proxies: \"localhost\" is not an IP address or CIDR block",
    ];
    assert_eq!(lines.len(), expect.len(), "{err}");
    for (line, want) in lines.iter().zip(expect) {
        assert!(line.contains(want), "expected {want:?} in {line:?}\n{err}");
    }
    assert!(err.contains("tollgate: ") && err.contains(": 7 problem(s)"), "{err}");

    // Problems of values that parse are listed beside them: the schema
    // removes what is wrong, the rest is validated.
    std::fs::write(&cfg, "htp = 1\n[durability]\nflush_interval_ms = 0\nmode = 3\n").unwrap();
    let out = Command::new(BIN).arg("check-config").arg(&cfg).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for want in [
        ":1:1: htp: unknown field",
        ":3:21: durability.flush_interval_ms: must be between 1 and 60000",
        ":4:8: durability.mode: invalid type: integer `3`, expected `relaxed` or `strict`",
        "3 problem(s)",
    ] {
        assert!(err.contains(want), "expected {want:?} in\n{err}");
    }
}
