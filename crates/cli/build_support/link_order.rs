//! When the release build gives the linker `symbol-order.txt` (shared by `build.rs`, which
//! decides, and the crate's tests, which check the decision).

/// What the build script knows about the build it is part of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build<'a> {
    /// `PROFILE` is `release`.
    pub release: bool,
    /// `ISTHMUS_SYMBOL_ORDER=off`.
    pub off: bool,
    /// The target triple.
    pub target: &'a str,
    /// `CARGO_ENCODED_RUSTFLAGS`.
    pub rustflags: &'a str,
    /// A linker chosen for the build (`RUSTC_LINKER`, which Cargo sets from
    /// `CARGO_TARGET_<TRIPLE>_LINKER` or `target.<triple>.linker` in its config).
    pub linker_env: bool,
    /// What `rustc -vV` printed.
    pub rustc_version: &'a str,
    /// The toolchain ships its own LLD (`lib/rustlib/<target>/bin/gcc-ld/ld.lld` in its
    /// sysroot): rustup's builds do, and link with it; a distribution's rustc may not, and
    /// links with the system's linker.
    pub ships_lld: bool,
}

/// Whether the list is given to the linker: only LLD reads a symbol ordering file, and a
/// toolchain that ships its own LLD links x86_64 Linux binaries with it by default from
/// Rust 1.90 on, unless flags or Cargo's configuration choose another linker. Debug builds
/// are left alone (their code is laid out differently, and they are not what is measured).
pub fn give_order(b: &Build<'_>) -> bool {
    !b.off && lld_links_release(b)
}

/// Whether the release binary's relative relocations are packed (`-z pack-relative-relocs`:
/// a `DT_RELR` table instead of 24 bytes per pointer in `.rela.dyn`). The dynamic loader
/// reads every relocation when the binary starts, so the 1.2 MB table stayed resident in
/// every process; packed, it is a few kilobytes. Only with LLD (as [`give_order`]) and
/// only where the C library that will load the binary (this machine's: `glibc`, what
/// `getconf GNU_LIBC_VERSION` printed) reads such a table, from glibc 2.36 on; an older one
/// would refuse to start the binary. `ISTHMUS_PACK_RELOCATIONS=off` (`no_pack`) leaves the
/// table as it was, to measure against.
pub fn pack_relocations(b: &Build<'_>, glibc: &str, no_pack: bool) -> bool {
    !no_pack && lld_links_release(b) && glibc_reads_relr(glibc)
}

/// A release build for x86_64 Linux (GNU) linked by the toolchain's own LLD.
fn lld_links_release(b: &Build<'_>) -> bool {
    let other_linker =
        b.linker_env || b.rustflags.contains("linker") || b.rustflags.contains("fuse-ld");
    b.release
        && b.target == "x86_64-unknown-linux-gnu"
        && !other_linker
        && b.ships_lld
        && lld_by_default(b.rustc_version)
}

/// Whether `getconf GNU_LIBC_VERSION`'s output (`glibc 2.36`) names glibc 2.36 or later,
/// the first to load `DT_RELR` relocations.
pub fn glibc_reads_relr(getconf: &str) -> bool {
    let Some(version) = getconf.trim().strip_prefix("glibc ") else {
        return false;
    };
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (2, 36)
}

/// Whether `rustc -vV`'s output names release 1.90 or later.
pub fn lld_by_default(rustc_version: &str) -> bool {
    let Some(release) = rustc_version
        .lines()
        .find_map(|l| l.strip_prefix("release: "))
    else {
        return false;
    };
    let mut parts = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (1, 90)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUSTC_195: &str = "rustc 1.95.0 (59807616e 2026-04-14)\nbinary: rustc\nrelease: 1.95.0\nLLVM version: 22.1.2\n";

    fn release() -> Build<'static> {
        Build {
            release: true,
            off: false,
            target: "x86_64-unknown-linux-gnu",
            rustflags: "",
            linker_env: false,
            rustc_version: RUSTC_195,
            ships_lld: true,
        }
    }

    #[test]
    fn a_release_build_linked_by_lld_gets_the_list() {
        assert!(give_order(&release()));
    }

    #[test]
    fn anything_else_is_linked_as_usual() {
        let cases = [
            Build {
                release: false,
                ..release()
            },
            Build {
                off: true,
                ..release()
            },
            Build {
                target: "aarch64-unknown-linux-gnu",
                ..release()
            },
            Build {
                target: "x86_64-unknown-linux-musl",
                ..release()
            },
            Build {
                rustflags: "-Clinker-features=-lld",
                ..release()
            },
            Build {
                rustflags: "-Clink-arg=-fuse-ld=bfd",
                ..release()
            },
            Build {
                linker_env: true,
                ..release()
            },
            Build {
                rustc_version: "rustc 1.88.0\nrelease: 1.88.0\n",
                ..release()
            },
            Build {
                ships_lld: false,
                ..release()
            },
        ];
        for b in cases {
            assert!(!give_order(&b), "{b:?}");
        }
    }

    #[test]
    fn relocations_are_packed_where_lld_links_and_glibc_reads_them() {
        assert!(pack_relocations(&release(), "glibc 2.36\n", false));
        assert!(pack_relocations(&release(), "glibc 2.41", false));
        // Packing does not depend on the symbol list.
        let off = Build {
            off: true,
            ..release()
        };
        assert!(pack_relocations(&off, "glibc 2.36", false));
        assert!(!pack_relocations(&release(), "glibc 2.36", true));
        assert!(!pack_relocations(&release(), "glibc 2.35", false));
        assert!(!pack_relocations(&release(), "glibc 2.9", false));
        // Another C library, or none reported: left as it is.
        assert!(!pack_relocations(&release(), "", false));
        assert!(!pack_relocations(&release(), "musl 1.2.4", false));
        let debug = Build {
            release: false,
            ..release()
        };
        assert!(!pack_relocations(&debug, "glibc 2.36", false));
        let bfd = Build {
            rustflags: "-Clink-arg=-fuse-ld=bfd",
            ..release()
        };
        assert!(!pack_relocations(&bfd, "glibc 2.36", false));
    }

    #[test]
    fn glibc_reads_relr_from_2_36() {
        assert!(glibc_reads_relr("glibc 2.36"));
        assert!(glibc_reads_relr("glibc 3.0"));
        assert!(!glibc_reads_relr("glibc 2.3"));
        assert!(!glibc_reads_relr("glibc"));
    }

    #[test]
    fn lld_is_the_default_from_rust_1_90() {
        assert!(lld_by_default("release: 1.90.0\n"));
        assert!(lld_by_default("release: 1.97.0-nightly\n"));
        assert!(lld_by_default("release: 2.0.0\n"));
        assert!(!lld_by_default("release: 1.89.1\n"));
        assert!(!lld_by_default("release: 1.9.0\n"));
        assert!(!lld_by_default("no release line"));
    }
}
