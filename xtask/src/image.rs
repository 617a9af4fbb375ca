//! `cargo xtask image`: an SD-card boot folder for a real Raspberry Pi.

use crate::build::{self, Arch};
use crate::{ImageArgs, Result};

/// Writes kernel8.img, config.txt, cmdline.txt and a README into the folder.
pub fn run(o: &ImageArgs) -> Result<bool> {
    let (board, pi) = match o.board {
        crate::qemu::Board::Raspi4b => ("rpi4", 4),
        crate::qemu::Board::Raspi3b => ("rpi3", 3),
        b => return Err(format!("image: --board rpi4 or rpi3, not {}", b.name())),
    };
    let out = o
        .out
        .clone()
        .unwrap_or_else(|| build::root().join("out").join(board));
    let img = build::kernel(Arch::Aarch64)?;
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let w = |name: &str, data: &[u8]| {
        std::fs::write(out.join(name), data).map_err(|e| format!("{name}: {e}"))
    };
    w(
        "kernel8.img",
        &std::fs::read(&img).map_err(|e| format!("{}: {e}", img.display()))?,
    )?;
    w(
        "config.txt",
        format!(
            "# Folium on a Raspberry Pi {pi}\n\
             arm_64bit=1\n\
             kernel=kernel8.img\n\
             # Serial console on GPIO 14 (TX) / 15 (RX), 115200 8N1, through the PL011 (UART0):\n\
             enable_uart=1\n\
             dtoverlay=disable-bt\n"
        )
        .as_bytes(),
    )?;
    w(
        "cmdline.txt",
        format!("{}\n", crate::qemu::DEFAULT_CMDLINE).as_bytes(),
    )?;
    w(
        "README.txt",
        format!(
            "Folium boot folder for a Raspberry Pi {pi}.\n\n\
             1. Take an SD card with a FAT32 boot partition holding the Raspberry Pi\n\
             \x20  firmware files (bootcode.bin for the Pi 3, start*.elf, fixup*.dat, the\n\
             \x20  overlays/ folder and the board's .dtb), e.g. from Raspberry Pi OS.\n\
             2. Copy kernel8.img, config.txt and cmdline.txt from this folder next to\n\
             \x20  them (replace config.txt and cmdline.txt).\n\
             3. Connect a 3.3 V USB serial adapter to GPIO 14 (TX), 15 (RX) and GND,\n\
             \x20  open it at 115200 8N1 and power the board.\n\n\
             The kernel command line is cmdline.txt. It starts with\n\
             `init=bench --quick` (a short run of the memory benchmark: syscall,\n\
             fork, fault and munmap tables); write `test init=utest,mmtests`\n\
             there to run the self-tests and the user suites. The firmware parks the secondary cores and passes a\n\
             device tree from which Folium reads the RAM ranges and the command\n\
             line.\n"
        )
        .as_bytes(),
    )?;
    println!("wrote {}", out.display());
    Ok(true)
}
