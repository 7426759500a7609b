//! Logging in: PASS checked against the user store, the user's filesystem opened, failed attempts slowed
//! down and counted; and AUTH TLS, which turns the control connection into a TLS connection.

use ferry_core::{Client, LoginError};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::proto::{AuthMech, PassStep, ProtLevel, Reply};
use crate::session::{Flow, Session};
use crate::stream::Control;
use crate::tls::accept_control;

impl<S> Session<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    pub(crate) async fn pass(&mut self, password: String) -> Flow {
        let user = match self.login.pass() {
            PassStep::Reply(r) => return self.send(r).await,
            PassStep::Check { user } => user,
        };
        let client = Client { addr: self.client.clone(), ip: self.peer.ip(), protocol: self.protocol() };
        let session = match self.svc.core.password_login(&user, &password, &client).await {
            Ok(session) => session,
            Err(LoginError::HomeUnavailable) => {
                let _ = self.reply(Reply::new(421, "Server error: your home directory is not available")).await;
                return Flow::Close;
            }
            Err(LoginError::Limit(text)) => {
                let _ = self.reply(Reply::new(421, text)).await;
                return Flow::Close;
            }
            Err(LoginError::StoreUnavailable) => {
                let _ =
                    self.reply(Reply::new(421, "Server error: the user store is not available; try again later")).await;
                return Flow::Close;
            }
            Err(_) => return self.login_failed().await,
        };
        self.admission.logged_in();
        self.svc.sessions.logged_in(&self.tls_id, session.user());
        self.user = Some(session);
        let r = self.login.succeeded();
        self.send(r).await
    }

    /// After a failed login (already on the event stream): the delay, the count, the reply.
    async fn login_failed(&mut self) -> Flow {
        tokio::time::sleep(self.svc.settings.failed_login_delay).await;
        let f = self.login.failed();
        if f.close {
            tracing::warn!(client = %self.client, attempts = self.login.failures(), "closing connection: too many failed logins");
            let _ = self.reply(f.reply).await;
            return Flow::Close;
        }
        self.send(f.reply).await
    }

    pub(crate) async fn auth(&mut self, mech: AuthMech) -> Flow {
        let plain = match self.ctl.take() {
            Some(Control::Plain(s)) => s,
            other => {
                self.ctl = other;
                return self.send(Reply::new(503, "TLS is already active on this connection")).await;
            }
        };
        self.ctl = Some(Control::Plain(plain));
        if self.reply(Reply::new(234, "Proceed with TLS negotiation")).await.is_err() {
            return Flow::Close;
        }
        let Some(Control::Plain(plain)) = self.ctl.take() else {
            return Flow::Close;
        };
        if !self.lines.is_empty() {
            // RFC 4217: the client waits for 234. Anything already sent was sent in clear text and must not
            // be taken as a command of the encrypted session (the STARTTLS command injection attack).
            tracing::info!(client = %self.client, "discarding clear-text bytes sent after AUTH TLS before the handshake");
        }
        self.lines.clear();
        // AUTH TLS comes before login, so the login deadline bounds the handshake too.
        let handshake = accept_control(self.svc.tls.config(), plain, &self.tls_id);
        let Ok(done) = tokio::time::timeout_at(self.admission.deadline(), handshake).await else {
            tracing::info!(client = %self.client, "closing connection: no login within {}s (TLS handshake unfinished)", self.admission.grace().as_secs());
            return Flow::Close;
        };
        match done {
            Ok(tls) => {
                self.ctl = Some(Control::Tls(Box::new(tls)));
                self.login.tls_started();
                if matches!(mech, AuthMech::Ssl | AuthMech::TlsP) {
                    self.prot = ProtLevel::Private;
                }
                Flow::Continue
            }
            Err(e) => {
                tracing::info!(client = %self.client, "TLS handshake on the control connection failed: {e}");
                Flow::Close
            }
        }
    }
}
