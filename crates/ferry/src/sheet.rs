//! `ferry user sheet NAME`: everything a partner needs to connect, ready to paste into a mail: the host
//! and ports per protocol, the SSH host key fingerprints and a known_hosts line, the TLS certificate
//! fingerprint, client settings and commands, and the firewall openings on the partner's side. It ends
//! most "which port, which protocol" support mails before they are written.

use std::fmt::Write as _;
use std::net::SocketAddr;

use ferry_config::{Config, Protocol};

use crate::cli::{GlobalArgs, SheetArgs};
use crate::CliError;

/// The ports a partner uses for each protocol.
#[derive(Debug, Default, PartialEq, Eq)]
struct Ports {
    sftp: Option<u16>,
    explicit: Option<u16>,
    implicit: Option<u16>,
}

/// Picks one port per protocol from the listeners: a single-protocol listener first, then among
/// multi-protocol ones the conventional-looking port (…22 for SFTP, …21 for explicit, …990 for implicit),
/// then the first that serves it.
fn ports(listeners: &[(Vec<Protocol>, SocketAddr)]) -> Ports {
    let pick = |p: Protocol, tail: &str| -> Option<u16> {
        let serving: Vec<&(Vec<Protocol>, SocketAddr)> = listeners.iter().filter(|(ps, _)| ps.contains(&p)).collect();
        serving
            .iter()
            .find(|(ps, _)| ps.len() == 1)
            .or_else(|| serving.iter().find(|(_, a)| a.port().to_string().ends_with(tail)))
            .or_else(|| serving.first())
            .map(|(_, a)| a.port())
    };
    Ports {
        sftp: pick(Protocol::Sftp, "22"),
        explicit: pick(Protocol::Ftps, "21"),
        implicit: pick(Protocol::FtpsImplicit, "990"),
    }
}

fn machine_name() -> String {
    rustix::system::uname().nodename().to_string_lossy().into_owned()
}

pub fn run(global: &GlobalArgs, args: &SheetArgs) -> Result<(), CliError> {
    let env = crate::bootstrap::load(global)?;
    let store = crate::bootstrap::open_store(&env)?;
    let config = crate::serve::settle(env.config, &args.serve)?;
    let Some(user) = store.get(&args.name)? else {
        return Err(ferry_auth::AuthError::NoSuchUser(args.name.clone()).into());
    };
    let listeners: Vec<(Vec<Protocol>, SocketAddr)> =
        config.server.listeners.iter().map(|l| (l.protocols.clone(), l.addr)).collect();
    let host = args.host.clone().unwrap_or_else(|| {
        listeners
            .iter()
            .map(|(_, a)| a.ip())
            .find(|ip| !ip.is_unspecified())
            .map(|ip| ip.to_string())
            .unwrap_or_else(machine_name)
    });
    let allowed = |p: &str| user.protocols.as_ref().is_none_or(|ps| ps.iter().any(|x| x == p));
    let mut ports = ports(&listeners);
    if !allowed("sftp") {
        ports.sftp = None;
    }
    if !allowed("ftps") {
        ports.explicit = None;
        ports.implicit = None;
    }
    let host_keys = host_keys(&env.data_dir, &config)?;
    let tls = ferry_tls::cert_paths(&env.data_dir, config.ftps.cert.as_deref(), config.ftps.key.as_deref())
        .ok()
        .and_then(|p| ferry_tls::inspect(&p).ok().map(|s| (s, p.self_signed)));
    print!(
        "{}",
        render(
            &user.name,
            &host,
            &ports,
            config.server.passive_ports.to_string().as_str(),
            &host_keys,
            tls.as_ref(),
            &user
        )
    );
    Ok(())
}

/// `(algorithm, SHA256 fingerprint, OpenSSH public key line)` of each host key the server offers.
fn host_keys(data_dir: &std::path::Path, config: &Config) -> Result<Vec<(String, String, String)>, CliError> {
    let mut out = Vec::new();
    for path in crate::hostkeys::paths(data_dir, &config.sftp.host_keys) {
        if !path.exists() {
            continue;
        }
        let key = crate::hostkeys::load(&path)?;
        let (algo, fp) = crate::hostkeys::describe(&key);
        let line = key
            .public_key()
            .to_openssh()
            .map_err(|e| CliError::runtime(format!("host key {}: {e}", path.display())))?;
        // The comment of a generated key names this machine's file: not for a partner's known_hosts.
        let line = line.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        out.push((algo, fp, line));
    }
    Ok(out)
}

/// WinSCP's URL form of a SHA-256 host key fingerprint: `ssh-ed25519-<base64url without padding>`.
fn winscp_fingerprint(algo: &str, fp: &str) -> String {
    let b64 = fp.trim_start_matches("SHA256:").replace('+', "-").replace('/', "_").trim_end_matches('=').to_string();
    format!("{algo}-{b64}")
}

fn render(
    name: &str,
    host: &str,
    ports: &Ports,
    passive: &str,
    host_keys: &[(String, String, String)],
    tls: Option<&(ferry_tls::CertSummary, bool)>,
    user: &ferry_auth::User,
) -> String {
    let mut s = String::new();
    let bracket = if host.contains(':') { format!("[{host}]") } else { host.to_string() };
    let _ = writeln!(s, "Connecting to {host} as {name}");
    let _ = writeln!(s, "=================={}\n", "=".repeat(host.len() + name.len()));
    let auth = match (user.has_password, user.key_count) {
        (true, 0) => "a password (sent to you separately)".to_string(),
        (false, n) => format!("your SSH key ({n} authorised; SFTP only)"),
        (true, n) => format!("a password (sent separately), or over SFTP one of your {n} SSH keys"),
    };
    let _ = writeln!(s, "User name:  {name}\nLog in with: {auth}");
    if let Some(e) = &user.expires {
        let _ = writeln!(s, "Account valid until: {e} (UTC)");
    }
    if !user.allow_from.is_empty() {
        let _ = writeln!(s, "Only from:  {}", user.allow_from.join(", "));
    }
    let _ = writeln!(s);

    if let Some(port) = ports.sftp {
        let _ = writeln!(s, "SFTP (file transfer over SSH) -- host {host}, port {port}");
        let _ = writeln!(s, "  Check the server's host key the first time you connect; it must be one of:");
        for (algo, fp, _) in host_keys {
            let _ = writeln!(s, "    {algo} {fp}");
        }
        let _ = writeln!(s, "  known_hosts lines (append to ~/.ssh/known_hosts to skip the question):");
        for (_, _, line) in host_keys {
            let target = if port == 22 { bracket.clone() } else { format!("[{host}]:{port}") };
            let _ = writeln!(s, "    {target} {line}");
        }
        let _ = writeln!(s, "  OpenSSH:   sftp -P {port} {name}@{bracket}");
        let _ = writeln!(s, "             scp -P {port} FILE {name}@{bracket}:");
        let _ = writeln!(s, "  curl:      curl -u {name} -T FILE sftp://{bracket}:{port}/");
        let _ = writeln!(s, "  lftp:      lftp -u {name} sftp://{bracket}:{port}");
        let _ = writeln!(
            s,
            "  rclone:    rclone config create ferry sftp host {host} port {port} user {name} ask_password true shell_type none"
        );
        if let Some((algo, fp, _)) = host_keys.first() {
            let _ = writeln!(
                s,
                "  WinSCP:    sftp://{name};fingerprint={}@{bracket}:{port}/",
                winscp_fingerprint(algo, fp)
            );
        }
        let _ = writeln!(s, "  FileZilla: Protocol \"SFTP - SSH File Transfer Protocol\", host {host}, port {port}");
        let _ = writeln!(s, "  Python (paramiko):");
        let _ = writeln!(s, "    import paramiko");
        let _ = writeln!(s, "    t = paramiko.Transport((\"{host}\", {port}))");
        let _ = writeln!(s, "    t.connect(username=\"{name}\", password=PASSWORD)");
        let _ = writeln!(s, "    sftp = paramiko.SFTPClient.from_transport(t)");
        let _ = writeln!(s, "    sftp.put(\"report.pdf\", \"report.pdf\")\n");
    }
    if ports.explicit.is_some() || ports.implicit.is_some() {
        if let Some((cert, self_signed)) = tls {
            let _ = writeln!(s, "FTPS certificate (check it the first time you connect):");
            let _ = writeln!(s, "  SHA-256 {}", cert.sha256);
            let _ = writeln!(
                s,
                "  {}valid until {} days from now",
                if *self_signed { "self-signed, " } else { "" },
                cert.days_left
            );
            let _ = writeln!(s);
        }
    }
    if let Some(port) = ports.explicit {
        let _ = writeln!(s, "FTPS, explicit (FTP + AUTH TLS) -- host {host}, port {port}, data ports {passive}");
        let _ = writeln!(s, "  curl:      curl --ssl-reqd -u {name} -T FILE ftp://{bracket}:{port}/");
        let _ = writeln!(
            s,
            "  lftp:      lftp -u {name} -e 'set ftp:ssl-force true; set ftp:ssl-protect-data true' -p {port} {bracket}"
        );
        let _ = writeln!(
            s,
            "  rclone:    rclone config create ferry ftp host {host} port {port} user {name} ask_password true explicit_tls true"
        );
        let _ = writeln!(s, "  WinSCP:    ftpes://{name}@{bracket}:{port}/");
        let _ = writeln!(s, "  FileZilla: Protocol \"FTP\", Encryption \"Require explicit FTP over TLS\", port {port}");
        let _ = writeln!(s, "  Python (ftplib):");
        let _ = writeln!(s, "    from ftplib import FTP_TLS");
        let _ = writeln!(s, "    ftps = FTP_TLS()\n    ftps.connect(\"{host}\", {port})");
        let _ = writeln!(s, "    ftps.login(\"{name}\", PASSWORD)\n    ftps.prot_p()\n");
    }
    if let Some(port) = ports.implicit {
        let _ =
            writeln!(s, "FTPS, implicit (TLS from the first byte) -- host {host}, port {port}, data ports {passive}");
        let _ = writeln!(s, "  curl:      curl -u {name} -T FILE ftps://{bracket}:{port}/");
        let _ = writeln!(
            s,
            "  rclone:    rclone config create ferry ftp host {host} port {port} user {name} ask_password true tls true"
        );
        let _ = writeln!(s, "  WinSCP:    ftps://{name}@{bracket}:{port}/");
        let _ = writeln!(s, "  FileZilla: Protocol \"FTP\", Encryption \"Require implicit FTP over TLS\", port {port}");
        let _ = writeln!(s, "  Python (ftplib): wrap the socket in TLS before the greeting:");
        let _ = writeln!(s, "    import socket, ssl\n    from ftplib import FTP_TLS");
        let _ = writeln!(s, "    class ImplicitFTP_TLS(FTP_TLS):");
        let _ = writeln!(s, "        def connect(self, host, port, timeout=30):");
        let _ = writeln!(s, "            self.host, self.port = host, port");
        let _ = writeln!(s, "            self.sock = self.context.wrap_socket(socket.create_connection((host, port), timeout), server_hostname=host)");
        let _ = writeln!(s, "            self.af = self.sock.family\n            self.file = self.sock.makefile(\"r\", encoding=self.encoding)");
        let _ = writeln!(s, "            self.welcome = self.getresp()\n            return self.welcome");
        let _ = writeln!(s, "    ftps = ImplicitFTP_TLS()\n    ftps.connect(\"{host}\", {port})");
        let _ = writeln!(s, "    ftps.login(\"{name}\", PASSWORD)\n    ftps.prot_p()\n");
    }

    let mut openings: Vec<String> =
        [ports.sftp, ports.explicit, ports.implicit].iter().flatten().map(|p| p.to_string()).collect();
    if ports.explicit.is_some() || ports.implicit.is_some() {
        openings.push(passive.to_string());
    }
    let _ = writeln!(
        s,
        "Your firewall: allow outgoing TCP to {host} on ports {} (nothing incoming).\n",
        openings.join(", ")
    );

    let _ = writeln!(s, "FileZilla site entries (File > Import in the Site Manager; save as ferry.xml):");
    let _ = writeln!(s, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<FileZilla3>\n  <Servers>");
    let entries = [(ports.sftp, 1, "SFTP"), (ports.explicit, 4, "FTPS explicit"), (ports.implicit, 3, "FTPS implicit")];
    for (port, protocol, label) in entries {
        if let Some(port) = port {
            let _ = writeln!(
                s,
                "    <Server><Host>{}</Host><Port>{port}</Port><Protocol>{protocol}</Protocol><Type>0</Type><User>{}</User><Logontype>2</Logontype><Name>{} ({label})</Name></Server>",
                xml(host),
                xml(name),
                xml(host)
            );
        }
    }
    let _ = writeln!(s, "  </Servers>\n</FileZilla3>");
    s
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> (Vec<Protocol>, SocketAddr) {
        let l: ferry_config::ListenerSpec = s.parse().expect("spec");
        (l.protocols, l.addr)
    }

    #[test]
    fn quickstart_ports_map_as_the_readme_says() {
        let l = [spec("any=0.0.0.0:2222"), spec("any=0.0.0.0:2121"), spec("any=0.0.0.0:9990")];
        assert_eq!(ports(&l), Ports { sftp: Some(2222), explicit: Some(2121), implicit: Some(9990) });
        let l = [spec("any=0.0.0.0:4000"), spec("sftp=0.0.0.0:22")];
        assert_eq!(ports(&l), Ports { sftp: Some(22), explicit: Some(4000), implicit: Some(4000) });
    }

    #[test]
    fn winscp_url_fingerprint() {
        assert_eq!(winscp_fingerprint("ssh-ed25519", "SHA256:ab+c/d="), "ssh-ed25519-ab-c_d");
    }
}
