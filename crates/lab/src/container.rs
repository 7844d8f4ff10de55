//! How the lab's kubelet runs a container whose image is the Isthmus image (the control
//! plane of the Helm chart, an injected pod's `istio-init` and `istio-proxy`): the
//! `isthmus` binary with the container's arguments (`$(VAR)` expanded as Kubernetes does),
//! its environment only, its volumes bind-mounted at their mount paths in a mount namespace
//! of its own, and its user and group.
//!
//! The pod's processes share the pod's network namespace; each container gets a private
//! mount namespace (`isthmus lab container-exec`, run inside `ip netns exec`), so that its
//! volumes appear where the pod spec says without touching the host's mounts. A mount path
//! that does not exist on the host is created there as an empty folder first (a container
//! runtime creates it in the image's root; the lab has no image root): only folders, never
//! files, and nothing is mounted outside the container's namespace.

use std::ffi::CString;
use std::path::{Path, PathBuf};

/// The repository of the Isthmus image (the chart's `global.hub` + `/isthmus`).
pub const ISTHMUS_IMAGE: &str = "ghcr.io/isthmus-mesh/isthmus";

/// Whether `image` (with or without a tag or digest) is the Isthmus image, whose
/// containers the lab runs as the `isthmus` binary.
pub fn is_isthmus_image(image: &str) -> bool {
    let repo = image.split('@').next().unwrap_or(image);
    // A tag is after the last `:` that follows the last `/` (a registry port is not a tag).
    let repo = match repo.rfind(':') {
        Some(i) if !repo[i..].contains('/') => &repo[..i],
        _ => repo,
    };
    repo == ISTHMUS_IMAGE || repo.ends_with("/isthmus-mesh/isthmus") || repo == "isthmus"
}

/// Expands `$(VAR)` in a container's command or argument from `env`, as Kubernetes does:
/// `$$(VAR)` is a literal `$(VAR)`, an unknown `$(VAR)` stays as it is.
pub fn expand(text: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            // `$$` is one `$`.
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match env.iter().rev().find(|(k, _)| k == name) {
                        Some((_, v)) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push_str(&rest[i..]);
                    rest = "";
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// One volume mount of a container: a folder or file of the pod's, at `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Where the kubelet made the volume (under the pod's folder).
    pub source: PathBuf,
    /// The container's mount path.
    pub target: PathBuf,
    /// Mounted read-only.
    pub read_only: bool,
}

impl Mount {
    fn to_arg(&self) -> String {
        format!(
            "{}:{}{}",
            self.source.display(),
            self.target.display(),
            if self.read_only { ":ro" } else { "" }
        )
    }

    /// Reads `SOURCE:TARGET[:ro]`.
    pub fn parse(s: &str) -> Result<Mount, String> {
        let (rest, read_only) = match s.strip_suffix(":ro") {
            Some(r) => (r, true),
            None => (s, false),
        };
        let (source, target) = rest
            .split_once(':')
            .ok_or_else(|| format!("mount `{s}`: expected SOURCE:TARGET[:ro]"))?;
        if !target.starts_with('/') || !source.starts_with('/') {
            return Err(format!("mount `{s}`: both paths must be absolute"));
        }
        Ok(Mount {
            source: source.into(),
            target: target.into(),
            read_only,
        })
    }
}

/// What one container runs, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerExec {
    /// Its volume mounts.
    pub mounts: Vec<Mount>,
    /// Its user (`runAsUser`), root when unset.
    pub uid: u32,
    /// Its group (`runAsGroup`), the user's when unset.
    pub gid: u32,
    /// Its whole environment, in order.
    pub env: Vec<(String, String)>,
    /// The program and its arguments, expanded.
    pub argv: Vec<String>,
}

impl ContainerExec {
    /// The command line that runs it: `EXE lab container-exec ... -- ARGV` (to be run
    /// inside the pod's network namespace).
    pub fn command_line(&self, exe: &str) -> Vec<String> {
        let mut a = vec![exe.to_string(), "lab".into(), "container-exec".into()];
        for m in &self.mounts {
            a.push("--mount".into());
            a.push(m.to_arg());
        }
        a.extend(["--uid".into(), self.uid.to_string()]);
        a.extend(["--gid".into(), self.gid.to_string()]);
        for (k, v) in &self.env {
            a.push("--env".into());
            a.push(format!("{k}={v}"));
        }
        a.push("--".into());
        a.extend(self.argv.iter().cloned());
        a
    }
}

fn cstring(p: &Path) -> std::io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in a path"))
}

fn check(rc: libc::c_int, what: &str) -> std::io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        let e = std::io::Error::last_os_error();
        Err(std::io::Error::new(e.kind(), format!("{what}: {e}")))
    }
}

/// `isthmus lab container-exec`: in a mount namespace of its own, bind-mounts each volume at
/// its path, then becomes the container's user and runs its program with its environment
/// only. Returns only on failure.
pub fn exec(spec: &ContainerExec) -> std::io::Error {
    match exec_inner(spec) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

#[allow(unsafe_code)]
fn exec_inner(spec: &ContainerExec) -> std::io::Result<std::convert::Infallible> {
    use std::os::unix::process::CommandExt;
    // SAFETY: plain system calls with valid NUL-terminated strings; no memory is shared.
    unsafe {
        check(libc::unshare(libc::CLONE_NEWNS), "unshare(CLONE_NEWNS)")?;
        check(
            libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ),
            "making / private",
        )?;
    }
    for m in &spec.mounts {
        if m.source.is_dir() {
            std::fs::create_dir_all(&m.target).map_err(|e| {
                std::io::Error::new(e.kind(), format!("{}: {e}", m.target.display()))
            })?;
        } else if !m.target.exists() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "{}: a file volume needs an existing file to mount over",
                    m.target.display()
                ),
            ));
        }
        let (src, dst) = (cstring(&m.source)?, cstring(&m.target)?);
        let what = format!("mounting {} at {}", m.source.display(), m.target.display());
        // SAFETY: as above.
        unsafe {
            check(
                libc::mount(
                    src.as_ptr(),
                    dst.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ),
                &what,
            )?;
            if m.read_only {
                check(
                    libc::mount(
                        std::ptr::null(),
                        dst.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                        std::ptr::null(),
                    ),
                    &what,
                )?;
            }
        }
    }
    let (program, args) = spec.argv.split_first().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no program to run")
    })?;
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir("/");
    if spec.uid != 0 || spec.gid != 0 {
        // std drops the supplementary groups when root sets a uid.
        cmd.gid(spec.gid).uid(spec.uid);
    }
    Err(cmd.exec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_isthmus_image_is_known_with_any_tag_or_digest() {
        assert!(is_isthmus_image("ghcr.io/isthmus-mesh/isthmus:0.1.0"));
        assert!(is_isthmus_image("ghcr.io/isthmus-mesh/isthmus"));
        assert!(is_isthmus_image(
            "registry.local:5000/isthmus-mesh/isthmus:dev"
        ));
        assert!(is_isthmus_image("ghcr.io/isthmus-mesh/isthmus@sha256:abc"));
        assert!(!is_isthmus_image("docker.io/istio/proxyv2:1.24.0"));
        assert!(!is_isthmus_image("docker.io/istio/examples-helloworld-v1"));
        assert!(!is_isthmus_image(
            "registry.local:5000/isthmus-meshy/isthmus"
        ));
    }

    #[test]
    fn arguments_expand_as_kubernetes_expands_them() {
        let env = vec![
            ("POD_NAME".to_string(), "web-0".to_string()),
            ("NS".to_string(), "sample".to_string()),
        ];
        assert_eq!(expand("$(POD_NAME)", &env), "web-0");
        assert_eq!(expand("--domain=$(NS).svc", &env), "--domain=sample.svc");
        assert_eq!(expand("$$(POD_NAME)", &env), "$(POD_NAME)");
        assert_eq!(expand("$(MISSING)", &env), "$(MISSING)");
        assert_eq!(expand("cost $5 $(NS", &env), "cost $5 $(NS");
        assert_eq!(expand("a$$b", &env), "a$b");
    }

    #[test]
    fn a_container_line_reads_back() {
        let spec = ContainerExec {
            mounts: vec![Mount {
                source: "/state/pods/x/volumes/istio-token".into(),
                target: "/var/run/secrets/tokens".into(),
                read_only: true,
            }],
            uid: 1337,
            gid: 1337,
            env: vec![("POD_NAME".into(), "web-0".into())],
            argv: vec!["/bin/isthmus".into(), "agent".into()],
        };
        let line = spec.command_line("/bin/isthmus");
        assert_eq!(&line[..3], ["/bin/isthmus", "lab", "container-exec"]);
        assert_eq!(
            line[4],
            "/state/pods/x/volumes/istio-token:/var/run/secrets/tokens:ro"
        );
        assert_eq!(Mount::parse(&line[4]).expect("mount"), spec.mounts[0]);
        assert!(Mount::parse("relative:/x").is_err());
        assert!(Mount::parse("/only").is_err());
        let dash = line.iter().position(|a| a == "--").expect("--");
        assert_eq!(&line[dash + 1..], ["/bin/isthmus", "agent"]);
    }
}
