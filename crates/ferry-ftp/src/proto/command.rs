//! FTP commands parsed from one line (RFC 959, 2228, 2389, 2428, 3659, 4217).
//!
//! The verb is case-insensitive and ends at the first space; everything after that one space is the
//! argument, kept as bytes (path names need not be UTF-8, and may start or end with spaces). An unknown
//! verb is a value ([`Command::Unknown`]); a known verb with a bad argument is a [`ParseError`], which
//! knows its reply.

use std::net::SocketAddr;

use super::addr::{parse_eprt, parse_epsv, parse_port, AddrError, EpsvArg};
use super::listing::Facts;
use super::reply::Reply;
use super::time::parse_timeval;

/// TYPE: ASCII and image are both served byte for byte (see `crate::transfer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferType {
    Ascii,
    Image,
}

/// AUTH mechanisms of RFC 4217 and the drafts before it. `Ssl` and `TlsP` imply PROT P.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMech {
    Tls,
    TlsC,
    Ssl,
    TlsP,
}

/// PROT levels Ferry serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtLevel {
    Clear,
    Private,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptsArg {
    /// `OPTS UTF8 ON` (or OFF: Ferry always speaks UTF-8 and says so).
    Utf8,
    /// `OPTS MLST fact;fact;`
    Mlst(Facts),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteCmd {
    Chmod { mode: u32, path: Vec<u8> },
    Help,
}

/// One parsed command. Path arguments are raw bytes, resolved later against the working directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    User(String),
    /// The password; never logged.
    Pass(String),
    Acct,
    Quit,
    Syst,
    Feat,
    Opts(OptsArg),
    Help,
    Noop,
    Stat(Option<Vec<u8>>),
    Site(SiteCmd),
    Pwd,
    Cwd(Vec<u8>),
    Cdup,
    Type(TransferType),
    Mode,
    Stru,
    Allo,
    Pasv,
    Epsv(EpsvArg),
    Port(SocketAddr),
    Eprt(SocketAddr),
    List(Option<Vec<u8>>),
    Nlst(Option<Vec<u8>>),
    Mlsd(Option<Vec<u8>>),
    Mlst(Option<Vec<u8>>),
    Retr(Vec<u8>),
    Stor(Vec<u8>),
    Appe(Vec<u8>),
    Stou(Option<Vec<u8>>),
    Rest(u64),
    Size(Vec<u8>),
    Mdtm(Vec<u8>),
    Mfmt {
        mtime: i64,
        path: Vec<u8>,
    },
    Dele(Vec<u8>),
    Rnfr(Vec<u8>),
    Rnto(Vec<u8>),
    Mkd(Vec<u8>),
    Rmd(Vec<u8>),
    Abor,
    Auth(AuthMech),
    Pbsz,
    Prot(ProtLevel),
    Ccc,
    /// A verb Ferry does not implement (REIN, SMNT, LPRT, ...), upper-cased and cut to a sane length.
    Unknown(String),
}

/// A known command with an argument that cannot be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// 501: the argument is missing or malformed.
    Syntax { verb: &'static str, why: String },
    /// 504: well-formed, but a parameter Ferry does not implement (TYPE E, MODE B, ...).
    Unsupported { verb: &'static str, why: String },
    /// 522: EPRT/EPSV with a protocol other than IPv4 or IPv6.
    NetworkProtocol,
    /// 536: PROT S or E.
    ProtLevel,
    /// 500: nothing on the line.
    Empty,
}

impl ParseError {
    pub fn reply(&self) -> Reply {
        match self {
            ParseError::Syntax { verb, why } => Reply::new(501, format!("{verb}: {why}")),
            ParseError::Unsupported { verb, why } => Reply::new(504, format!("{verb}: {why}")),
            ParseError::NetworkProtocol => Reply::new(522, "Network protocol not supported, use (1,2)"),
            ParseError::ProtLevel => Reply::new(536, "Only PROT P (private) and PROT C (clear) are supported"),
            ParseError::Empty => Reply::new(500, "Empty command line"),
        }
    }
}

/// Longest verb kept in [`Command::Unknown`] (and so echoed in a reply).
const MAX_VERB_ECHO: usize = 16;

fn syntax(verb: &'static str, why: impl Into<String>) -> ParseError {
    ParseError::Syntax { verb, why: why.into() }
}

fn unsupported(verb: &'static str, why: impl Into<String>) -> ParseError {
    ParseError::Unsupported { verb, why: why.into() }
}

/// The argument, if it is present and not empty.
fn opt(arg: Option<&[u8]>) -> Option<Vec<u8>> {
    arg.filter(|a| !a.is_empty()).map(<[u8]>::to_vec)
}

fn required(verb: &'static str, arg: Option<&[u8]>, what: &str) -> Result<Vec<u8>, ParseError> {
    opt(arg).ok_or_else(|| syntax(verb, format!("missing argument: {what}")))
}

fn text(verb: &'static str, arg: Option<&[u8]>, what: &str) -> Result<String, ParseError> {
    let a = required(verb, arg, what)?;
    Ok(String::from_utf8_lossy(&a).into_owned())
}

/// Words of a short keyword argument, upper-cased (TYPE, MODE, STRU, PROT, AUTH).
fn words(arg: Option<&[u8]>) -> Vec<String> {
    let a = arg.unwrap_or_default();
    String::from_utf8_lossy(a).split_ascii_whitespace().map(|w| w.to_ascii_uppercase()).collect()
}

fn addr_err(verb: &'static str, e: AddrError) -> ParseError {
    match e {
        AddrError::Syntax(why) => syntax(verb, why),
        AddrError::UnknownProtocol => ParseError::NetworkProtocol,
    }
}

/// LIST and NLST arguments may start with `ls` options (`-la`, `-a -l`), which clients send out of habit;
/// they are skipped. What remains, if anything, is the path.
fn list_arg(arg: Option<&[u8]>) -> Option<Vec<u8>> {
    let mut rest = arg?;
    loop {
        if rest.first() == Some(&b'-') {
            match rest.iter().position(|b| *b == b' ') {
                Some(i) => rest = &rest[i + 1..],
                None => return None,
            }
        } else {
            return opt(Some(rest));
        }
    }
}

fn parse_type(arg: Option<&[u8]>) -> Result<TransferType, ParseError> {
    let w = words(arg);
    let w: Vec<&str> = w.iter().map(String::as_str).collect();
    match w[..] {
        ["A"] | ["A", "N"] => Ok(TransferType::Ascii),
        ["I"] | ["L", "8"] => Ok(TransferType::Image),
        [] => Err(syntax("TYPE", "missing argument: A or I")),
        ["A" | "E", ..] | ["L", _] => Err(unsupported("TYPE", "only TYPE A, A N, I and L 8 are supported")),
        _ => Err(syntax("TYPE", "unknown type; use A or I")),
    }
}

fn parse_opts(arg: Option<&[u8]>) -> Result<OptsArg, ParseError> {
    let a = required("OPTS", arg, "an option name")?;
    let (name, value) = match a.iter().position(|b| *b == b' ') {
        Some(i) => (&a[..i], &a[i + 1..]),
        None => (&a[..], &b""[..]),
    };
    let name = name.to_ascii_uppercase();
    match &name[..] {
        b"UTF8" | b"UTF-8" => Ok(OptsArg::Utf8),
        b"MLST" => Ok(OptsArg::Mlst(Facts::select(value))),
        _ => Err(syntax("OPTS", format!("unknown option {}", String::from_utf8_lossy(&name)))),
    }
}

fn parse_site(arg: Option<&[u8]>) -> Result<Command, ParseError> {
    let a = required("SITE", arg, "a SITE command")?;
    let (sub, rest) = match a.iter().position(|b| *b == b' ') {
        Some(i) => (&a[..i], Some(&a[i + 1..])),
        None => (&a[..], None),
    };
    match &sub.to_ascii_uppercase()[..] {
        b"HELP" => Ok(Command::Site(SiteCmd::Help)),
        b"CHMOD" => {
            const USAGE: &str = "usage: SITE CHMOD <octal mode> <path>";
            let rest = rest.ok_or_else(|| syntax("SITE", USAGE))?;
            let i = rest.iter().position(|b| *b == b' ').ok_or_else(|| syntax("SITE", USAGE))?;
            let mode = std::str::from_utf8(&rest[..i])
                .ok()
                .and_then(|m| u32::from_str_radix(m, 8).ok())
                .filter(|m| *m <= 0o7777)
                .ok_or_else(|| syntax("SITE", USAGE))?;
            let path = required("SITE", Some(&rest[i + 1..]), "a path")?;
            Ok(Command::Site(SiteCmd::Chmod { mode, path }))
        }
        _ => Ok(Command::Unknown(format!("SITE {}", String::from_utf8_lossy(&sub[..sub.len().min(MAX_VERB_ECHO)])))),
    }
}

impl Command {
    /// Parses one line (without its CRLF).
    pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
        let (verb, arg) = match line.iter().position(|b| *b == b' ') {
            Some(i) => (&line[..i], Some(&line[i + 1..])),
            None => (line, None),
        };
        if verb.is_empty() {
            return Err(ParseError::Empty);
        }
        let upper = verb.to_ascii_uppercase();
        use Command as C;
        Ok(match &upper[..] {
            b"USER" => C::User(text("USER", arg, "a user name")?),
            // An empty password is a password too (it will simply not match).
            b"PASS" => C::Pass(String::from_utf8_lossy(arg.unwrap_or_default()).into_owned()),
            b"ACCT" => C::Acct,
            b"QUIT" => C::Quit,
            b"SYST" => C::Syst,
            b"FEAT" => C::Feat,
            b"OPTS" => C::Opts(parse_opts(arg)?),
            b"HELP" => C::Help,
            b"NOOP" => C::Noop,
            b"STAT" => C::Stat(list_arg(arg)),
            b"SITE" => parse_site(arg)?,
            b"PWD" | b"XPWD" => C::Pwd,
            b"CWD" | b"XCWD" => C::Cwd(required("CWD", arg, "a directory")?),
            b"CDUP" | b"XCUP" => C::Cdup,
            b"TYPE" => C::Type(parse_type(arg)?),
            b"MODE" => match &words(arg)[..] {
                [m] if m == "S" => C::Mode,
                [] => return Err(syntax("MODE", "missing argument: S")),
                _ => return Err(unsupported("MODE", "only stream mode (S) is supported")),
            },
            b"STRU" => match &words(arg)[..] {
                [s] if s == "F" => C::Stru,
                [] => return Err(syntax("STRU", "missing argument: F")),
                _ => return Err(unsupported("STRU", "only file structure (F) is supported")),
            },
            b"ALLO" => C::Allo,
            b"PASV" => C::Pasv,
            b"EPSV" => C::Epsv(parse_epsv(arg).map_err(|e| addr_err("EPSV", e))?),
            b"PORT" => {
                C::Port(parse_port(&required("PORT", arg, "h1,h2,h3,h4,p1,p2")?).map_err(|e| addr_err("PORT", e))?)
            }
            b"EPRT" => C::Eprt(
                parse_eprt(&required("EPRT", arg, "|protocol|address|port|")?).map_err(|e| addr_err("EPRT", e))?,
            ),
            b"LIST" => C::List(list_arg(arg)),
            b"NLST" => C::Nlst(list_arg(arg)),
            b"MLSD" => C::Mlsd(opt(arg)),
            b"MLST" => C::Mlst(opt(arg)),
            b"RETR" => C::Retr(required("RETR", arg, "a file name")?),
            b"STOR" => C::Stor(required("STOR", arg, "a file name")?),
            b"APPE" => C::Appe(required("APPE", arg, "a file name")?),
            b"STOU" => C::Stou(opt(arg)),
            b"REST" => {
                let a = required("REST", arg, "a byte offset")?;
                let n = std::str::from_utf8(&a)
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .filter(|n| *n <= i64::MAX as u64)
                    .ok_or_else(|| syntax("REST", "the offset must be a non-negative decimal number"))?;
                C::Rest(n)
            }
            b"SIZE" => C::Size(required("SIZE", arg, "a file name")?),
            b"MDTM" => C::Mdtm(required("MDTM", arg, "a file name")?),
            b"MFMT" => {
                const USAGE: &str = "usage: MFMT YYYYMMDDHHMMSS path";
                let a = required("MFMT", arg, "YYYYMMDDHHMMSS path")?;
                let i = a.iter().position(|b| *b == b' ').ok_or_else(|| syntax("MFMT", USAGE))?;
                let mtime =
                    parse_timeval(&a[..i]).ok_or_else(|| syntax("MFMT", "bad time; use YYYYMMDDHHMMSS (UTC)"))?;
                C::Mfmt { mtime, path: required("MFMT", Some(&a[i + 1..]), "a path")? }
            }
            b"DELE" => C::Dele(required("DELE", arg, "a file name")?),
            b"RNFR" => C::Rnfr(required("RNFR", arg, "a path")?),
            b"RNTO" => C::Rnto(required("RNTO", arg, "a path")?),
            b"MKD" | b"XMKD" => C::Mkd(required("MKD", arg, "a directory name")?),
            b"RMD" | b"XRMD" => C::Rmd(required("RMD", arg, "a directory name")?),
            b"ABOR" => C::Abor,
            b"AUTH" => match &words(arg)[..] {
                [m] if m == "TLS" => C::Auth(AuthMech::Tls),
                [m] if m == "TLS-C" => C::Auth(AuthMech::TlsC),
                [m] if m == "SSL" => C::Auth(AuthMech::Ssl),
                [m] if m == "TLS-P" => C::Auth(AuthMech::TlsP),
                [] => return Err(syntax("AUTH", "missing argument: TLS")),
                _ => return Err(unsupported("AUTH", "only AUTH TLS is supported")),
            },
            b"PBSZ" => {
                let a = required("PBSZ", arg, "0")?;
                if !a.trim_ascii().iter().all(u8::is_ascii_digit) || a.trim_ascii().is_empty() {
                    return Err(syntax("PBSZ", "the buffer size must be a decimal number (use 0)"));
                }
                C::Pbsz
            }
            b"PROT" => match &words(arg)[..] {
                [p] if p == "P" => C::Prot(ProtLevel::Private),
                [p] if p == "C" => C::Prot(ProtLevel::Clear),
                [p] if p == "S" || p == "E" => return Err(ParseError::ProtLevel),
                [] => return Err(syntax("PROT", "missing argument: P")),
                _ => return Err(unsupported("PROT", "unknown protection level; use P")),
            },
            b"CCC" => C::Ccc,
            _ => C::Unknown(String::from_utf8_lossy(&upper[..upper.len().min(MAX_VERB_ECHO)]).into_owned()),
        })
    }

    /// The verb, for logs (never the argument: PASS carries a password, paths may be private).
    pub fn verb(&self) -> &'static str {
        use Command as C;
        match self {
            C::User(_) => "USER",
            C::Pass(_) => "PASS",
            C::Acct => "ACCT",
            C::Quit => "QUIT",
            C::Syst => "SYST",
            C::Feat => "FEAT",
            C::Opts(_) => "OPTS",
            C::Help => "HELP",
            C::Noop => "NOOP",
            C::Stat(_) => "STAT",
            C::Site(_) => "SITE",
            C::Pwd => "PWD",
            C::Cwd(_) => "CWD",
            C::Cdup => "CDUP",
            C::Type(_) => "TYPE",
            C::Mode => "MODE",
            C::Stru => "STRU",
            C::Allo => "ALLO",
            C::Pasv => "PASV",
            C::Epsv(_) => "EPSV",
            C::Port(_) => "PORT",
            C::Eprt(_) => "EPRT",
            C::List(_) => "LIST",
            C::Nlst(_) => "NLST",
            C::Mlsd(_) => "MLSD",
            C::Mlst(_) => "MLST",
            C::Retr(_) => "RETR",
            C::Stor(_) => "STOR",
            C::Appe(_) => "APPE",
            C::Stou(_) => "STOU",
            C::Rest(_) => "REST",
            C::Size(_) => "SIZE",
            C::Mdtm(_) => "MDTM",
            C::Mfmt { .. } => "MFMT",
            C::Dele(_) => "DELE",
            C::Rnfr(_) => "RNFR",
            C::Rnto(_) => "RNTO",
            C::Mkd(_) => "MKD",
            C::Rmd(_) => "RMD",
            C::Abor => "ABOR",
            C::Auth(_) => "AUTH",
            C::Pbsz => "PBSZ",
            C::Prot(_) => "PROT",
            C::Ccc => "CCC",
            C::Unknown(_) => "unknown",
        }
    }
}

/// Commands listed by HELP.
pub const HELP_VERBS: &[&str] = &[
    "ABOR", "ACCT", "ALLO", "APPE", "AUTH", "CCC", "CDUP", "CWD", "DELE", "EPRT", "EPSV", "FEAT", "HELP", "LIST",
    "MDTM", "MFMT", "MKD", "MLSD", "MLST", "MODE", "NLST", "NOOP", "OPTS", "PASS", "PASV", "PBSZ", "PORT", "PROT",
    "PWD", "QUIT", "REST", "RETR", "RMD", "RNFR", "RNTO", "SITE", "SIZE", "STAT", "STOR", "STOU", "STRU", "SYST",
    "TYPE", "USER", "XCUP", "XCWD", "XMKD", "XPWD", "XRMD",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &[u8]) -> Result<Command, ParseError> {
        Command::parse(line)
    }

    #[test]
    fn verbs_are_case_insensitive() {
        assert_eq!(p(b"user alice"), Ok(Command::User("alice".into())));
        assert_eq!(p(b"NoOp"), Ok(Command::Noop));
        assert_eq!(p(b"xpwd"), Ok(Command::Pwd));
    }

    #[test]
    fn unknown_is_a_value() {
        assert_eq!(p(b"REIN"), Ok(Command::Unknown("REIN".into())));
        assert_eq!(p(b"FOOBARBAZQUUXVERYLONGVERB x"), Ok(Command::Unknown("FOOBARBAZQUUXVER".into())));
        assert_eq!(p(b"SITE EXEC ls"), Ok(Command::Unknown("SITE EXEC".into())));
        assert_eq!(p(b""), Err(ParseError::Empty));
        assert_eq!(p(b" NOOP"), Err(ParseError::Empty));
    }

    #[test]
    fn paths_keep_spaces_and_bytes() {
        assert_eq!(p(b"RETR  two spaces "), Ok(Command::Retr(b" two spaces ".to_vec())));
        assert_eq!(p(b"STOR caf\xe9.txt"), Ok(Command::Stor(b"caf\xe9.txt".to_vec())));
        assert!(matches!(p(b"RETR"), Err(ParseError::Syntax { verb: "RETR", .. })));
        assert!(matches!(p(b"RETR "), Err(ParseError::Syntax { .. })));
        assert_eq!(p(b"CWD .."), Ok(Command::Cwd(b"..".to_vec())));
    }

    #[test]
    fn list_options_skipped() {
        assert_eq!(p(b"LIST"), Ok(Command::List(None)));
        assert_eq!(p(b"LIST -la"), Ok(Command::List(None)));
        assert_eq!(p(b"LIST -a -l dir"), Ok(Command::List(Some(b"dir".to_vec()))));
        assert_eq!(p(b"NLST *.txt"), Ok(Command::Nlst(Some(b"*.txt".to_vec()))));
        assert_eq!(p(b"MLSD"), Ok(Command::Mlsd(None)));
    }

    #[test]
    fn type_mode_stru() {
        assert_eq!(p(b"TYPE I"), Ok(Command::Type(TransferType::Image)));
        assert_eq!(p(b"TYPE a n"), Ok(Command::Type(TransferType::Ascii)));
        assert_eq!(p(b"TYPE L 8"), Ok(Command::Type(TransferType::Image)));
        assert_eq!(p(b"TYPE E").map_err(|e| e.reply().code), Err(504));
        assert_eq!(p(b"TYPE A T").map_err(|e| e.reply().code), Err(504));
        assert_eq!(p(b"TYPE X").map_err(|e| e.reply().code), Err(501));
        assert_eq!(p(b"MODE S"), Ok(Command::Mode));
        assert_eq!(p(b"MODE Z").map_err(|e| e.reply().code), Err(504));
        assert_eq!(p(b"STRU R").map_err(|e| e.reply().code), Err(504));
    }

    #[test]
    fn commands_answered_without_an_action_still_parse_as_themselves() {
        // ACCT and ALLO get a 202 ("not needed"), SITE HELP a list: as commands, not as unknown verbs.
        assert_eq!(p(b"ACCT billing"), Ok(Command::Acct));
        assert_eq!(p(b"ALLO 1024"), Ok(Command::Allo));
        assert_eq!(p(b"site help"), Ok(Command::Site(SiteCmd::Help)));
        assert_eq!(p(b"HELP"), Ok(Command::Help));
        let missing = p(b"TYPE").map_err(|e| e.reply());
        assert!(matches!(&missing, Err(r) if r.to_bytes() == b"501 TYPE: missing argument: A or I\r\n"), "{missing:?}");
    }

    #[test]
    fn a_missing_or_unsupported_argument_is_told_apart() {
        let reply = |line: &[u8]| p(line).map_err(|e| String::from_utf8_lossy(&e.reply().to_bytes()).into_owned());
        assert_eq!(reply(b"MODE"), Err("501 MODE: missing argument: S\r\n".into()));
        assert_eq!(reply(b"STRU"), Err("501 STRU: missing argument: F\r\n".into()));
        assert_eq!(reply(b"STRU F"), Ok(Command::Stru));
        assert_eq!(reply(b"AUTH"), Err("501 AUTH: missing argument: TLS\r\n".into()));
        assert_eq!(reply(b"PROT"), Err("501 PROT: missing argument: P\r\n".into()));
        assert_eq!(p(b"AUTH TLS-C"), Ok(Command::Auth(AuthMech::TlsC)));
        assert_eq!(p(b"AUTH TLS-P"), Ok(Command::Auth(AuthMech::TlsP)));
        assert_eq!(p(b"PROT C"), Ok(Command::Prot(ProtLevel::Clear)));
        assert_eq!(p(b"PROT E"), Err(ParseError::ProtLevel));
        assert_eq!(p(b"PROT X").map_err(|e| e.reply().code), Err(504));
    }

    #[test]
    fn logs_name_the_verb_and_never_the_argument() {
        for (line, verb) in [
            (&b"USER alice"[..], "USER"),
            (b"PASS secret", "PASS"),
            (b"RETR private.txt", "RETR"),
            (b"STOR f", "STOR"),
            (b"AUTH TLS", "AUTH"),
            (b"SITE CHMOD 600 f", "SITE"),
        ] {
            assert_eq!(p(line).expect("parses").verb(), verb);
        }
    }

    #[test]
    fn tls_commands() {
        assert_eq!(p(b"AUTH TLS"), Ok(Command::Auth(AuthMech::Tls)));
        assert_eq!(p(b"auth ssl"), Ok(Command::Auth(AuthMech::Ssl)));
        assert_eq!(p(b"AUTH KERBEROS").map_err(|e| e.reply().code), Err(504));
        assert_eq!(p(b"PBSZ 0"), Ok(Command::Pbsz));
        assert_eq!(p(b"PBSZ x").map_err(|e| e.reply().code), Err(501));
        assert_eq!(p(b"PROT P"), Ok(Command::Prot(ProtLevel::Private)));
        assert_eq!(p(b"PROT S").map_err(|e| e.reply().code), Err(536));
    }

    #[test]
    fn numbers_and_times() {
        assert_eq!(p(b"REST 100"), Ok(Command::Rest(100)));
        assert_eq!(p(b"REST -1").map_err(|e| e.reply().code), Err(501));
        assert_eq!(p(b"REST 99999999999999999999").map_err(|e| e.reply().code), Err(501));
        assert_eq!(p(b"MFMT 20231114221320 a b"), Ok(Command::Mfmt { mtime: 1_700_000_000, path: b"a b".to_vec() }));
        assert_eq!(p(b"MFMT 2023 a").map_err(|e| e.reply().code), Err(501));
        assert_eq!(
            p(b"SITE CHMOD 0755 my file"),
            Ok(Command::Site(SiteCmd::Chmod { mode: 0o755, path: b"my file".to_vec() }))
        );
        assert_eq!(p(b"SITE CHMOD 999 f").map_err(|e| e.reply().code), Err(501));
    }

    #[test]
    fn addresses() {
        assert_eq!(p(b"PORT 127,0,0,1,4,1"), Ok(Command::Port("127.0.0.1:1025".parse().expect("addr"))));
        assert_eq!(p(b"EPRT |2|::1|2000|"), Ok(Command::Eprt("[::1]:2000".parse().expect("addr"))));
        assert_eq!(p(b"EPRT |9|x|1|").map_err(|e| e.reply().code), Err(522));
        assert_eq!(p(b"EPSV ALL"), Ok(Command::Epsv(EpsvArg::All)));
        assert_eq!(p(b"PORT 1,2").map_err(|e| e.reply().code), Err(501));
    }

    #[test]
    fn opts() {
        assert_eq!(p(b"OPTS UTF8 ON"), Ok(Command::Opts(OptsArg::Utf8)));
        assert_eq!(p(b"OPTS MLST type;size;"), Ok(Command::Opts(OptsArg::Mlst(Facts::select(b"type;size;")))));
        assert_eq!(p(b"OPTS FOO").map_err(|e| e.reply().code), Err(501));
    }
}
