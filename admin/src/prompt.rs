//! Asking the person at the terminal: a password (not echoed) and a
//! confirmation (typing a name). Both read from and write to the controlling
//! terminal (`/dev/tty`), never stdin/stdout, so a prompt never ends up in a
//! pipe or a redirected file. When stdin is not a terminal there is no one to
//! ask: the caller refuses instead (see [`interactive`]).

use std::io::{BufRead, BufReader, IsTerminal, Write};

/// Whether someone can be asked: stdin is a terminal.
pub fn interactive() -> bool {
    std::io::stdin().is_terminal()
}

/// Reads a password from the terminal with echo off, after `prompt`.
pub fn password(prompt: &str) -> Result<String, String> {
    rpassword::prompt_password(prompt).map_err(|e| format!("cannot read the password from the terminal: {e}"))
}

/// Shows `prompt` on the terminal and reads one line (echoed), without its
/// line ending.
pub fn line(prompt: &str) -> Result<String, String> {
    let fail = |e: std::io::Error| format!("cannot ask on the terminal: {e}");
    let tty = std::fs::OpenOptions::new().read(true).write(true).open("/dev/tty").map_err(fail)?;
    let mut out = tty.try_clone().map_err(fail)?;
    out.write_all(prompt.as_bytes()).and_then(|()| out.flush()).map_err(fail)?;
    let mut answer = String::new();
    if BufReader::new(tty).read_line(&mut answer).map_err(fail)? == 0 {
        return Err("no answer (end of input)".to_owned());
    }
    Ok(answer.trim_end_matches(['\r', '\n']).to_owned())
}
