//! The kernel's command line, read from the boot ramdisk.
//!
//! The host runner writes the ramdisk; its format (see `docs/protocol.md`) is:
//!
//! ```text
//! ZSOS-ARGS 1\n        magic and format version
//! [--memdesc\n]        kernel options, before the mode
//! <arg>\n              one argument per line (the mode first), none empty
//! \n                   an empty line ends the arguments
//! <payload bytes>      anything after that, e.g. a trace file for `replay`
//! ```
//!
//! Parsing borrows from the ramdisk, so it needs no heap.

/// The first line of every ramdisk the runner writes.
pub const MAGIC_LINE: &str = "ZSOS-ARGS 1";

/// The most arguments the kernel accepts.
pub const MAX_ARGS: usize = 32;

/// The parsed command line.
#[derive(Debug, Clone, Copy)]
pub struct BootArgs<'a> {
    args: [&'a str; MAX_ARGS],
    len: usize,
    /// Bytes after the argument block (empty when there are none).
    pub payload: &'a [u8],
    /// `--memdesc`: build the 8-byte-a-frame memmap (`mm::memmap::Layout::Memdesc`).
    pub memdesc: bool,
}

/// Why a ramdisk could not be read as a command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgsError {
    /// The first line is not [`MAGIC_LINE`].
    BadMagic,
    /// The argument block is not UTF-8.
    NotUtf8,
    /// The argument block has no terminating empty line.
    Unterminated,
    /// More than [`MAX_ARGS`] arguments.
    TooMany,
    /// An option before the mode that the kernel does not know.
    UnknownOption,
}

impl core::fmt::Display for ArgsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ArgsError::BadMagic => "ramdisk does not start with the line 'ZSOS-ARGS 1'",
            ArgsError::NotUtf8 => "arguments are not valid UTF-8",
            ArgsError::Unterminated => "argument block is not ended by an empty line",
            ArgsError::TooMany => "too many arguments (at most 32)",
            ArgsError::UnknownOption => {
                "unknown kernel option before the mode (the kernel knows --memdesc)"
            }
        })
    }
}

impl<'a> BootArgs<'a> {
    /// No arguments at all: what the kernel uses when booted without a ramdisk.
    pub const fn empty() -> Self {
        BootArgs {
            args: [""; MAX_ARGS],
            len: 0,
            payload: &[],
            memdesc: false,
        }
    }

    /// Parses a ramdisk image.
    pub fn parse(ramdisk: &'a [u8]) -> Result<Self, ArgsError> {
        let mut out = Self::empty();
        let mut rest = ramdisk;
        let mut first = true;
        loop {
            let nl = rest.iter().position(|&b| b == b'\n').ok_or(if first {
                ArgsError::BadMagic
            } else {
                ArgsError::Unterminated
            })?;
            let line = core::str::from_utf8(&rest[..nl]).map_err(|_| ArgsError::NotUtf8)?;
            rest = &rest[nl + 1..];
            if first {
                if line != MAGIC_LINE {
                    return Err(ArgsError::BadMagic);
                }
                first = false;
            } else if line.is_empty() {
                out.payload = rest;
                return Ok(out);
            } else if out.len == 0 && line.starts_with("--") {
                match line {
                    "--memdesc" => out.memdesc = true,
                    _ => return Err(ArgsError::UnknownOption),
                }
            } else {
                if out.len == MAX_ARGS {
                    return Err(ArgsError::TooMany);
                }
                out.args[out.len] = line;
                out.len += 1;
            }
        }
    }

    /// All arguments, the mode first.
    pub fn as_slice(&self) -> &[&'a str] {
        &self.args[..self.len]
    }
}

/// In-kernel tests of the parser (pure logic, but it is the kernel's own copy that runs).
#[cfg(feature = "ktest")]
mod ktests {
    use super::*;

    fn parses_mode_args_and_payload() {
        let a = BootArgs::parse(b"ZSOS-ARGS 1\ntest\nfoo\n\nPAYLOAD\n").unwrap();
        assert_eq!(a.as_slice(), &["test", "foo"]);
        assert_eq!(a.payload, b"PAYLOAD\n");
        assert!(!a.memdesc);
    }

    fn kernel_options_come_before_the_mode() {
        let a = BootArgs::parse(b"ZSOS-ARGS 1\n--memdesc\ntest\n--memdesc\n\n").unwrap();
        assert!(a.memdesc);
        assert_eq!(
            a.as_slice(),
            &["test", "--memdesc"],
            "after the mode it is the mode's"
        );
        assert_eq!(
            BootArgs::parse(b"ZSOS-ARGS 1\n--wide\ntest\n\n").unwrap_err(),
            ArgsError::UnknownOption
        );
    }

    fn rejects_bad_input() {
        assert_eq!(BootArgs::parse(b"").unwrap_err(), ArgsError::BadMagic);
        assert_eq!(
            BootArgs::parse(b"hello\n\n").unwrap_err(),
            ArgsError::BadMagic
        );
        assert_eq!(
            BootArgs::parse(b"ZSOS-ARGS 1\nrun\n").unwrap_err(),
            ArgsError::Unterminated
        );
        assert_eq!(
            BootArgs::parse(b"ZSOS-ARGS 1\n\xff\n\n").unwrap_err(),
            ArgsError::NotUtf8
        );
        let mut img = [0u8; 128];
        let head = MAGIC_LINE.as_bytes();
        img[..head.len()].copy_from_slice(head);
        img[head.len()] = b'\n';
        let mut n = head.len() + 1;
        for _ in 0..=MAX_ARGS {
            img[n] = b'x';
            img[n + 1] = b'\n';
            n += 2;
        }
        img[n] = b'\n';
        assert_eq!(BootArgs::parse(&img[..=n]).unwrap_err(), ArgsError::TooMany);
    }

    crate::ktests! {
        parses_mode_args_and_payload,
        kernel_options_come_before_the_mode,
        rejects_bad_input,
    }
}
