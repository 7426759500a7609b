//! Turning credentials into a [`Session`], the same way for every protocol.

use std::sync::Arc;

use ferry_auth::{PasswordCheck, User, UserStore};
use ferry_vfs::Storage;
use russh::keys::PublicKey;

use crate::account::refusal;
use crate::defender::{Defender, Offence};
use crate::event::{Event, Events, Who};
use crate::gate::GatedVfs;
use crate::permissions::Rules;
use crate::quota::{Limits, Quota, Tracker};
use crate::registry::Registry;
use crate::session::{Client, Session};

/// Why a login did not give a session. Each failure is already on the event stream when this returns;
/// the protocol answers in its own terms (and applies its own delay and attempt count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    /// Wrong user name or credentials (the two are never told apart).
    Refused,
    /// Too many password checks waiting: refused unchecked.
    Busy,
    /// The user store cannot be read now.
    StoreUnavailable,
    /// The user's home cannot be opened (missing, unreadable, or reached through a symlink).
    HomeUnavailable,
    /// A limit refused the session (the user has all the sessions they may have); the text is for the
    /// client.
    Limit(String),
}

pub type PasswordLogin = Result<Session, LoginError>;
pub type KeyLogin = Result<Session, LoginError>;

/// The server's shared state for logins: users, storage, events.
pub struct Core {
    store: Arc<UserStore>,
    storage: Arc<dyn Storage>,
    events: Arc<Events>,
    registry: Arc<Registry>,
    defender: Arc<Defender>,
    /// `[limits] max_sessions_per_user`, for users without their own (0: no limit).
    max_sessions_per_user: std::sync::atomic::AtomicUsize,
    /// Backends users may choose by name (`ferry user set NAME --storage s3`); `storage` serves the others.
    backends: std::sync::RwLock<std::collections::HashMap<String, Arc<dyn Storage>>>,
    /// What each user with a quota has stored, counted once and then kept up to date by the gate.
    usage: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::OnceCell<Arc<Tracker>>>>>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core").finish_non_exhaustive()
    }
}

fn who(user: &str, client: &Client) -> Who {
    Who { user: user.to_string(), client: client.addr.clone(), protocol: client.protocol }
}

impl Core {
    /// A core without a defender (nobody is ever banned): for tests and tools.
    pub fn new(store: Arc<UserStore>, storage: Arc<dyn Storage>, events: Arc<Events>) -> Arc<Core> {
        let off = ferry_config::DefenderConfig { enabled: false, ..Default::default() };
        Core::with_defender(store, storage, events, off)
    }

    /// A core whose defender follows `defender` (`[defender]`); the bans saved in the store apply at once.
    pub fn with_defender(
        store: Arc<UserStore>,
        storage: Arc<dyn Storage>,
        events: Arc<Events>,
        defender: ferry_config::DefenderConfig,
    ) -> Arc<Core> {
        let defender = Defender::new(defender, store.clone(), events.clone());
        defender.reload();
        Arc::new(Core {
            store,
            storage,
            events,
            registry: Arc::default(),
            defender,
            max_sessions_per_user: 0.into(),
            backends: Default::default(),
            usage: Default::default(),
        })
    }

    /// Makes a backend available to users who choose it by `name` (`local`, `s3`).
    pub fn add_backend(&self, name: &str, storage: Arc<dyn Storage>) {
        self.backends.write().unwrap_or_else(|p| p.into_inner()).insert(name.to_string(), storage);
    }

    /// The storage of `user`: the backend they chose, or the server's default.
    fn storage_of(&self, user: &User) -> std::io::Result<Arc<dyn Storage>> {
        match user.storage.as_deref() {
            None => Ok(self.storage.clone()),
            Some(name) => self.backends.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned().ok_or_else(|| {
                std::io::Error::other(format!(
                    "the user's storage is {name:?}, which this server does not have configured ([storage] in the config)"
                ))
            }),
        }
    }

    /// Sessions a user without a limit of their own may have at once (0: no limit).
    pub fn set_max_sessions_per_user(&self, n: usize) {
        self.max_sessions_per_user.store(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// Ends live sessions whose account changes no longer allow them, and picks up bans made or lifted
    /// by `ferry ban`; run it for the server's lifetime.
    pub async fn watch_accounts(self: Arc<Self>) {
        let me = self.clone();
        self.registry
            .clone()
            .watch(self.store.clone(), move || {
                me.defender.reload();
                me.reload_quota_usage();
            })
            .await
    }

    /// Takes the quota counts from the user database (blocking): what other nodes changed arrives here.
    fn reload_quota_usage(&self) {
        let trackers: Vec<(String, Arc<Tracker>)> = {
            let usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
            usage.iter().filter_map(|(name, cell)| cell.get().map(|t| (name.clone(), t.clone()))).collect()
        };
        for (name, tracker) in trackers {
            match self.store.quota_usage(&name) {
                Ok(Some((bytes, files))) => tracker.set_used(ferry_vfs::Usage { bytes, files }),
                Ok(None) => {}
                Err(e) => tracing::warn!(user = %name, "cannot read the quota usage from the user database: {e}"),
            }
        }
    }

    pub fn defender(&self) -> &Arc<Defender> {
        &self.defender
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn events(&self) -> &Arc<Events> {
        &self.events
    }

    /// Records a failed login the protocol decided on itself (a refused signature algorithm, too many
    /// attempts).
    pub fn login_failed(&self, user: &str, client: &Client, method: Option<&'static str>, why: &str) {
        self.events.emit(Event::LoginFailed { who: who(user, client), method, why: why.to_string() });
    }

    /// A login the credentials or the account refused: logged, and scored by the defender (failures of
    /// the server itself, such as an unavailable store, are not the client's doing and are not scored).
    fn refused(&self, user: &str, client: &Client, method: Option<&'static str>, why: &str) {
        self.login_failed(user, client, method, why);
        self.defender.record(client.ip, Offence::FailedLogin);
    }

    /// A password login.
    pub async fn password_login(&self, user: &str, password: &str, client: &Client) -> PasswordLogin {
        let method = (client.protocol == "sftp").then_some("password");
        let found = match ferry_auth::check_password(&self.store, user, password).await {
            Ok(PasswordCheck::Ok(found)) => found,
            Ok(PasswordCheck::Wrong) => {
                self.refused(user, client, method, "wrong user name or password");
                return Err(LoginError::Refused);
            }
            Ok(PasswordCheck::Busy) => {
                self.login_failed(
                    user,
                    client,
                    method,
                    "refused unchecked: too many password checks waiting (a flood of logins?)",
                );
                return Err(LoginError::Busy);
            }
            Err(e) => {
                tracing::error!("user store: {e}");
                self.login_failed(user, client, method, "user store unavailable");
                return Err(LoginError::StoreUnavailable);
            }
        };
        self.start(found, client, method).await
    }

    /// Whether `key` is one of `user`'s keys (SSH's query before a signature; not a login yet).
    pub async fn key_known(&self, user: &str, key: &PublicKey) -> bool {
        self.find_key(user, key).await.is_some()
    }

    /// A public-key login whose signature the SSH layer has verified.
    pub async fn key_login(&self, user: &str, key: &PublicKey, client: &Client) -> KeyLogin {
        match self.find_key(user, key).await {
            Some(found) => self.start(found, client, Some("publickey")).await,
            None => {
                self.refused(user, client, Some("publickey"), "key not authorised for this user");
                Err(LoginError::Refused)
            }
        }
    }

    async fn find_key(&self, user: &str, key: &PublicKey) -> Option<User> {
        let store = self.store.clone();
        let (user, key) = (user.to_string(), key.clone());
        match tokio::task::spawn_blocking(move || store.check_key(&user, &key)).await {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                tracing::error!("user store: {e}");
                None
            }
            Err(e) => {
                tracing::error!("key check task failed: {e}");
                None
            }
        }
    }

    /// The user's quota with their current usage: the tree is walked at their first login with a quota
    /// since the server started (one walk even when several sessions start at once), then kept by the gate.
    async fn quota(&self, user: &User) -> std::io::Result<Option<Quota>> {
        if user.quota_bytes.is_none() && user.quota_files.is_none() {
            return Ok(None);
        }
        let limits = Limits { bytes: user.quota_bytes, files: user.quota_files };
        // One cell per user: a walk of one user's tree never holds up another user's login.
        let cell = {
            let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
            usage.entry(user.name.clone()).or_default().clone()
        };
        let tracker = cell
            .get_or_try_init(|| async {
                let (storage, home, name) = (self.storage_of(user)?, user.home.clone(), user.name.clone());
                let used = tokio::task::spawn_blocking(move || storage.usage(&name, &home))
                    .await
                    .map_err(std::io::Error::other)??;
                tracing::info!(user = %user.name, bytes = used.bytes, files = used.files, "quota: measured the user's files");
                // The count goes to the user database, and every change after it: nodes that share the
                // database share the count (each node re-reads it when the database changes).
                let (store, name) = (self.store.clone(), user.name.clone());
                let recorded = tokio::task::spawn_blocking(move || store.set_quota_usage(&name, used.bytes, used.files)).await;
                if let Ok(Err(e)) = recorded {
                    tracing::warn!(user = %user.name, "cannot record the quota usage in the user database: {e}");
                }
                let (store, name) = (self.store.clone(), user.name.clone());
                let sink: crate::quota::Sink = Box::new(move |bytes, files| {
                    let (store, name) = (store.clone(), name.clone());
                    let add = move || {
                        if let Err(e) = store.add_quota_usage(&name, bytes, files) {
                            tracing::warn!(user = %name, "cannot update the quota usage in the user database: {e}");
                        }
                    };
                    match tokio::runtime::Handle::try_current() {
                        Ok(rt) => drop(rt.spawn_blocking(add)),
                        Err(_) => add(),
                    }
                });
                Ok::<_, std::io::Error>(Arc::new(Tracker::with_sink(used, sink)))
            })
            .await?
            .clone();
        Ok(Some(Quota { limits, tracker }))
    }

    /// Checks the account policy, opens the user's storage behind the gate and starts the session.
    async fn start(&self, user: User, client: &Client, method: Option<&'static str>) -> Result<Session, LoginError> {
        if let Some(why) = refusal(&user, client.ip, client.protocol) {
            self.refused(&user.name, client, method, &why);
            return Err(LoginError::Refused);
        }
        let storage = match self.storage_of(&user) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(user = %user.name, "cannot open the user's storage: {e}");
                self.login_failed(&user.name, client, method, "storage unavailable");
                return Err(LoginError::HomeUnavailable);
            }
        };
        let store = self.store.clone();
        let (home, name) = (user.home.clone(), user.name.clone());
        let opened = tokio::task::spawn_blocking(move || {
            let rules = match store.permissions(&name) {
                Ok(stored) => Ok(Rules::from_stored(&name, &stored)),
                Err(e) => Err(std::io::Error::other(format!("reading the permission rules: {e}"))),
            };
            rules.and_then(|rules| storage.open_home(&name, &home).map(|vfs| (vfs, rules)))
        })
        .await;
        let (vfs, rules) = match opened {
            Ok(Ok(opened)) => opened,
            Ok(Err(e)) => {
                tracing::error!(user = %user.name, home = %user.home.display(), "cannot open the user's home directory: {e}");
                self.login_failed(&user.name, client, method, "home directory unavailable");
                return Err(LoginError::HomeUnavailable);
            }
            Err(e) => {
                tracing::error!("home open task failed: {e}");
                return Err(LoginError::HomeUnavailable);
            }
        };
        let who = who(&user.name, client);
        let max = match user.max_sessions {
            Some(n) => n as usize,
            None => self.max_sessions_per_user.load(std::sync::atomic::Ordering::Relaxed),
        };
        let membership = match self.registry.join(&user.name, client.ip, client.protocol, user.credentials, max) {
            Ok(m) => m,
            Err(has) => {
                self.events.emit(Event::LimitHit {
                    who,
                    why: format!("the user has {has} sessions, the most allowed (max_sessions {max})"),
                });
                return Err(LoginError::Limit(format!(
                    "Too many sessions for {}: {max} at once; close one and try again",
                    user.name
                )));
            }
        };
        self.events.emit(Event::Login { who: who.clone(), method });
        let quota = match self.quota(&user).await {
            Ok(q) => q,
            Err(e) => {
                tracing::error!(user = %user.name, home = %user.home.display(), "cannot measure the user's files for their quota: {e}");
                self.login_failed(&user.name, client, method, "quota usage unavailable");
                return Err(LoginError::HomeUnavailable);
            }
        };
        let gated = GatedVfs::new(vfs, who.clone(), self.events.clone(), rules)
            .with_rates(user.upload_rate, user.download_rate)
            .with_quota(quota);
        let gated: Arc<dyn ferry_vfs::Vfs> = Arc::new(gated);
        Ok(Session::new(who, gated, self.events.clone(), membership))
    }
}
