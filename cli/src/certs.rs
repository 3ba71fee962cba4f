//! `rackload certs`: a development CA and the certificates mutual TLS on the fabric needs —
//! the coordinator's (server and client auth, for the names it is reached by), a worker's
//! and a CLI client's — as PEM files, keys readable by their owner only. For production,
//! use the organisation's CA (or cert-manager on Kubernetes); the flags take any PEM.

use crate::console::say;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use crate::args::CertsArgs;

/// The files a set is made of.
const FILES: [&str; 7] = [
    "ca.pem",
    "coordinator.pem",
    "coordinator-key.pem",
    "worker.pem",
    "worker-key.pem",
    "client.pem",
    "client-key.pem",
];

/// Writes every file of the set, each first to a temporary beside it (keys owner-only
/// from the start), then renames them into place: a failure (a full disk) removes the
/// temporaries and leaves no partial key and no half-replaced set.
fn write_all(dir: &Path, files: &[(String, String, bool)]) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = |name: &str| dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let staged: anyhow::Result<()> = files.iter().try_for_each(|(name, text, private)| {
        let path = tmp(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(if *private { 0o600 } else { 0o644 })
            .open(&path)
            .with_context(|| format!("cannot write {}", dir.join(name).display()))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .with_context(|| format!("cannot write {}", dir.join(name).display()))
    });
    let renamed = staged.and_then(|()| {
        files.iter().try_for_each(|(name, _, _)| {
            std::fs::rename(tmp(name), dir.join(name))
                .with_context(|| format!("cannot write {}", dir.join(name).display()))
        })
    });
    if renamed.is_err() {
        for (name, _, _) in files {
            let _ = std::fs::remove_file(tmp(name));
        }
    }
    renamed
}

/// An IP address, or a DNS name (a `*.` wildcard allowed) of at most 253 characters in
/// labels of 1 to 63 letters, digits and hyphens.
fn is_host(h: &str) -> bool {
    if h.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let name = h.strip_prefix("*.").unwrap_or(h);
    h.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

pub fn main(args: CertsArgs) -> anyhow::Result<ExitCode> {
    let hosts: Vec<String> = args
        .hosts
        .split(',')
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .collect();
    if hosts.is_empty() {
        anyhow::bail!("--hosts: give at least one name or address the coordinator is reached by");
    }
    if let Some(bad) = hosts.iter().find(|h| !is_host(h)) {
        anyhow::bail!(
            "--hosts: {:?} is not a host name or an IP address",
            rackload_input::clip(&bad.escape_default().to_string(), 80)
        );
    }
    let existing: Vec<&str> = FILES
        .into_iter()
        .filter(|f| args.out.join(f).exists())
        .collect();
    if !existing.is_empty() && !args.force {
        anyhow::bail!(
            "{} already holds {}: give --force to replace the set (a new CA does not vouch for the old certificates)",
            args.out.display(),
            existing.join(", ")
        );
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut files: Vec<(String, String, bool)> = Vec::new();
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "rackload development CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
    files.push(("ca.pem".into(), ca.pem(), false));
    let leaves: [(&str, Vec<String>, &[ExtendedKeyUsagePurpose]); 3] = [
        // Server and client: one certificate may serve every role (one Secret for all).
        (
            "coordinator",
            hosts,
            &[
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        ),
        ("worker", vec![], &[ExtendedKeyUsagePurpose::ClientAuth]),
        ("client", vec![], &[ExtendedKeyUsagePurpose::ClientAuth]),
    ];
    for (name, sans, usages) in leaves {
        let mut p =
            CertificateParams::new(sans).with_context(|| format!("--hosts {:?}", args.hosts))?;
        p.distinguished_name
            .push(DnType::CommonName, format!("rackload {name}"));
        p.extended_key_usages = usages.to_vec();
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate()?;
        let cert = p.signed_by(&key, &ca)?;
        files.push((format!("{name}.pem"), cert.pem(), false));
        files.push((format!("{name}-key.pem"), key.serialize_pem(), true));
    }
    write_all(&args.out, &files)?;
    say!(
        "wrote ca.pem, coordinator.pem/-key.pem (for {}), worker.pem/-key.pem, client.pem/-key.pem to {}",
        args.hosts,
        args.out.display()
    );
    say!("the CA's key was not kept: make a new set to add certificates");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn hosts_are_names_or_addresses_of_legal_length() {
        for ok in [
            "127.0.0.1",
            "::1",
            "localhost",
            "coord-0.fabric.svc",
            "*.fabric.local",
        ] {
            assert!(super::is_host(ok), "{ok}");
        }
        let long_label = "x".repeat(64);
        let long_name = ["a"; 130].join(".");
        for bad in [
            "",
            "a..b",
            "bad\nname",
            "a_b",
            long_label.as_str(),
            long_name.as_str(),
            "*",
        ] {
            assert!(!super::is_host(bad), "{bad}");
        }
    }
}
