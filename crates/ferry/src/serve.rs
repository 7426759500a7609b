//! `ferry serve`: settle the configuration, bind every listener, say what is served, install the signal
//! handlers, and hand the listeners to `ferry_server::run`, which on SIGTERM or Ctrl-C stops accepting and
//! lets running transfers finish within the grace period.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferry_auth::{generate_password, UserStore};
use ferry_config::S3Config;
use ferry_config::{limits, Config, ListenerSpec, PortRange, Protocol, SpecError};
use ferry_core::proxy::TrustedProxies;
use ferry_core::{Core, Events};
use ferry_ftp::{FtpService, FtpSettings};
use ferry_server::{Directory, Gate, Listener, ListenerKind, Services};
use ferry_sftp::{Activity, SshService, SshSettings};
use ferry_tls::TlsStore;
use ferry_vfs::local::{LocalStorage, UploadMode, UploadPolicy, Uploads};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::bootstrap::{self, create_home, default_home, open_store};
use crate::cli::{GlobalArgs, ServeArgs};
use crate::xferlog::Xferlog;
use crate::{hostkeys, logging, CliError};

/// Applies the command line's overrides to the configuration and checks that this build can serve it.
pub(crate) fn settle(mut config: Config, args: &ServeArgs) -> Result<Config, CliError> {
    if !args.listen.is_empty() {
        config.server.listeners = args
            .listen
            .iter()
            .map(|s| {
                s.parse::<ListenerSpec>().map_err(|e: SpecError| {
                    CliError::usage(format!("--listen {s}: {e}"), "for example --listen sftp=0.0.0.0:2222")
                })
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(range) = &args.passive_ports {
        config.server.passive_ports = range.parse::<PortRange>().map_err(|e: SpecError| {
            CliError::usage(format!("--passive-ports {range}: {e}"), "for example --passive-ports 50000-51000")
        })?;
    }
    for l in &config.server.listeners {
        listener_kind(l)?;
    }
    Ok(config)
}

fn listener_kind(spec: &ListenerSpec) -> Result<ListenerKind, CliError> {
    ListenerKind::of(spec).map_err(|e| CliError::usage(e.to_string(), "for example --listen sftp=0.0.0.0:2222"))
}

/// On a store with no users, creates `demo` with a generated password, returned to be printed once.
fn ensure_demo_user(store: &UserStore, data_dir: &std::path::Path) -> Result<Option<String>, CliError> {
    if !store.is_empty()? {
        return Ok(None);
    }
    let password = generate_password();
    let home = default_home(data_dir, "demo");
    create_home(&home)?;
    store.add_user("demo", Some(&password), &home)?;
    Ok(Some(password))
}

async fn bind(spec: &ListenerSpec) -> Result<TcpListener, CliError> {
    TcpListener::bind(spec.addr).await.map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrInUse => format!(
                "another program (an sshd or FTP server?) already listens on port {}; pick another with --listen {}",
                spec.addr.port(),
                ListenerSpec::new(spec.protocols.clone(), SocketAddr::new(spec.addr.ip(), 0))
            ),
            std::io::ErrorKind::PermissionDenied => {
                "ports below 1024 need root or CAP_NET_BIND_SERVICE (setcap cap_net_bind_service=+ep $(which ferry))"
                    .into()
            }
            _ => "check the address belongs to this machine".into(),
        };
        CliError::runtime(format!("cannot listen on {}: {e}", spec.addr)).with_hint(hint)
    })
}

/// Raises the open-file limit to the hard limit and lowers the connection caps so that every connection
/// fits under it with room to spare: a flood of new connections then meets Ferry's own refusal, never
/// `EMFILE` in the middle of a logged-in user's transfer.
fn fit_to_open_files(mut l: ferry_config::LimitsConfig) -> ferry_config::LimitsConfig {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut rl = getrlimit(Resource::Nofile);
    if rl.current < rl.maximum {
        let raised = rustix::process::Rlimit { current: rl.maximum, maximum: rl.maximum };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => rl = getrlimit(Resource::Nofile),
            Err(e) => tracing::warn!("could not raise the open-file limit: {e}"),
        }
    }
    let files = rl.current.unwrap_or(u64::MAX);
    // The reserve shrinks with small limits, so that a box with `ulimit -n 256` still serves some.
    let reserve = limits::FD_RESERVE.min(files / 4);
    let fit = (files.saturating_sub(reserve) / limits::FDS_PER_CONNECTION).max(1) as usize;
    if l.max_connections > fit {
        tracing::warn!(
            open_files = files,
            "hint: the open-file limit ({files}) leaves room for {fit} connections: max_connections lowered from {} to {fit}; raise the limit (ulimit -n, LimitNOFILE=) to serve more",
            l.max_connections
        );
        l.max_connections = fit;
    }
    // Connections still logging in must leave room for logged-in ones.
    let half = (l.max_connections / 2).max(1);
    if l.max_startups.full > half {
        l.max_startups.full = half;
        l.max_startups.start = l.max_startups.start.min(half);
    }
    l
}

/// Takes the data dir's lock (`DATA_DIR/ferry.lock`, an exclusive flock that the kernel releases when the
/// process ends, however it ends).
fn lock_data_dir(data_dir: &std::path::Path) -> Result<std::fs::File, CliError> {
    let path = data_dir.join("ferry.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| CliError::runtime(format!("cannot open {}: {e}", path.display())))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(CliError::runtime(format!(
            "another `ferry serve` is already using the data dir {}",
            data_dir.display()
        ))
        .with_hint("stop it first, or give this one its own --data-dir")),
        Err(e) => Err(CliError::runtime(format!("cannot lock {}: {e}", path.display()))),
    }
}

/// The upload settings every session shares, after finishing the uploads a previous run left pending
/// (a crash or `kill -9` mid-upload): each is undone with one log line, before any client connects.
fn open_uploads(data_dir: &std::path::Path, config: &Config) -> Result<Arc<Uploads>, CliError> {
    let mode = if config.uploads.atomic { UploadMode::Atomic } else { UploadMode::Standard };
    let policy = UploadPolicy { mode, keep_partial: config.uploads.keep_partial, umask: config.uploads.umask };
    // The process umask too, so that nothing a client creates can be more open than the admin allows.
    rustix::process::umask(rustix::fs::Mode::from_bits_truncate(config.uploads.umask));
    let journal = data_dir.join("uploads");
    let uploads = Uploads::new(policy, Some(journal.clone())).map_err(|e| {
        CliError::runtime(format!("cannot open the upload journal {}: {e}", journal.display()))
            .with_hint("the data dir must be writable by the user Ferry runs as")
    })?;
    for note in uploads.recover() {
        tracing::warn!("{note}");
    }
    Ok(uploads)
}

pub fn run(global: &GlobalArgs, args: &ServeArgs) -> Result<(), CliError> {
    let env = bootstrap::load(global)?;
    logging::init(&env.config.log.level, env.config.log.format);
    let store = Arc::new(open_store(&env)?);
    let config = settle(env.config, args)?;
    let demo_password = ensure_demo_user(&store, &env.data_dir)?;
    // A home that exposes the data dir (keys, password hashes) or contains it is refused before serving.
    for user in store.list()? {
        bootstrap::check_home(&env.data_dir, &user.name, &user.home)?;
    }
    let keys = hostkeys::load_or_generate(&env.data_dir, &config.sftp)?;
    let serves_ftp = config.server.listeners.iter().any(|l| l.protocols.iter().any(|p| p.is_ftp()));
    let tls = if serves_ftp {
        // A generated certificate names this machine, the listeners' addresses and `[ftps] names`.
        let listener_ips = config.server.listeners.iter().map(|l| l.addr.ip());
        let names = ferry_tls::CertNames::of_this_machine(listener_ips, &config.ftps.names);
        let store = TlsStore::open(&env.data_dir, config.ftps.cert.as_deref(), config.ftps.key.as_deref(), names)
            .map_err(|e| {
                let hint = e.hint.clone().unwrap_or_else(|| {
                    "fix [ftps] cert and key in the config, or remove both to use a generated self-signed certificate"
                        .into()
                });
                CliError::runtime(format!("FTPS certificate: {e}")).with_hint(hint)
            })?;
        Some(Arc::new(store))
    } else {
        None
    };

    // One server per data dir: a second one would take the first one's uploads in progress for a crash's
    // leftovers and undo them. Held until the process exits.
    let _lock = lock_data_dir(&env.data_dir)?;
    let uploads = open_uploads(&env.data_dir, &config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::runtime(format!("cannot start the async runtime: {e}")))?;
    let local: Arc<dyn ferry_vfs::Storage> = Arc::new(LocalStorage(uploads));
    let s3 = match &config.storage.s3 {
        Some(s3) => Some(runtime.block_on(open_s3(s3))?),
        None => None,
    };
    let storages = Storages { default_s3: config.storage.default_s3, local, s3 };
    let result = runtime.block_on(serve(config, store, keys, tls, storages, demo_password));
    // Blocking file operations of cut-off sessions must not hold up the exit.
    runtime.shutdown_timeout(Duration::from_secs(2));
    result
}
/// The backends this server has: local disk always, and a bucket when `[storage]` names one.
struct Storages {
    default_s3: bool,
    local: Arc<dyn ferry_vfs::Storage>,
    s3: Option<Arc<dyn ferry_vfs::Storage>>,
}

/// The bucket of `[storage]`, checked with one request so a wrong endpoint, bucket or key is said at start
/// rather than at the first login.
async fn open_s3(s3: &S3Config) -> Result<Arc<dyn ferry_vfs::Storage>, CliError> {
    let storage = ferry_s3::S3Storage::new(s3.clone())
        .map_err(|e| CliError::runtime(e.to_string()).with_hint("check [storage] in the configuration"))?;
    storage.check().await.map_err(|e| {
        CliError::runtime(e.to_string())
            .with_hint("check [storage] endpoint, region, bucket and the access key; Ferry does not create buckets")
    })?;
    tracing::info!(bucket = %s3.bucket, endpoint = %s3.endpoint, prefix = %s3.prefix, "users' files are in S3");
    let storage = Arc::new(storage);
    if let Some(age) = s3.abort_incomplete_uploads_after {
        // In the background: a long listing must not hold up the start.
        let s = storage.clone();
        tokio::spawn(async move {
            match s.sweep_incomplete_uploads(age).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    "aborted {n} incomplete multipart upload(s) older than {}s under the prefix (parts of uploads cut off by a crash)",
                    age.as_secs()
                ),
                Err(e) => tracing::warn!("cannot sweep incomplete multipart uploads (a bucket lifecycle rule can do it instead): {e}"),
            }
        });
    }
    Ok(storage)
}

async fn serve(
    config: Config,
    store: Arc<UserStore>,
    keys: Vec<(russh::keys::PrivateKey, std::path::PathBuf)>,
    tls: Option<Arc<TlsStore>>,
    storages: Storages,
    demo_password: Option<String>,
) -> Result<(), CliError> {
    let storage = match (&storages.s3, storages.default_s3) {
        (Some(s3), true) => s3.clone(),
        _ => storages.local.clone(),
    };
    let xferlog = open_xferlog(&config)?;
    // Before anything is printed: a script that reads the limits at `ready` sees them raised.
    let gate = Gate::new(fit_to_open_files(config.limits));
    let mut bound = Vec::new();
    for spec in &config.server.listeners {
        let listener = Listener::new(bind(spec).await?, listener_kind(spec)?)
            .map_err(|e| CliError::runtime(format!("listener address: {e}")))?;
        bound.push((spec.protocols.clone(), listener));
    }

    let activity = Arc::new(Activity::default());
    let settings = SshSettings {
        window_size: limits::SSH_WINDOW_SIZE,
        max_packet_size: limits::SSH_MAX_PACKET_SIZE,
        idle_timeout: limits::IDLE_TIMEOUT,
        max_auth_attempts: limits::MAX_AUTH_ATTEMPTS,
        failed_login_delay: limits::FAILED_LOGIN_DELAY,
        algorithms: ferry_sftp::Algorithms::from_config(&config.sftp.algorithms).map_err(CliError::runtime)?,
    };
    // Show the demo user in the example command only while it exists.
    let login_user = match store.get("demo") {
        Ok(Some(_)) => "demo",
        _ => "USER",
    };
    let described: Vec<_> = keys.iter().map(|(k, _)| hostkeys::describe(k)).collect();
    // Every protocol logs in through the core: one place for credentials, storage and events.
    let events = match &xferlog {
        Some(log) => Events::with_transfer_log(log.clone()),
        None => Events::new(),
    };
    let core = Core::with_defender(store.clone(), storage.clone(), events, config.defender.clone());
    core.add_backend("local", storages.local.clone());
    if let Some(s3) = &storages.s3 {
        core.add_backend("s3", s3.clone());
    }
    core.set_max_sessions_per_user(config.limits.max_sessions_per_user);
    // Account changes made with `ferry user ...` reach live sessions without a restart.
    tokio::spawn(core.clone().watch_accounts());
    let ssh = Arc::new(SshService::new(
        keys.into_iter().map(|(k, _)| k).collect(),
        core.clone(),
        activity.clone(),
        &settings,
    ));
    let trusted_proxies = TrustedProxies::new(config.server.trusted_proxies.clone());
    let ftp = tls.as_ref().map(|tls| {
        let range = config.server.passive_ports;
        let settings = FtpSettings {
            passive_ports: (range.first, range.last),
            passive_address: config.ftps.passive_address,
            require_session_reuse: config.ftps.require_session_reuse,
            idle_timeout: limits::IDLE_TIMEOUT,
            failed_login_delay: limits::FAILED_LOGIN_DELAY,
            max_login_attempts: limits::MAX_AUTH_ATTEMPTS as u32,
            trusted_proxies: trusted_proxies.clone(),
        };
        Arc::new(FtpService::new(settings, core.clone(), tls.clone(), activity.clone()))
    });
    for (_, l) in &bound {
        if l.kind().plain_ftp() {
            tracing::warn!(listener = %l.local_addr(), "plain FTP is on: user names and passwords on this listener may cross the network in clear text");
        }
    }

    // What we serve, on stdout, for the person who started us (and for scripts: one fact per line).
    println!("Ferry {} is serving", env!("CARGO_PKG_VERSION"));
    for (protocols, l) in &bound {
        for p in protocols {
            println!("listening {p} on {}", l.local_addr());
        }
    }
    for (algo, fp) in &described {
        println!("host key {algo} {fp}");
    }
    if let Some(tls) = &tls {
        let info = tls.info();
        let kind = if info.self_signed { "self-signed, generated" } else { "from the config" };
        println!("tls certificate SHA256 {} ({kind}: {})", info.sha256, tls.paths().cert.display());
        println!("passive ports {}", config.server.passive_ports);
    }
    if let Some(pw) = &demo_password {
        println!("demo password: {pw}");
        println!("  (user demo was created because the user store was empty; this password is shown only once)");
    }
    if let Some((_, l)) = bound.iter().find(|(p, _)| p.contains(&Protocol::Sftp)) {
        let addr = l.local_addr();
        let host = if addr.ip().is_unspecified() { "127.0.0.1".to_string() } else { addr.ip().to_string() };
        let host = if host.contains(':') { format!("[{host}]") } else { host };
        println!("connect: sftp -P {} {login_user}@{host}", addr.port());
    }
    // Signal handlers go in before `ready`: a script that sends SIGHUP or SIGTERM as soon as it reads the
    // line must find them (the default action of both is to kill the process).
    let signals = Signals::install()?;
    println!("ready");

    let directory = Directory(
        bound.iter().flat_map(|(protocols, l)| protocols.iter().map(move |p| (*p, l.local_addr()))).collect(),
    );
    let services = Arc::new(Services {
        ssh,
        ftp,
        directory,
        detect_wait: config.server.detection_wait,
        ssh_wait: limits::SSH_AFTER_GREETING_WAIT,
        defender: core.defender().clone(),
        activity,
        trusted_proxies,
    });
    // Reloading and renewing run until shutdown begins, as the accept loops do.
    let mut housekeeping = JoinSet::new();
    housekeeping.spawn(reload_on_hangup(signals.hangup, tls.clone(), xferlog.clone()));
    housekeeping.spawn(renew_certificate_daily(tls.clone()));
    let shutdown = async move {
        shutdown_signal(signals.terminate, signals.interrupt).await;
        housekeeping.abort_all();
    };
    let listeners = bound.into_iter().map(|(_, l)| l).collect();
    ferry_server::run(listeners, services, gate, shutdown, config.server.shutdown_grace).await;
    Ok(())
}

struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals, CliError> {
        use tokio::signal::unix::{signal, SignalKind};
        let watch = |kind: SignalKind, name: &str| {
            signal(kind).map_err(|e| CliError::runtime(format!("cannot watch {name}: {e}")))
        };
        Ok(Signals {
            terminate: watch(SignalKind::terminate(), "SIGTERM")?,
            interrupt: watch(SignalKind::interrupt(), "SIGINT")?,
            hangup: watch(SignalKind::hangup(), "SIGHUP")?,
        })
    }
}

async fn shutdown_signal(mut terminate: tokio::signal::unix::Signal, mut interrupt: tokio::signal::unix::Signal) {
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
}

/// A generated certificate is made again when fewer than 30 days remain, at start and then once a day,
/// so a server that runs for a year never serves an expired one.
async fn renew_certificate_daily(tls: Option<Arc<TlsStore>>) {
    let Some(tls) = tls else { return };
    loop {
        tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
        match tls.renew_if_due() {
            Ok(Some(info)) => {
                let path = tls.paths().cert.display();
                println!("tls certificate SHA256 {} (self-signed, renewed: {path})", info.sha256)
            }
            Ok(None) => {}
            Err(e) => tracing::error!("renewing the TLS certificate failed, keeping the current one: {e}"),
        }
    }
}

/// The transfer log of `[log] xferlog`, opened for appending before any client connects.
fn open_xferlog(config: &Config) -> Result<Option<Arc<Xferlog>>, CliError> {
    let Some(path) = &config.log.xferlog else { return Ok(None) };
    let log = Xferlog::open(path).map_err(|e| {
        CliError::runtime(format!("cannot open the transfer log {}: {e}", path.display()))
            .with_hint("its directory must exist and be writable by the user Ferry runs as; or remove [log] xferlog")
    })?;
    Ok(Some(Arc::new(log)))
}

/// `kill -HUP` reloads the FTPS certificate (new connections get the new one, open sessions keep theirs)
/// and reopens the transfer log (after logrotate moved it away).
async fn reload_on_hangup(
    mut hangup: tokio::signal::unix::Signal,
    tls: Option<Arc<TlsStore>>,
    xferlog: Option<Arc<Xferlog>>,
) {
    while hangup.recv().await.is_some() {
        match &tls {
            None if xferlog.is_none() => {
                tracing::info!("SIGHUP: nothing to reload (no FTPS listener, so no certificate)")
            }
            None => {}
            Some(tls) => match tls.reload() {
                Ok(info) => tracing::info!(sha256 = %info.sha256, "reloaded the TLS certificate"),
                Err(e) => tracing::error!("TLS certificate reload failed, keeping the previous one: {e}"),
            },
        }
        if let Some(log) = &xferlog {
            match log.reopen() {
                Ok(()) => tracing::info!(path = %log.path().display(), "reopened the transfer log"),
                Err(e) => tracing::error!(
                    "reopening the transfer log {} failed, still writing to the previous file: {e}",
                    log.path().display()
                ),
            }
        }
    }
}
