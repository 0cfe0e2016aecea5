//! `tollgate-admin`: operate a tollgate daemon through its admin HTTP API.
//! The exit codes are listed in `tollgate-admin --help` (error.rs).

use std::io::Write;

/// Writes `s` to stdout; a closed pipe (`| head`) is not an error.
fn out(s: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(s.as_bytes()).and_then(|()| o.flush());
}

fn main() {
    let code = match tollgate_admin::run(std::env::args_os()) {
        Ok(o) => {
            let _ = std::io::stderr().write_all(o.stderr.as_bytes());
            out(&o.stdout);
            0
        }
        Err(e) => {
            out(&e.stdout);
            let _ = std::io::stderr().write_all(e.stderr().as_bytes());
            e.code
        }
    };
    std::process::exit(code);
}
