//! Standard output that a closed pipe cannot crash: `println!` panics when the reader went away
//! (`keybound --json bench ... | head -1`). Here the command ends instead, quietly and with
//! exit code 1, as a process killed by `SIGPIPE` would: its output was not delivered.

use std::io::Write as _;

/// Writes `text` to standard output and flushes it.
pub(crate) fn write(text: std::fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = stdout.write_fmt(text).and_then(|()| stdout.flush()) {
        if error.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("keybound: cannot write to standard output: {error}");
        }
        std::process::exit(1);
    }
}

/// `print!` through [`write()`].
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::write(format_args!($($arg)*)) };
}

/// `println!` through [`write()`].
macro_rules! outln {
    () => { $crate::output::write(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::output::write(format_args!("{}\n", format_args!($($arg)*))) };
}

pub(crate) use {out, outln};
