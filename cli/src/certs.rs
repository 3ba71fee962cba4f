//! `rackload certs`: a development CA and the certificates mutual TLS on the fabric needs —
//! the coordinator's (server and client auth, for the names it is reached by), a worker's
//! and a CLI client's — as PEM files, keys readable by their owner only. For production,
//! use the organisation's CA (or cert-manager on Kubernetes); the flags take any PEM.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use crate::args::CertsArgs;

fn write(dir: &Path, name: &str, text: &str, private: bool) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = dir.join(name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

pub fn main(args: CertsArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
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
    write(&args.out, "ca.pem", &ca.pem(), false)?;

    let hosts: Vec<String> = args
        .hosts
        .split(',')
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .collect();
    if hosts.is_empty() {
        anyhow::bail!("--hosts: give at least one name or address the coordinator is reached by");
    }
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
        write(&args.out, &format!("{name}.pem"), &cert.pem(), false)?;
        write(
            &args.out,
            &format!("{name}-key.pem"),
            &key.serialize_pem(),
            true,
        )?;
    }
    println!(
        "wrote ca.pem, coordinator.pem/-key.pem (for {}), worker.pem/-key.pem, client.pem/-key.pem to {}",
        args.hosts,
        args.out.display()
    );
    println!("the CA's key was not kept: make a new set to add certificates");
    Ok(ExitCode::SUCCESS)
}
