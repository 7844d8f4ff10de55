//! Lab failures, each saying what to do about it.

use std::path::PathBuf;

/// A lab operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The lab needs root for namespaces and iptables.
    #[error(
        "the lab needs root (it creates network namespaces and iptables rules); run it with sudo"
    )]
    NotRoot,
    /// A tool the lab runs is missing.
    #[error("`{tool}` is not installed: {hint}")]
    MissingTool {
        /// The program.
        tool: String,
        /// How to get it.
        hint: String,
    },
    /// A command failed.
    #[error("`{command}` failed: {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// What it printed.
        stderr: String,
    },
    /// A file could not be used.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The topology or a manifest is wrong; the message names the file, line and field.
    #[error("{0}")]
    Invalid(String),
    /// A lab still runs where a new one would go.
    #[error("{0}; `isthmus lab down` stops it, `--replace` replaces it, or run the new lab beside it with its own `--state DIR --prefix NAME`")]
    AlreadyRunning(String),
    /// No lab is running.
    #[error("no lab is running (state {0}); start one with `isthmus lab up DIR`")]
    NotRunning(PathBuf),
    /// Something named does not exist in the lab.
    #[error("{0}")]
    NotFound(String),
    /// A wait ran out.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The CA failed.
    #[error("certificate authority: {0}")]
    Ca(#[from] isthmus_ca::CaError),
}

/// Maps an I/O error on `path`.
pub fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> LabError + '_ {
    move |source| LabError::Io {
        path: path.to_path_buf(),
        source,
    }
}
