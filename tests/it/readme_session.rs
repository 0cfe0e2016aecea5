//! README.md's "A first session", run from the README's own text, the way
//! tests/nginx.rs runs the documented nginx config: the daemon is started as
//! the section says (`cargo run --release -- serve`, here the test's build of
//! the same binary) in a fresh directory, and the section's shell blocks run
//! in one bash, in order, as a user pasting them would. Each command's output
//! is checked against the `# …` line the README prints under it (`…` stands
//! for anything) or its `# exit N: WORD` comment; every other command must
//! exit 0 and print no error.
//!
//! Substituted, and only these: the HTTP port (`localhost:7070` and the CLI's
//! default URL, so that parallel tests and a daemon already on 7070 do not
//! collide: the daemon gets `--http 127.0.0.1:<free port>` and the shell
//! `TOLLGATE_URL`), and `$PWD/target/release` (the directory of the
//! tollgate-admin this `cargo test --workspace` built, since the session runs
//! in a fresh directory, not the checkout).
//!
//! Needs bash, curl and jq (the README lists jq; CI installs both). In CI a
//! missing one fails the test; elsewhere it is skipped with a message.

use crate::common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");
const README: &str = include_str!("../../README.md");

/// The text of `## A first session`, up to the next `## ` heading.
fn first_session() -> &'static str {
    let start = README.find("\n## A first session\n").expect("README has \"## A first session\"");
    let rest = &README[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    &rest[..end]
}

/// The ```sh blocks of `text`, in order.
fn sh_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("```sh\n") {
        let body = &rest[i + 6..];
        let end = body.find("```").expect("an unterminated ```sh block");
        blocks.push(body[..end].to_owned());
        rest = &body[end + 3..];
    }
    blocks
}

/// A command of the session and what the README says it does.
#[derive(Debug)]
struct Step {
    command: String,
    /// The `# {…}` line under it: the output, `…` standing for anything.
    output: Option<String>,
    /// `# exit N` (and the word after `:`) on its line.
    exit: Option<(i32, Option<String>)>,
}

/// Splits blocks into commands: lines joined at a trailing `\`, a `# …` line
/// under a command is that command's expected output, `# exit N: WORD` at
/// the end of its line its expected status.
fn steps(blocks: &[String]) -> Vec<Step> {
    let mut out: Vec<Step> = Vec::new();
    for block in blocks {
        let mut pending = String::new();
        for line in block.lines() {
            let trimmed = line.trim();
            if pending.is_empty() && trimmed.starts_with('#') {
                let expected = trimmed.trim_start_matches('#').trim();
                // `# {...}  -- a remark`: the remark is not output.
                let expected = expected.split("  --").next().unwrap_or("").trim();
                let last = out.last_mut().expect("a comment line before any command");
                assert!(last.output.is_none(), "two output lines under {:?}", last.command);
                last.output = Some(expected.to_owned());
                continue;
            }
            if trimmed.is_empty() {
                continue;
            }
            if line.ends_with('\\') {
                // Kept as written: bash joins the lines.
                pending.push_str(line);
                pending.push('\n');
                continue;
            }
            pending.push_str(line);
            let command = std::mem::take(&mut pending);
            // An end-of-line comment: two spaces or more, then `# `.
            let exit = command.rfind("  # ").and_then(|i| {
                let c = command[i + 4..].trim();
                let status = c.strip_prefix("exit ")?;
                let digits: String = status.chars().take_while(char::is_ascii_digit).collect();
                // The first word after `:` must be printed; the rest is a remark.
                let word = status.split_once(':').and_then(|(_, w)| w.split_whitespace().next()).map(str::to_owned);
                Some((digits.parse().ok()?, word))
            });
            out.push(Step { command, output: None, exit });
        }
        assert!(pending.is_empty(), "a block ends in a continued line");
    }
    out
}

/// `pattern` with `…` matching anything, the rest literally.
fn matches(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('…').collect();
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else { return false };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(at) = rest.find(part) else { return false };
            rest = &rest[at + part.len()..];
        }
    }
    rest.is_empty()
}

fn tool(name: &str) -> Option<PathBuf> {
    common::require_tool(name, &[&format!("/usr/bin/{name}")], &format!("apt-get install -y {name}"))
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_readme_first_session_runs_as_written() {
    let (Some(bash), Some(_), Some(_)) = (tool("bash"), tool("curl"), tool("jq")) else { return };
    let section = first_session();
    let admin = common::admin_bin();

    // The daemon, as the section starts it.
    let serve = "cargo run --release -- serve";
    assert!(section.contains(&format!("(`{serve}`)")), "the section no longer says {serve:?}");
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let log = std::fs::File::create(dir.path().join("daemon.log")).unwrap();
    let child = Command::new(BIN)
        .args(serve.split_once("-- ").unwrap().1.split(' '))
        .args(["--http", &format!("127.0.0.1:{port}")])
        .current_dir(dir.path())
        .env_remove("TOLLGATE_ADMIN_TOKEN")
        .env_remove("TOLLGATE_CONFIG")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let _daemon = Daemon(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while common::try_http(format!("127.0.0.1:{port}").parse().unwrap(), "GET", "/readyz", &[], None)
        .is_none_or(|r| r.status != 200)
    {
        assert!(Instant::now() < deadline, "the daemon did not start");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The session's commands, with a marker and the status after each.
    let blocks = sh_blocks(section);
    assert!(blocks.len() >= 3, "the section's ```sh blocks: {blocks:?}");
    let steps = steps(&blocks);
    let bin_dir = admin.parent().unwrap().display().to_string();
    let mut script = String::from("exec 2>&1\n");
    for (i, s) in steps.iter().enumerate() {
        let command = s.command.replace("localhost:7070", &format!("localhost:{port}"));
        let command = command.replace("$PWD/target/release", &bin_dir);
        script.push_str(&format!("echo '@@step {i}'\n{command}\necho \"@@exit $?\"\n"));
    }
    let out = Command::new(bash)
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env_remove("TOLLGATE_ADMIN_TOKEN")
        .env_remove("TOLLGATE_TOKEN")
        .env("TOLLGATE_URL", &url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();

    // Each step's output and status against what the README says.
    let mut checked = 0;
    for (i, step) in steps.iter().enumerate() {
        let start = text.find(&format!("@@step {i}\n")).unwrap_or_else(|| panic!("step {i} did not run:\n{text}"));
        let body = &text[start..];
        let body = &body[body.find('\n').unwrap() + 1..];
        let end = body.find("@@exit ").unwrap_or_else(|| panic!("step {i} did not finish:\n{text}"));
        let output = body[..end].trim_end();
        let status: i32 = body[end + 7..].lines().next().unwrap().trim().parse().unwrap();
        let what = format!("README step {:?}\nprinted:\n{output}\n(status {status})", step.command);
        match &step.exit {
            Some((code, word)) => {
                assert_eq!(status, *code, "{what}");
                if let Some(w) = word {
                    assert!(output.contains(w.as_str()), "{what}\nexpected {w:?}");
                }
            }
            None => assert_eq!(status, 0, "{what}"),
        }
        match &step.output {
            Some(pattern) => assert!(matches(pattern, output), "{what}\nexpected (… is anything): {pattern}"),
            None if step.exit.is_none() => {
                assert!(!output.contains("\"error\"") && !output.contains("error:"), "{what}");
            }
            None => {}
        }
        checked += 1;
    }
    // The section's own claims, beyond the lines it prints.
    assert!(checked >= 20, "{checked} steps");
    assert!(dir.path().join("key.json").is_file());
    // "The first start wrote a bootstrap admin token into the data directory (mode 0600)".
    let token = dir.path().join("tollgate-data/admin-token");
    assert!(!std::fs::read_to_string(&token).unwrap().trim().is_empty());
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&token).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn the_step_parser_reads_expectations() {
    let blocks = vec![
        "A=$(echo x \\\n  y)\ncurl -s x\n# {\"valid\":true,…}  -- a remark\nt verify k   # exit 1: DENIED (a remark)\n"
            .to_owned(),
    ];
    let s = steps(&blocks);
    assert_eq!(s.len(), 3, "{s:?}");
    assert_eq!(s[0].command, "A=$(echo x \\\n  y)");
    assert_eq!(s[1].output.as_deref(), Some("{\"valid\":true,…}"));
    assert_eq!(s[2].exit, Some((1, Some("DENIED".to_owned()))));
    assert!(matches("{\"valid\":true,…}", "{\"valid\":true,\"kind\":\"x\"}"));
    assert!(!matches("{\"valid\":true,…}", "{\"valid\":false}"));
    assert!(matches("a…b…c", "aXXbYYc"));
    assert!(!matches("a…b", "aXXbc"));
}
