//! `ferry serve`: settle the configuration, bind every listener, accept connections, and on SIGTERM or
//! Ctrl-C stop accepting and let running transfers finish within the grace period.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferry_auth::{generate_password, UserStore};
use ferry_config::{limits, Config, ListenerSpec, PortRange, Protocol, SpecError};
use ferry_sftp::{Activity, SshService, SshSettings};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::bootstrap::{self, create_home, default_home, open_store};
use crate::cli::{GlobalArgs, ServeArgs};
use crate::{hostkeys, logging, CliError};

/// Applies the command line's overrides to the configuration and checks that this build can serve it.
fn settle(mut config: Config, args: &ServeArgs) -> Result<Config, CliError> {
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
        if let Some(p) = l.protocols.iter().find(|p| !p.is_built()) {
            return Err(CliError::usage(
                format!("listener {l}: {p} is not available in this version of Ferry yet; only sftp is"),
                format!("serve SFTP on that address with --listen sftp={}", l.addr),
            ));
        }
    }
    Ok(config)
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
                ListenerSpec { protocols: spec.protocols.clone(), addr: SocketAddr::new(spec.addr.ip(), 0) }
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

pub fn run(global: &GlobalArgs, args: &ServeArgs) -> Result<(), CliError> {
    let env = bootstrap::load(global)?;
    logging::init(&env.config.log.level);
    let config = settle(env.config, args)?;
    let store = Arc::new(open_store(&env.data_dir)?);
    let demo_password = ensure_demo_user(&store, &env.data_dir)?;
    let keys = hostkeys::load_or_generate(&env.data_dir, &config.sftp.host_keys)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::runtime(format!("cannot start the async runtime: {e}")))?;
    let result = runtime.block_on(serve(config, store, keys, demo_password));
    // Blocking file operations of cut-off sessions must not hold up the exit.
    runtime.shutdown_timeout(Duration::from_secs(2));
    result
}

async fn serve(
    config: Config,
    store: Arc<UserStore>,
    keys: Vec<(russh::keys::PrivateKey, std::path::PathBuf)>,
    demo_password: Option<String>,
) -> Result<(), CliError> {
    let mut bound = Vec::new();
    for spec in &config.server.listeners {
        let listener = bind(spec).await?;
        let addr = listener.local_addr().map_err(|e| CliError::runtime(format!("listener address: {e}")))?;
        bound.push((spec.protocols.clone(), listener, addr));
    }

    let activity = Arc::new(Activity::default());
    let settings = SshSettings {
        window_size: limits::SSH_WINDOW_SIZE,
        max_packet_size: limits::SSH_MAX_PACKET_SIZE,
        idle_timeout: limits::IDLE_TIMEOUT,
        max_auth_attempts: limits::MAX_AUTH_ATTEMPTS,
        failed_login_delay: limits::FAILED_LOGIN_DELAY,
        login_timeout: limits::LOGIN_TIMEOUT,
    };
    // Show the demo user in the example command only while it exists.
    let login_user = match store.get("demo") {
        Ok(Some(_)) => "demo",
        _ => "USER",
    };
    let described: Vec<_> = keys.iter().map(|(k, _)| hostkeys::describe(k)).collect();
    let ssh = Arc::new(SshService::new(keys.into_iter().map(|(k, _)| k).collect(), store, activity.clone(), &settings));

    // What we serve, on stdout, for the person who started us (and for scripts: one fact per line).
    println!("Ferry {} is serving", env!("CARGO_PKG_VERSION"));
    for (protocols, _, addr) in &bound {
        for p in protocols {
            println!("listening {p} on {addr}");
        }
    }
    for (algo, fp) in &described {
        println!("host key {algo} {fp}");
    }
    if let Some(pw) = &demo_password {
        println!("demo password: {pw}");
        println!("  (user demo was created because the user store was empty; this password is shown only once)");
    }
    if let Some((_, _, addr)) = bound.iter().find(|(p, _, _)| p.contains(&Protocol::Sftp)) {
        let host = if addr.ip().is_unspecified() { "127.0.0.1".to_string() } else { addr.ip().to_string() };
        let host = if host.contains(':') { format!("[{host}]") } else { host };
        println!("connect: sftp -P {} {login_user}@{host}", addr.port());
    }
    println!("ready");

    let connections = Arc::new(Semaphore::new(limits::MAX_CONNECTIONS));
    let mut accepts = JoinSet::new();
    for (_protocols, listener, addr) in bound {
        let ssh = ssh.clone();
        let connections = connections.clone();
        accepts.spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and the like: pause instead of spinning.
                        tracing::warn!(listener = %addr, "accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(permit) = connections.clone().try_acquire_owned() else {
                    tracing::warn!(client = %peer, "hint: refusing connection: {} connections already open", limits::MAX_CONNECTIONS);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let ssh = ssh.clone();
                tokio::spawn(async move {
                    ssh.serve_connection(stream, peer).await;
                    drop(permit);
                });
            }
        });
    }

    shutdown_signal().await;
    accepts.abort_all();
    let open = activity.open_files();
    let grace = config.server.shutdown_grace;
    if open > 0 {
        tracing::info!(
            "shutting down: no new connections; waiting up to {}s for {open} open transfer(s)",
            grace.as_secs()
        );
        if tokio::time::timeout(grace, activity.idle()).await.is_err() {
            tracing::warn!("grace period over: closing {} transfer(s) still running", activity.open_files());
        }
    } else {
        tracing::info!("shutting down: no transfer running");
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!("cannot watch SIGTERM ({e}); stop with Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
