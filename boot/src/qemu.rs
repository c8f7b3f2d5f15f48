//! Running an image under QEMU: the command line, the timeout, the serial stream and the
//! verdict.
//!
//! Only the kernel's own success code counts as success: the kernel writes 0x10 (success)
//! or 0x11 (failure) to the `isa-debug-exit` device, which makes QEMU exit with 33 or 35.
//! Every other ending (QEMU's own errors exit 1, a triple fault resets and, with
//! `-no-reboot`, exits 0, a hang hits the timeout) is reported as such, never as success.

use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::image::Firmware;

/// QEMU exit status when the kernel reports success (`(0x10 << 1) | 1`).
pub const EXIT_KERNEL_SUCCESS: i32 = 33;
/// QEMU exit status when the kernel reports failure (`(0x11 << 1) | 1`).
pub const EXIT_KERNEL_FAILURE: i32 = 35;

/// The emulated machine.
#[derive(Debug, Clone)]
pub struct Machine {
    /// BIOS or UEFI.
    pub firmware: Firmware,
    /// Number of CPUs (`-smp`).
    pub smp: u32,
    /// Guest memory, in QEMU's syntax (`512M`, `2G`).
    pub memory: String,
    /// QEMU is killed after this long.
    pub timeout: Duration,
    /// Start QEMU halted with a gdb server on localhost:1234.
    pub gdb: bool,
    /// Boot the kernel with the 8-byte-a-frame memmap (the kernel option `--memdesc`).
    pub memdesc: bool,
    /// The kernel ELF to boot, if not the one this crate was built with
    /// ([`crate::kernel_elf`]): trusted grading boots a kernel it built from another tree.
    pub kernel: Option<PathBuf>,
}

impl Default for Machine {
    fn default() -> Self {
        Machine {
            firmware: Firmware::Uefi,
            smp: 2,
            memory: "512M".into(),
            timeout: Duration::from_secs(120),
            gdb: false,
            memdesc: false,
            kernel: None,
        }
    }
}

impl Machine {
    /// The kernel's command line on this machine: its kernel options (`--memdesc`), then
    /// `args` (the mode and what follows it).
    pub fn kernel_args(&self, args: &[String]) -> Vec<String> {
        let options = self.memdesc.then(|| "--memdesc".to_string());
        options.into_iter().chain(args.iter().cloned()).collect()
    }

    /// The kernel ELF this machine boots.
    pub fn kernel_elf(&self) -> &Path {
        self.kernel
            .as_deref()
            .unwrap_or_else(|| crate::kernel_elf())
    }

    /// The guest memory in MiB (`memory` is `N`, `NM` or `NG`; anything else reads as 0).
    pub fn memory_mib(&self) -> u64 {
        let m = self.memory.trim();
        let (digits, scale) = match m.as_bytes().last() {
            Some(b'G' | b'g') => (&m[..m.len() - 1], 1024),
            Some(b'M' | b'm') => (&m[..m.len() - 1], 1),
            _ => (m, 1),
        };
        digits.parse::<u64>().map_or(0, |n| n * scale)
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The kernel reported success.
    KernelSuccess,
    /// The kernel reported failure.
    KernelFailure,
    /// QEMU was killed at the timeout.
    TimedOut(Duration),
    /// QEMU ended without the kernel's verdict (exit status, if any): a QEMU error, a
    /// triple fault, or a kill from outside.
    NoVerdict(Option<i32>),
    /// The bootloader (or firmware) panicked before the kernel started; QEMU was stopped at
    /// once. The panic's lines.
    BootPanic(String),
}

impl Ending {
    /// True only for the kernel's explicit success.
    pub fn is_success(&self) -> bool {
        *self == Ending::KernelSuccess
    }
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ending::KernelSuccess => write!(f, "the kernel reported success"),
            Ending::KernelFailure => write!(f, "the kernel reported FAILURE"),
            Ending::TimedOut(t) => write!(f, "TIMED OUT after {} s (QEMU killed)", t.as_secs()),
            Ending::NoVerdict(Some(1)) => {
                write!(
                    f,
                    "QEMU exited with status 1 without a verdict from the kernel (a QEMU error?)"
                )
            }
            Ending::NoVerdict(Some(code)) => write!(
                f,
                "QEMU exited with status {code} without a verdict from the kernel (triple fault or reset?)"
            ),
            Ending::NoVerdict(None) => write!(f, "QEMU was killed by a signal"),
            Ending::BootPanic(message) => write!(
                f,
                "the bootloader panicked before the kernel started: {message}"
            ),
        }
    }
}

/// The result of one boot.
#[derive(Debug, Clone)]
pub struct Run {
    /// How it ended.
    pub ending: Ending,
    /// Every line the serial console printed, ANSI escapes and `\r` removed.
    pub lines: Vec<String>,
    /// Wall-clock time QEMU ran.
    pub wall: Duration,
}

fn find_first(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

/// The QEMU binary, or an error telling the user how to install it.
pub fn qemu_binary() -> io::Result<PathBuf> {
    if let Some(p) = std::env::var_os("ZSOS_QEMU") {
        return Ok(PathBuf::from(p));
    }
    find_first(&["/usr/bin/qemu-system-x86_64", "/usr/local/bin/qemu-system-x86_64"]).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "qemu-system-x86_64 not found: run scripts/setup (or apt-get install qemu-system-x86 ovmf)",
        )
    })
}

/// OVMF code and variable-store images from Debian's `ovmf` package.
fn ovmf_files() -> io::Result<(PathBuf, PathBuf)> {
    let code = find_first(&[
        "/usr/share/OVMF/OVMF_CODE_4M.fd",
        "/usr/share/OVMF/OVMF_CODE.fd",
    ]);
    let vars = find_first(&[
        "/usr/share/OVMF/OVMF_VARS_4M.fd",
        "/usr/share/OVMF/OVMF_VARS.fd",
    ]);
    match (code, vars) {
        (Some(c), Some(v)) => Ok((c, v)),
        _ => Err(io::Error::new(
            io::ErrorKind::NotFound,
            "UEFI firmware (OVMF) not found in /usr/share/OVMF: run scripts/setup \
             (or apt-get install ovmf), or boot with --bios",
        )),
    }
}

/// The full QEMU command for `image` on `machine`.
pub fn command(machine: &Machine, image: &Path) -> io::Result<Command> {
    let ovmf = match machine.firmware {
        Firmware::Uefi => Some(ovmf_files()?),
        Firmware::Bios => None,
    };
    Ok(command_with(&qemu_binary()?, machine, image, ovmf))
}

/// The QEMU command, given where QEMU and (for UEFI) OVMF's code and variables are.
fn command_with(
    qemu: &Path,
    machine: &Machine,
    image: &Path,
    ovmf: Option<(PathBuf, PathBuf)>,
) -> Command {
    let mut cmd = Command::new(qemu);
    // TCG always: KVM hangs on these machines. Multi-threaded TCG so that each guest CPU
    // gets its own host thread.
    cmd.args([
        "-machine",
        "q35",
        "-accel",
        "tcg,thread=multi",
        "-cpu",
        "max",
    ]);
    cmd.args(["-m", &machine.memory, "-smp", &machine.smp.to_string()]);
    // -nodefaults: no NIC (no PXE attempts, no option ROMs needed), no CD-ROM, no VGA.
    cmd.args([
        "-nodefaults",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-no-reboot",
    ]);
    cmd.args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
    cmd.arg("-drive")
        .arg(format!("format=raw,file={}", image.display()));
    if machine.firmware == Firmware::Bios {
        // The BIOS stages of the bootloader set a VESA mode and stall without a VGA card.
        cmd.args(["-vga", "std"]);
    }
    if let Some((code, vars)) = ovmf {
        cmd.arg("-drive").arg(format!(
            "if=pflash,format=raw,readonly=on,file={}",
            code.display()
        ));
        // snapshot=on: UEFI may write its variables, but never to the package's file.
        cmd.arg("-drive").arg(format!(
            "if=pflash,format=raw,snapshot=on,file={}",
            vars.display()
        ));
    }
    if machine.gdb {
        cmd.args(["-s", "-S"]);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    cmd
}

/// Removes ANSI escape sequences (firmware draws with them) and carriage returns.
pub fn clean_line(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                // CSI: ESC [ params final-byte(0x40..=0x7e); other escapes: ESC + one char.
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if ('\u{40}'..='\u{7e}').contains(&c) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// Boots `image` on `machine`, calling `on_line` for every console line as it arrives, and
/// waits for the end (or the timeout).
pub fn run(machine: &Machine, image: &Path, on_line: &mut dyn FnMut(&str)) -> io::Result<Run> {
    let mut child = command(machine, image)?
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot start QEMU: {e}")))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut buf = Vec::new();
        // Lines may not be UTF-8 (firmware noise): read bytes, convert lossily.
        while let Ok(n) = reader.read_until(b'\n', &mut buf) {
            if n == 0 {
                break;
            }
            let text = String::from_utf8_lossy(&buf);
            let line = text.strip_suffix('\n').unwrap_or(&text);
            if tx.send(clean_line(line)).is_err() {
                break;
            }
            buf.clear();
        }
    });

    let start = Instant::now();
    let deadline = start + machine.timeout;
    let mut lines = Vec::new();
    let mut boot = BootWatch::default();
    let ending = loop {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(line) => {
                boot.line(&line);
                on_line(&line);
                lines.push(line);
                continue;
            }
            Err(mpsc::RecvTimeoutError::Timeout) | Err(mpsc::RecvTimeoutError::Disconnected) => {}
        }
        if let Some(status) = child.try_wait()? {
            break classify(status.code());
        }
        if let Some(message) = boot.panicked(Instant::now()) {
            kill(&mut child);
            break Ending::BootPanic(message);
        }
        if Instant::now() >= deadline {
            kill(&mut child);
            break Ending::TimedOut(machine.timeout);
        }
    };
    let _ = reader.join();
    for line in rx.try_iter() {
        on_line(&line);
        lines.push(line);
    }
    Ok(Run {
        ending,
        lines,
        wall: start.elapsed(),
    })
}

/// Watches the console before the kernel's banner for a panic of the bootloader (it prints
/// `panicked at FILE:LINE:COL:` and then the message, and then hangs): nothing will follow,
/// so the run can stop at once instead of waiting for the timeout.
#[derive(Default)]
struct BootWatch {
    kernel_started: bool,
    /// The panic's lines so far, and when the first came.
    panic: Option<(Vec<String>, Instant)>,
}

/// How long to collect a boot panic's message after its first line.
const BOOT_PANIC_GRACE: Duration = Duration::from_millis(300);

impl BootWatch {
    fn line(&mut self, line: &str) {
        if line == crate::KERNEL_BANNER {
            self.kernel_started = true;
        }
        if self.kernel_started {
            return;
        }
        match &mut self.panic {
            Some((lines, _)) => lines.push(line.to_string()),
            None if line.starts_with("panicked at ") => {
                self.panic = Some((vec![line.to_string()], Instant::now()));
            }
            None => {}
        }
    }

    /// The panic's message, once its grace period has passed.
    fn panicked(&self, now: Instant) -> Option<String> {
        let (lines, since) = self.panic.as_ref()?;
        (now >= *since + BOOT_PANIC_GRACE).then(|| lines.join(" "))
    }
}

fn classify(code: Option<i32>) -> Ending {
    match code {
        Some(EXIT_KERNEL_SUCCESS) => Ending::KernelSuccess,
        Some(EXIT_KERNEL_FAILURE) => Ending::KernelFailure,
        other => Ending::NoVerdict(other),
    }
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bootloader_panic_before_the_kernel_is_caught_and_one_after_is_not() {
        let mut w = BootWatch::default();
        let t0 = Instant::now();
        w.line("BdsDxe: starting Boot0001");
        assert_eq!(w.panicked(t0 + Duration::from_secs(5)), None);
        w.line("panicked at /x/bootloader-x86_64-uefi-0.11.17/src/main.rs:244:6:");
        w.line("Failed to allocate memory for the file: Error { status: OUT_OF_RESOURCES }");
        assert_eq!(
            w.panicked(Instant::now()),
            None,
            "still collecting the message"
        );
        let message = w
            .panicked(Instant::now() + BOOT_PANIC_GRACE)
            .expect("a boot panic");
        assert!(message.contains("main.rs:244:6") && message.contains("OUT_OF_RESOURCES"));

        let mut after = BootWatch::default();
        after.line(crate::KERNEL_BANNER);
        after.line("panicked at src/main.rs:1:1:");
        assert_eq!(after.panicked(Instant::now() + BOOT_PANIC_GRACE), None);
    }

    #[test]
    fn only_the_kernels_success_code_is_success() {
        assert_eq!(classify(Some(33)), Ending::KernelSuccess);
        assert_eq!(classify(Some(35)), Ending::KernelFailure);
        for code in [Some(0), Some(1), Some(2), Some(34), None] {
            assert!(
                !classify(code).is_success(),
                "{code:?} must not count as success"
            );
        }
    }

    #[test]
    fn clean_line_strips_escapes_and_carriage_returns() {
        assert_eq!(clean_line("\u{1b}[2J\u{1b}[01;01Hhello\r"), "hello");
        assert_eq!(clean_line("a\u{1b}cb"), "ab");
        assert_eq!(clean_line("plain"), "plain");
    }

    #[test]
    fn qemu_command_never_enables_kvm_and_has_the_exit_device() {
        let m = Machine::default();
        let ovmf = Some((PathBuf::from("/code.fd"), PathBuf::from("/vars.fd")));
        let cmd = command_with(Path::new("/q"), &m, Path::new("/tmp/x.img"), ovmf);
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let joined = args.join(" ");
        assert!(!joined.contains("kvm"), "{joined}");
        assert!(joined.contains("isa-debug-exit,iobase=0xf4"), "{joined}");
        assert!(joined.contains("tcg"), "{joined}");
        assert!(
            joined.contains("if=pflash,format=raw,readonly=on,file=/code.fd"),
            "{joined}"
        );
        assert!(joined.contains("snapshot=on,file=/vars.fd"), "{joined}");
    }
}
