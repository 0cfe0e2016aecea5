//! `tollgate-admin`: operate a tollgate daemon through its admin HTTP API.
//! Exit codes: 0 ok, 1 refused by the daemon (or a denied `verify`), 2 usage,
//! 3 cannot reach the daemon.

use std::io::Write;

fn main() {
    let code = match tollgate_admin::run(std::env::args_os()) {
        Ok(out) => {
            eprint!("{}", out.stderr);
            print!("{}", out.stdout);
            0
        }
        Err(e) => {
            print!("{}", e.stdout);
            eprintln!("tollgate-admin: {}", e.message);
            e.code
        }
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}
