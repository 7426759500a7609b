//! The login phase: which commands exist before AUTH TLS, USER and PASS, and what the answers are.
//!
//! As in vsftpd, dispatch depends on the phase: before login only USER PASS AUTH PBSZ PROT FEAT OPTS SYST
//! HELP NOOP QUIT STAT exist; everything else is answered 530. On a TLS listener, USER and PASS are
//! refused until the control connection is encrypted, so a password never crosses the network in clear.

use super::command::Command;
use super::reply::Reply;

/// How a listener speaks FTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FtpMode {
    /// Greeting in clear; the client must AUTH TLS before USER/PASS.
    Explicit,
    /// TLS from the first byte, then the greeting inside TLS.
    Implicit,
    /// Plain FTP allowed (the admin opted in): USER/PASS accepted without TLS; AUTH TLS still offered.
    Plain,
}

/// What the session does with a command in the current phase.
#[derive(Debug, PartialEq, Eq)]
pub enum Gate {
    Allow,
    Refuse(Reply),
}

/// After PASS: check these credentials, or answer at once.
#[derive(Debug, PartialEq, Eq)]
pub enum PassStep {
    Check { user: String },
    Reply(Reply),
}

/// After a failed password check: the reply, and whether to close the connection after it.
#[derive(Debug, PartialEq, Eq)]
pub struct Failure {
    pub reply: Reply,
    pub close: bool,
}

#[derive(Debug)]
pub struct LoginState {
    mode: FtpMode,
    tls: bool,
    pending_user: Option<String>,
    logged_in: bool,
    failures: u32,
    max_attempts: u32,
}

impl LoginState {
    pub fn new(mode: FtpMode, max_attempts: u32) -> LoginState {
        LoginState {
            mode,
            tls: mode == FtpMode::Implicit,
            pending_user: None,
            logged_in: false,
            failures: 0,
            max_attempts: max_attempts.max(1),
        }
    }

    pub fn mode(&self) -> FtpMode {
        self.mode
    }

    pub fn tls(&self) -> bool {
        self.tls
    }

    pub fn logged_in(&self) -> bool {
        self.logged_in
    }

    /// The control connection finished its TLS handshake after AUTH TLS.
    pub fn tls_started(&mut self) {
        self.tls = true;
        // RFC 4217 section 4: after AUTH the user must log in (again) inside TLS.
        self.pending_user = None;
    }

    /// Whether `cmd` may run now; if not, the reply that says why.
    pub fn gate(&self, cmd: &Command) -> Gate {
        use Command as C;
        let refuse = |code, text: &str| Gate::Refuse(Reply::new(code, text));
        match cmd {
            C::Auth(_) if self.tls => refuse(503, "TLS is already active on this connection"),
            C::Auth(_) if self.logged_in => refuse(503, "AUTH TLS must come before USER and PASS"),
            C::Pbsz | C::Prot(_) if !self.tls => {
                refuse(503, "PBSZ and PROT need an encrypted control connection: send AUTH TLS first")
            }
            C::User(_) | C::Pass(_) if !self.tls && self.mode != FtpMode::Plain => {
                refuse(530, "Refused: send AUTH TLS first (this server does not accept passwords in clear text)")
            }
            C::User(_) if self.logged_in => refuse(530, "Already logged in; cannot change to another user"),
            C::Pass(_) if self.logged_in => refuse(230, "Already logged in"),
            C::User(_)
            | C::Pass(_)
            | C::Auth(_)
            | C::Pbsz
            | C::Prot(_)
            | C::Feat
            | C::Opts(_)
            | C::Syst
            | C::Help
            | C::Noop
            | C::Quit
            | C::Stat(None) => Gate::Allow,
            _ if !self.logged_in => refuse(530, "Please log in with USER and PASS first"),
            C::Ccc if !self.tls => refuse(503, "The control connection is not encrypted"),
            _ => Gate::Allow,
        }
    }

    /// USER: always asks for the password, whether or not the name exists, so that names cannot be probed.
    pub fn user(&mut self, name: String) -> Reply {
        self.pending_user = Some(name);
        Reply::new(331, "Please specify the password")
    }

    pub fn pass(&mut self) -> PassStep {
        match self.pending_user.take() {
            Some(user) => PassStep::Check { user },
            None => PassStep::Reply(Reply::new(503, "Send USER first, then PASS")),
        }
    }

    pub fn succeeded(&mut self) -> Reply {
        self.logged_in = true;
        Reply::new(230, "Login successful")
    }

    pub fn failed(&mut self) -> Failure {
        self.failures += 1;
        if self.failures >= self.max_attempts {
            Failure { reply: Reply::new(421, "Too many failed login attempts; closing the connection"), close: true }
        } else {
            Failure { reply: Reply::new(530, "Login incorrect"), close: false }
        }
    }

    /// How many failed attempts so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(g: Gate) -> u16 {
        match g {
            Gate::Allow => 0,
            Gate::Refuse(r) => r.code,
        }
    }

    fn c(line: &[u8]) -> Command {
        Command::parse(line).expect("test command parses")
    }

    #[test]
    fn explicit_needs_tls_before_user() {
        let mut s = LoginState::new(FtpMode::Explicit, 3);
        assert_eq!(code(s.gate(&c(b"USER a"))), 530);
        assert_eq!(code(s.gate(&c(b"PASS a"))), 530);
        assert_eq!(code(s.gate(&c(b"PBSZ 0"))), 503);
        assert_eq!(code(s.gate(&c(b"FEAT"))), 0);
        assert_eq!(code(s.gate(&c(b"AUTH TLS"))), 0);
        assert_eq!(code(s.gate(&c(b"LIST"))), 530);
        assert_eq!(code(s.gate(&c(b"STAT x"))), 530);
        assert_eq!(code(s.gate(&c(b"BOGUS"))), 530);
        s.tls_started();
        assert_eq!(code(s.gate(&c(b"AUTH TLS"))), 503);
        assert_eq!(code(s.gate(&c(b"USER a"))), 0);
        assert_eq!(code(s.gate(&c(b"PROT P"))), 0, "PROT before PBSZ is accepted");
        assert_eq!(code(s.gate(&c(b"RETR f"))), 530);
    }

    #[test]
    fn implicit_starts_encrypted() {
        let s = LoginState::new(FtpMode::Implicit, 3);
        assert!(s.tls());
        assert_eq!(code(s.gate(&c(b"USER a"))), 0);
    }

    #[test]
    fn plain_allows_clear_login_and_still_offers_tls() {
        let mut s = LoginState::new(FtpMode::Plain, 3);
        assert_eq!(code(s.gate(&c(b"USER a"))), 0);
        assert_eq!(code(s.gate(&c(b"AUTH TLS"))), 0);
        let _ = s.user("a".into());
        assert_eq!(s.pass(), PassStep::Check { user: "a".into() });
        let _ = s.succeeded();
        assert_eq!(code(s.gate(&c(b"AUTH TLS"))), 503);
        assert_eq!(code(s.gate(&c(b"CCC"))), 503);
        assert_eq!(code(s.gate(&c(b"RETR f"))), 0);
        assert_eq!(code(s.gate(&c(b"USER b"))), 530);
        assert!(matches!(s.gate(&c(b"PASS x")), Gate::Refuse(r) if r.to_bytes() == b"230 Already logged in\r\n"));
    }

    #[test]
    fn pass_without_user() {
        let mut s = LoginState::new(FtpMode::Implicit, 3);
        assert!(matches!(s.pass(), PassStep::Reply(r) if r.code == 503));
        let _ = s.user("bob".into());
        assert_eq!(s.pass(), PassStep::Check { user: "bob".into() });
        assert!(matches!(s.pass(), PassStep::Reply(r) if r.code == 503), "USER is consumed by PASS");
    }

    #[test]
    fn attempts_run_out() {
        let mut s = LoginState::new(FtpMode::Implicit, 2);
        assert_eq!(s.failed(), Failure { reply: Reply::new(530, "Login incorrect"), close: false });
        let f = s.failed();
        assert_eq!((f.reply.code, f.close), (421, true));
        assert_eq!(s.failures(), 2);
    }
}
