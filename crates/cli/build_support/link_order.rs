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
    let other_linker =
        b.linker_env || b.rustflags.contains("linker") || b.rustflags.contains("fuse-ld");
    b.release
        && !b.off
        && b.target == "x86_64-unknown-linux-gnu"
        && !other_linker
        && b.ships_lld
        && lld_by_default(b.rustc_version)
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
    fn lld_is_the_default_from_rust_1_90() {
        assert!(lld_by_default("release: 1.90.0\n"));
        assert!(lld_by_default("release: 1.97.0-nightly\n"));
        assert!(lld_by_default("release: 2.0.0\n"));
        assert!(!lld_by_default("release: 1.89.1\n"));
        assert!(!lld_by_default("release: 1.9.0\n"));
        assert!(!lld_by_default("no release line"));
    }
}
