//! Asking the person at the terminal: a password (not echoed) and a
//! confirmation (typing a name). Both read from and write to the controlling
//! terminal (`/dev/tty`), never stdin/stdout, so a prompt never ends up in a
//! pipe or a redirected file. When stdin is not a terminal there is no one to
//! ask: the caller refuses instead (see [`interactive`]).

use std::io::{BufRead, BufReader, IsTerminal, Read, Write};

/// Whether someone can be asked: stdin is a terminal.
pub fn interactive() -> bool {
    std::io::stdin().is_terminal()
}

fn open_tty() -> Result<std::fs::File, String> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|e| format!("cannot open the terminal: {e}"))
}

/// Reads a password from the terminal after `prompt`. Echo is turned off
/// before the prompt is shown (so nothing typed after it is echoed) and
/// restored after, also on Ctrl-C, which cancels; Backspace and Ctrl-U edit.
#[cfg(unix)]
pub fn password(prompt: &str) -> Result<String, String> {
    use rustix::termios::{LocalModes, OptionalActions, SpecialCodeIndex, tcgetattr, tcsetattr};

    /// Puts the terminal back as it was, however the read ends.
    struct Restore<'a>(&'a std::fs::File, rustix::termios::Termios);
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            let _ = tcsetattr(self.0, OptionalActions::Now, &self.1);
        }
    }

    let fail = |e: std::io::Error| format!("cannot read the password from the terminal: {e}");
    let mut tty = open_tty()?;
    let saved = tcgetattr(&tty).map_err(|e| fail(e.into()))?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO | LocalModes::ICANON | LocalModes::ISIG);
    quiet.special_codes[SpecialCodeIndex::VMIN] = 1;
    quiet.special_codes[SpecialCodeIndex::VTIME] = 0;
    tcsetattr(&tty, OptionalActions::Now, &quiet).map_err(|e| fail(e.into()))?;
    let restore = Restore(&tty, saved);
    (&tty).write_all(prompt.as_bytes()).and_then(|()| (&tty).flush()).map_err(fail)?;
    let mut typed: Vec<u8> = Vec::new();
    let mut byte = [0u8; 1];
    let outcome = loop {
        match (&tty).read(&mut byte) {
            Ok(0) => break Err("no password (end of input)".to_owned()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(fail(e)),
        }
        match byte[0] {
            b'\r' | b'\n' => break Ok(()),
            // Ctrl-C
            0x03 => break Err("interrupted; nothing was sent".to_owned()),
            // Ctrl-D on an empty line
            0x04 if typed.is_empty() => break Err("no password (end of input)".to_owned()),
            // Backspace, Delete: one character (all of its UTF-8 bytes).
            0x08 | 0x7f => while typed.pop().is_some_and(|b| b & 0xC0 == 0x80) {},
            // Ctrl-U: start again.
            0x15 => typed.clear(),
            b if b < 0x20 => {}
            b => typed.push(b),
        }
    };
    drop(restore);
    let _ = tty.write_all(b"\n");
    outcome?;
    String::from_utf8(typed).map_err(|_| "the password typed is not UTF-8".to_owned())
}

/// Without a Unix terminal there is no prompt: `--password-stdin` works.
#[cfg(not(unix))]
pub fn password(_prompt: &str) -> Result<String, String> {
    Err("cannot ask for a password here; use --password-stdin".to_owned())
}

/// Shows `prompt` on the terminal and reads one line (echoed), without its
/// line ending.
pub fn line(prompt: &str) -> Result<String, String> {
    let fail = |e: std::io::Error| format!("cannot ask on the terminal: {e}");
    let tty = open_tty()?;
    (&tty).write_all(prompt.as_bytes()).and_then(|()| (&tty).flush()).map_err(fail)?;
    let mut answer = String::new();
    if BufReader::new(tty).read_line(&mut answer).map_err(fail)? == 0 {
        return Err("no answer (end of input)".to_owned());
    }
    Ok(answer.trim_end_matches(['\r', '\n']).to_owned())
}
