//! A real Kubernetes control plane on this machine: etcd, kube-apiserver and, when asked,
//! kube-controller-manager and kube-scheduler, from the binaries that
//! `scripts/install-kubernetes.sh` builds from the pinned Go modules. Used by the lab (one
//! per cluster), by tests and by benchmarks; nothing here is a stand-in.
//!
//! The API server serves TLS with a certificate from a CA made for it (the kubeconfig trusts
//! only that CA), authenticates a static admin token (group `system:masters`) and signs
//! service-account tokens with its own key. Every process is stopped when the
//! [`LocalCluster`] is dropped.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binaries a local cluster runs.
pub const BINARIES: [&str; 5] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
];

/// A local control plane could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The binaries are not built.
    #[error("{0}")]
    NoBinaries(String),
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A certificate or key could not be made.
    #[error("making {what}: {reason}")]
    Certificate {
        /// Which.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A process could not be started, or exited, or did not become ready.
    #[error("{process}: {reason}\n--- last lines of {log} ---\n{tail}")]
    Process {
        /// Which.
        process: &'static str,
        /// What happened.
        reason: String,
        /// Its log file.
        log: String,
        /// The log's last lines.
        tail: String,
    },
    /// The kubeconfig written could not be used.
    #[error(transparent)]
    Access(#[from] crate::AccessError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LocalError + '_ {
    move |source| LocalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The greatest of what `pick` makes of the folders of `.kube-bin` in `from` or, where it
/// finds none there, in the nearest parent that has some.
fn in_kube_bin<T: Ord>(from: &Path, pick: impl Fn(&Path) -> Option<T>) -> Option<T> {
    from.ancestors().find_map(|dir| {
        std::fs::read_dir(dir.join(".kube-bin"))
            .ok()?
            .flatten()
            .filter_map(|e| pick(&e.path()))
            .max()
    })
}

/// Finds the folder of built binaries: `explicit`, else `$KUBE_BIN`, else the newest
/// `.kube-bin/*/` (with every binary) in the current directory or one of its parents.
pub fn locate_binaries(explicit: Option<&Path>) -> Result<PathBuf, LocalError> {
    let complete = |d: &Path| BINARIES.iter().all(|b| d.join(b).is_file());
    let given = explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("KUBE_BIN").map(PathBuf::from));
    if let Some(d) = given {
        return if complete(&d) {
            Ok(d)
        } else {
            Err(LocalError::NoBinaries(format!(
                "{} does not hold {}: run scripts/install-kubernetes.sh (it builds them from the pinned Go modules)",
                d.display(),
                BINARIES.join(", ")
            )))
        };
    }
    let cwd = std::env::current_dir().unwrap_or_default();
    let newest = in_kube_bin(&cwd, |d| {
        complete(d).then(|| {
            let t = std::fs::metadata(d.join("kube-apiserver"))
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            (t, d.to_path_buf())
        })
    });
    if let Some((_, p)) = newest {
        return Ok(p);
    }
    Err(LocalError::NoBinaries(format!(
        "no Kubernetes binaries: run scripts/install-kubernetes.sh from the repository (it needs Go 1.26 or newer and the Go module proxy), or give their folder with --kube-bin or KUBE_BIN (looked in .kube-bin below {} and its parents)",
        cwd.display()
    )))
}

/// How to run a local control plane.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// The built binaries.
    pub bin: PathBuf,
    /// Where its data, certificates, kubeconfig and logs go (created).
    pub dir: PathBuf,
    /// The API server's address, which its kubeconfig names (loopback, or an address inside
    /// a network namespace the caller made). etcd listens on loopback only: nothing but
    /// the API server reaches it.
    pub address: IpAddr,
    /// Where the API server listens: `address`, or `0.0.0.0` to serve on every address of
    /// its namespace (a pod address and a public one).
    pub bind: IpAddr,
    /// Other addresses the API server's certificate names (a public address on a WAN).
    pub extra_addresses: Vec<IpAddr>,
    /// The API server's port.
    pub api_port: u16,
    /// etcd's client port (peer port: this + 1).
    pub etcd_port: u16,
    /// The ClusterIP range, such as `10.96.0.0/16`.
    pub service_cidr: String,
    /// Also run kube-controller-manager and kube-scheduler.
    pub controllers: bool,
    /// A command prefix for every process, such as `ip netns exec NS`.
    pub wrap: Vec<String>,
    /// How long to wait for readiness.
    pub startup: Duration,
}

impl LocalOptions {
    /// A control plane on loopback at free ports, in `dir`.
    pub fn loopback(bin: PathBuf, dir: PathBuf) -> LocalOptions {
        let port = |n: u16| free_port().unwrap_or(20000 + n);
        // etcd's peer port is the client port + 1: both must be free.
        let etcd = (0..20)
            .filter_map(|_| free_port())
            .find(|p| {
                p.checked_add(1)
                    .is_some_and(|next| std::net::TcpListener::bind(("127.0.0.1", next)).is_ok())
            })
            .unwrap_or(20001);
        LocalOptions {
            bin,
            dir,
            address: IpAddr::from([127, 0, 0, 1]),
            bind: IpAddr::from([127, 0, 0, 1]),
            extra_addresses: Vec::new(),
            api_port: port(0),
            etcd_port: etcd,
            service_cidr: "10.96.0.0/16".into(),
            controllers: false,
            wrap: Vec::new(),
            startup: Duration::from_secs(120),
        }
    }
}

/// A port the kernel has free on loopback now.
pub fn free_port() -> Option<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
    Some(l.local_addr().ok()?.port())
}

/// A running local control plane; dropping it stops every process.
pub struct LocalCluster {
    options: LocalOptions,
    processes: Vec<(&'static str, Child)>,
    token: String,
    ca_pem: String,
    /// kube-apiserver's arguments, to start it again.
    api_args: Vec<String>,
}

impl LocalCluster {
    /// Starts etcd and kube-apiserver (and the controllers when asked), waits until the API
    /// server answers (asking with kubectl, run with the same command prefix, so that an API
    /// server inside a network namespace is reached from there), and writes `kubeconfig` in
    /// the folder. Blocks while it waits.
    pub fn start(options: LocalOptions) -> Result<LocalCluster, LocalError> {
        std::fs::create_dir_all(&options.dir).map_err(io(&options.dir))?;
        let dir = options.dir.clone();
        let (ca_pem, cert_pem, key_pem) = serving_certificate(&options)?;
        let sa_key = rcgen::KeyPair::generate().map_err(|e| LocalError::Certificate {
            what: "the service-account signing key",
            reason: e.to_string(),
        })?;
        let token = random_token()?;
        let write = |name: &str, text: &str| -> Result<PathBuf, LocalError> {
            let p = dir.join(name);
            write_private(&p, text)?;
            Ok(p)
        };
        let ca = write("ca.crt", &ca_pem)?;
        let cert = write("apiserver.crt", &cert_pem)?;
        let key = write("apiserver.key", &key_pem)?;
        let sa_private = write("sa.key", &sa_key.serialize_pem())?;
        let sa_public = write("sa.pub", &sa_key.public_key_pem())?;
        let tokens = write(
            "tokens.csv",
            &format!("{token},isthmus-admin,isthmus-admin,\"system:masters\"\n"),
        )?;
        let mut cluster = LocalCluster {
            options: options.clone(),
            processes: Vec::new(),
            token,
            ca_pem,
            api_args: Vec::new(),
        };
        write("kubeconfig", &cluster.kubeconfig(options.address))?;
        let addr = options.address.to_string();
        let bind = options.bind.to_string();
        let etcd_url = format!("http://127.0.0.1:{}", options.etcd_port);
        let peer_url = format!("http://127.0.0.1:{}", options.etcd_port + 1);
        let data = dir.join("etcd-data");
        cluster.spawn(
            "etcd",
            &[
                "--name",
                "isthmus",
                "--data-dir",
                &data.display().to_string(),
                "--listen-client-urls",
                &etcd_url,
                "--advertise-client-urls",
                &etcd_url,
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
                "--initial-cluster",
                &format!("isthmus={peer_url}"),
                "--quota-backend-bytes",
                "8589934592",
            ],
        )?;
        let p = |p: &PathBuf| p.display().to_string();
        cluster.api_args = [
            "--etcd-servers",
            &etcd_url,
            "--bind-address",
            &bind,
            "--advertise-address",
            &addr,
            "--secure-port",
            &options.api_port.to_string(),
            "--tls-cert-file",
            &p(&cert),
            "--tls-private-key-file",
            &p(&key),
            "--client-ca-file",
            &p(&ca),
            "--service-cluster-ip-range",
            &options.service_cidr,
            "--service-account-issuer",
            "https://kubernetes.default.svc.cluster.local",
            "--service-account-key-file",
            &p(&sa_public),
            "--service-account-signing-key-file",
            &p(&sa_private),
            "--token-auth-file",
            &p(&tokens),
            "--authorization-mode",
            "Node,RBAC",
            // The lease reconciler publishes the advertise address as the `kubernetes`
            // Service's endpoint, which pods reach with their in-cluster credentials; a
            // loopback address cannot be an endpoint, so there nothing is published.
            "--endpoint-reconciler-type",
            if options.address.is_loopback() {
                "none"
            } else {
                "lease"
            },
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let args = cluster.api_args.clone();
        cluster.spawn("kube-apiserver", &args)?;
        cluster.wait_ready()?;
        if options.controllers {
            cluster.spawn_controllers()?;
            cluster.wait_controllers()?;
        }
        Ok(cluster)
    }

    fn spawn_controllers(&mut self) -> Result<(), LocalError> {
        let dir = self.options.dir.clone();
        let p = |p: &PathBuf| p.display().to_string();
        let kubeconfig = p(&dir.join("kubeconfig"));
        let sa_private = dir.join("sa.key");
        let ca = dir.join("ca.crt");
        let service_cidr = self.options.service_cidr.clone();
        self.spawn(
            "kube-controller-manager",
            &[
                "--kubeconfig",
                &kubeconfig,
                "--leader-elect=false",
                "--secure-port",
                "0",
                "--service-account-private-key-file",
                &p(&sa_private),
                "--root-ca-file",
                &p(&ca),
                "--use-service-account-credentials=false",
                "--service-cluster-ip-range",
                &service_cidr,
                "--controllers",
                // Pod CIDRs per node are the lab's business (it gives pods their addresses).
                "*,-nodeipam",
            ],
        )?;
        self.spawn(
            "kube-scheduler",
            &[
                "--kubeconfig",
                &kubeconfig,
                "--leader-elect=false",
                "--secure-port",
                "0",
            ],
        )
    }

    /// Waits until the controller manager works: the service-account controller has made
    /// `default/default`.
    fn wait_controllers(&mut self) -> Result<(), LocalError> {
        let started = Instant::now();
        loop {
            if let Some((process, status)) = self.exited() {
                return Err(self.failed(process, format!("exited during startup ({status})")));
            }
            let last = match self.kubectl(
                &[
                    "get",
                    "serviceaccount",
                    "default",
                    "-n",
                    "default",
                    "-o",
                    "name",
                ],
                None,
            ) {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            if started.elapsed() > self.options.startup {
                return Err(self.failed(
                    "kube-controller-manager",
                    format!(
                        "made no default service account within {:?} (last answer: {last})",
                        self.options.startup
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn log_path(&self, process: &str) -> PathBuf {
        self.options.dir.join(format!("{process}.log"))
    }

    fn spawn<S: AsRef<std::ffi::OsStr>>(
        &mut self,
        process: &'static str,
        args: &[S],
    ) -> Result<(), LocalError> {
        let log = self.log_path(process);
        let out = std::fs::File::create(&log).map_err(io(&log))?;
        let err = out.try_clone().map_err(io(&log))?;
        let exe = self.options.bin.join(process);
        let mut command = match self.options.wrap.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let child = command
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Its own process group: a Ctrl-C meant for whoever started it does not reach it.
            .process_group(0)
            .spawn()
            .map_err(|e| self.failed(process, format!("cannot start {}: {e}", exe.display())))?;
        self.processes.push((process, child));
        Ok(())
    }

    fn failed(&self, process: &'static str, reason: String) -> LocalError {
        let log = self.log_path(process);
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        LocalError::Process {
            process,
            reason,
            log: log.display().to_string(),
            tail,
        }
    }

    /// The first process that has exited, if any.
    pub fn exited(&mut self) -> Option<(&'static str, String)> {
        for (name, child) in &mut self.processes {
            if let Ok(Some(status)) = child.try_wait() {
                return Some((name, status.to_string()));
            }
        }
        None
    }

    fn wait_ready(&mut self) -> Result<(), LocalError> {
        let started = Instant::now();
        loop {
            if let Some((process, status)) = self.exited() {
                return Err(self.failed(process, format!("exited during startup ({status})")));
            }
            // Ready, and the namespaces it makes at start exist.
            let last = match self.kubectl(&["get", "--raw", "/readyz"], None) {
                Ok(body) if body.trim() == "ok" => {
                    match self.kubectl(&["get", "namespace", "default", "-o", "name"], None) {
                        Ok(_) => return Ok(()),
                        Err(e) => e,
                    }
                }
                Ok(body) => body,
                Err(e) => e,
            };
            if started.elapsed() > self.options.startup {
                return Err(self.failed(
                    "kube-apiserver",
                    format!(
                        "not ready after {:?} (last answer: {last})",
                        self.options.startup
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// A client with the admin token.
    pub async fn client(&self) -> Result<kube::Client, LocalError> {
        Ok(self.access().client().await?)
    }

    /// Access through the kubeconfig in the folder.
    pub fn access(&self) -> crate::Access {
        crate::Access::File {
            path: self.kubeconfig_path(),
            context: None,
        }
    }

    /// The admin kubeconfig written in the folder (server at the listening address).
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.options.dir.join("kubeconfig")
    }

    /// The API server's URL at `address` (one the certificate names).
    pub fn url(&self, address: IpAddr) -> String {
        format!(
            "https://{}",
            SocketAddr::new(address, self.options.api_port)
        )
    }

    /// An admin kubeconfig for the API server at `address`.
    pub fn kubeconfig(&self, address: IpAddr) -> String {
        use base64::Engine as _;
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.ca_pem);
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: {}\n    certificate-authority-data: {ca}\nusers:\n- name: admin\n  user:\n    token: {}\ncontexts:\n- name: local\n  context:\n    cluster: local\n    user: admin\ncurrent-context: local\n",
            self.url(address),
            self.token
        )
    }

    /// The folder it runs in.
    pub fn dir(&self) -> &Path {
        &self.options.dir
    }

    /// The process ids, by name (for memory measurements).
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        self.processes.iter().map(|(n, c)| (*n, c.id())).collect()
    }

    /// Leaves every process running on its own (the lab records the pids and stops them
    /// with the namespace they run in); returns them by name.
    pub fn detach(mut self) -> Vec<(&'static str, u32)> {
        let pids = self.pids();
        // Dropping a `Child` neither waits for nor kills it.
        self.processes.clear();
        pids
    }

    /// Stops the API server and the controllers but keeps etcd and the folder, as an API
    /// server restart does; [`LocalCluster::restart_api_server`] starts it again.
    pub fn stop_api_server(&mut self) {
        let mut kept = Vec::new();
        for (name, child) in std::mem::take(&mut self.processes) {
            if name == "etcd" {
                kept.push((name, child));
            } else {
                stop(name, child);
            }
        }
        self.processes = kept;
    }

    /// Starts again what [`LocalCluster::stop_api_server`] stopped (the API server, with
    /// the same settings; the controllers when they ran), and waits until it answers.
    pub fn restart_api_server(&mut self) -> Result<(), LocalError> {
        let args = self.api_args.clone();
        self.spawn("kube-apiserver", &args)?;
        self.wait_ready()?;
        if self.options.controllers {
            self.spawn_controllers()?;
            self.wait_controllers()?;
        }
        Ok(())
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        // The API server first, etcd last.
        while let Some((name, child)) = self.processes.pop() {
            stop(name, child);
        }
    }
}

impl std::fmt::Debug for LocalCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("LocalCluster")
            .field("dir", &self.options.dir)
            .field("api", &self.url(self.options.address))
            .field("processes", &self.pids())
            .finish()
    }
}

/// Writes a file only its owner can read (keys, tokens, kubeconfigs).
pub fn write_private(path: &Path, text: &str) -> Result<(), LocalError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    f.write_all(text.as_bytes()).map_err(io(path))
}

/// TERM, up to 10 s, then KILL.
fn stop(name: &str, mut child: Child) {
    let pid = child.id();
    // std sends only KILL; TERM lets etcd and the API server shut down cleanly.
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    tracing::warn!(
        process = name,
        "did not stop on TERM within 10 s; killing it"
    );
    let _ = child.kill();
    let _ = child.wait();
}

fn random_token() -> Result<String, LocalError> {
    let key = rcgen::KeyPair::generate().map_err(|e| LocalError::Certificate {
        what: "a token",
        reason: e.to_string(),
    })?;
    // 32 hex digits from a fresh key's serialised bytes (random by construction).
    let der = key.serialized_der();
    Ok(der[der.len().saturating_sub(16)..]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// A CA made for this API server and its serving certificate: (CA PEM, cert PEM, key PEM).
fn serving_certificate(o: &LocalOptions) -> Result<(String, String, String), LocalError> {
    let err = |what: &'static str| {
        move |e: rcgen::Error| LocalError::Certificate {
            what,
            reason: e.to_string(),
        }
    };
    let ca_key = rcgen::KeyPair::generate().map_err(err("the API server's CA key"))?;
    let mut ca =
        rcgen::CertificateParams::new(Vec::<String>::new()).map_err(err("the API server's CA"))?;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "isthmus-lab-kubernetes-ca");
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca
        .self_signed(&ca_key)
        .map_err(err("the API server's CA"))?;
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let mut names = vec![
        "kubernetes".to_string(),
        "kubernetes.default".to_string(),
        "kubernetes.default.svc".to_string(),
        "kubernetes.default.svc.cluster.local".to_string(),
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        o.address.to_string(),
    ];
    names.extend(o.extra_addresses.iter().map(|a| a.to_string()));
    // The `kubernetes` Service's ClusterIP (the range's first address), which pods reach the
    // API server at with their in-cluster credentials.
    names.extend(first_service_ip(&o.service_cidr).map(|a| a.to_string()));
    names.dedup();
    let key = rcgen::KeyPair::generate().map_err(err("the API server's key"))?;
    let mut p = rcgen::CertificateParams::new(names).map_err(err("the API server's names"))?;
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "kube-apiserver");
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = p
        .signed_by(&key, &issuer)
        .map_err(err("the API server's certificate"))?;
    Ok((ca_cert.pem(), cert.pem(), key.serialize_pem()))
}

/// The first address of a ClusterIP range such as `10.96.0.0/16` (the `kubernetes`
/// Service's), or `None` when it is not an IPv4 range.
pub fn first_service_ip(cidr: &str) -> Option<std::net::Ipv4Addr> {
    let (base, prefix) = cidr.split_once('/')?;
    let base: std::net::Ipv4Addr = base.parse().ok()?;
    let prefix: u32 = prefix.parse().ok().filter(|p| *p <= 30)?;
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    Some(std::net::Ipv4Addr::from((u32::from(base) & mask) + 1))
}

/// Finds Istio's CRDs (`crd-all.gen.yaml`, from the pinned istio.io/istio module): `$ISTIO_CRDS`,
/// else the newest `.kube-bin/istio-*/crd-all.gen.yaml` in the current directory or a parent.
pub fn locate_istio_crds() -> Result<PathBuf, LocalError> {
    if let Some(f) = std::env::var_os("ISTIO_CRDS").map(PathBuf::from) {
        return if f.is_file() {
            Ok(f)
        } else {
            Err(LocalError::NoBinaries(format!(
                "ISTIO_CRDS={} does not exist: run scripts/install-istio-crds.sh",
                f.display()
            )))
        };
    }
    let cwd = std::env::current_dir().unwrap_or_default();
    let newest = in_kube_bin(&cwd, |d| {
        let f = d.join("crd-all.gen.yaml");
        f.is_file().then_some(f)
    });
    if let Some(p) = newest {
        return Ok(p);
    }
    Err(LocalError::NoBinaries(format!(
        "Istio's CRDs are not fetched: run scripts/install-istio-crds.sh from the repository, or set ISTIO_CRDS (looked in .kube-bin below {})",
        cwd.display()
    )))
}

/// Finds istiod (`pilot-discovery`, built from the pinned istio.io/istio module by
/// scripts/install-istiod.sh): `explicit`, else `$ISTIOD`, else the newest
/// `.kube-bin/istiod-*/pilot-discovery` in the current directory or a parent.
pub fn locate_istiod(explicit: Option<&Path>) -> Result<PathBuf, LocalError> {
    let given = explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("ISTIOD").map(PathBuf::from));
    if let Some(f) = given {
        return if f.is_file() {
            Ok(f)
        } else {
            Err(LocalError::NoBinaries(format!(
                "istiod {} does not exist: run scripts/install-istiod.sh (it builds pilot-discovery from the pinned Go module)",
                f.display()
            )))
        };
    }
    let cwd = std::env::current_dir().unwrap_or_default();
    let newest = in_kube_bin(&cwd, |d| {
        let named = d.file_name()?.to_str()?.starts_with("istiod-");
        let f = d.join("pilot-discovery");
        (named && f.is_file()).then_some(f)
    });
    newest.ok_or_else(|| {
        LocalError::NoBinaries(format!(
            "istiod is not built: run scripts/install-istiod.sh from the repository (it needs Go 1.26 or newer and the Go module proxy), or give it with --istiod or ISTIOD (looked in .kube-bin below {})",
            cwd.display()
        ))
    })
}

/// The built kubectl with a kubeconfig, run behind a command prefix (such as `ip netns exec
/// NS`, to reach an API server inside a network namespace).
#[derive(Debug, Clone)]
pub struct Kubectl {
    /// The kubectl binary.
    pub exe: PathBuf,
    /// The kubeconfig.
    pub kubeconfig: PathBuf,
    /// The command prefix.
    pub wrap: Vec<String>,
}

impl Kubectl {
    /// Runs kubectl with `args`, feeding it `stdin`. Returns its standard output, or its
    /// standard error (the API server's message) as the error.
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        use std::io::Write as _;
        let mut command = match self.wrap.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&self.exe);
                c
            }
            None => Command::new(&self.exe),
        };
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--request-timeout=30s")
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.exe.display()))?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes())
                .map_err(|e| format!("writing to kubectl: {e}"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("kubectl: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }
}

impl LocalCluster {
    /// kubectl for this API server, run with the processes' command prefix.
    pub fn kubectl_command(&self) -> Kubectl {
        Kubectl {
            exe: self.options.bin.join("kubectl"),
            kubeconfig: self.kubeconfig_path(),
            wrap: self.options.wrap.clone(),
        }
    }

    /// Runs the built kubectl against this API server (see [`Kubectl::run`]).
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        self.kubectl_command().run(args, stdin)
    }

    /// Installs Istio's CRDs (`crds`: a `crd-all.gen.yaml`) and waits until they are served.
    pub fn install_istio_crds(&self, crds: &Path) -> Result<(), String> {
        let file = crds.display().to_string();
        self.kubectl(&["apply", "-f", &file], None)?;
        self.kubectl(
            &[
                "wait",
                "--for",
                "condition=established",
                "--timeout",
                "60s",
                "-f",
                &file,
            ],
            None,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubernetes_service_takes_the_first_address_of_the_range() {
        assert_eq!(
            first_service_ip("10.96.0.0/16"),
            Some([10, 96, 0, 1].into())
        );
        assert_eq!(
            first_service_ip("10.96.5.7/16"),
            Some([10, 96, 0, 1].into())
        );
        assert_eq!(first_service_ip("fd00::/108"), None);
        assert_eq!(first_service_ip("10.96.0.0"), None);
        assert_eq!(first_service_ip("10.96.0.0/31"), None);
    }
}
