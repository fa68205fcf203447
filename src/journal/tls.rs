//! TLS to a PostgreSQL journal, asked for in its URL with libpq's names:
//!
//! - no `sslmode`, or `sslmode=disable`: a plain connection;
//! - `sslmode=require`, `verify-ca` or `verify-full`: TLS, the server's
//!   certificate chain and host name always verified (stricter than libpq's
//!   `require` and `verify-ca`, which check less), against the public roots
//!   (webpki-roots, as every HTTPS call of vidgate) or the PEM file that
//!   `sslrootcert` names (`sslrootcert=system`: the public roots);
//! - `sslmode=prefer` or `allow` are refused: they fall back to an
//!   unencrypted connection without saying so.
//!
//! The driver (`postgres`) knows only `disable`, `prefer` and `require`, and
//! no `sslrootcert`: the URL it is given says `disable` or `require`.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::db::{DbError, DbResult};

/// Where a journal connects: the URL for the driver, and TLS when asked.
#[derive(Clone)]
pub(crate) struct Target {
    pub url: String,
    pub tls: Option<MakeRustlsConnect>,
}

/// Whether `url` asks for TLS.
///
/// # Errors
/// A URL that does not parse, an `sslmode` that may fall back to plain text
/// or is unknown, an `sslrootcert` without TLS: said in words for `journal.url`.
pub(crate) fn wants_tls(url: &str) -> Result<bool, String> {
    split(url).map(|(_, tls, _)| tls)
}

/// The driver's URL, whether TLS is asked, and the roots file if one is named.
fn split(url: &str) -> Result<(String, bool, Option<String>), String> {
    let mut parsed = reqwest::Url::parse(url).map_err(|e| format!("is not a URL: {e}"))?;
    let (mut mode, mut roots, mut rest) = (None, None, Vec::new());
    for (key, value) in parsed.query_pairs() {
        match &*key {
            "sslmode" => mode = Some(value.into_owned()),
            "sslrootcert" => roots = Some(value.into_owned()),
            _ => rest.push((key.into_owned(), value.into_owned())),
        }
    }
    let tls = match mode.as_deref() {
        None | Some("disable") => false,
        Some("require" | "verify-ca" | "verify-full") => true,
        Some(weak @ ("prefer" | "allow")) => {
            return Err(format!(
                "asks sslmode={weak}, which falls back to an unencrypted connection unseen: \
                 give sslmode=verify-full for TLS, or leave sslmode out for none"
            ))
        }
        Some(other) => {
            return Err(format!("asks sslmode={other}: give disable, require, verify-ca or verify-full"));
        }
    };
    if roots.is_some() && !tls {
        return Err("names sslrootcert but not TLS: add sslmode=verify-full".into());
    }
    rest.push(("sslmode".into(), if tls { "require" } else { "disable" }.into()));
    parsed.query_pairs_mut().clear().extend_pairs(rest);
    Ok((parsed.to_string(), tls, roots.filter(|r| r != "system")))
}

/// The connection `url` asks for.
///
/// # Errors
/// As [`wants_tls`]; a roots file that cannot be read or holds no certificate.
pub(crate) fn target(url: &str) -> DbResult<Target> {
    let (url, tls, roots_file) = split(url).map_err(DbError::new)?;
    if !tls {
        return Ok(Target { url, tls: None });
    }
    let mut roots = rustls::RootCertStore::empty();
    match roots_file {
        Some(file) => {
            let certs = read_roots(Path::new(&file))?;
            let (_, refused) = roots.add_parsable_certificates(certs);
            if roots.is_empty() {
                return Err(DbError::new(format!(
                    "sslrootcert {file}: none of its {refused} certificates can be used as a root"
                )));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    // The crypto of every other TLS connection of vidgate's (reqwest's ring),
    // named: with two providers built in, rustls picks none by itself.
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| DbError::new(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Target { url, tls: Some(MakeRustlsConnect::new(config)) })
}

/// The most a roots file is read: Amazon RDS's bundle of every region's
/// authorities is about 160 KB.
const MAX_ROOTS_BYTES: u64 = 4 << 20;

fn read_roots(file: &Path) -> DbResult<Vec<CertificateDer<'static>>> {
    use std::io::Read;
    let shown = file.display();
    let fail = |e: std::io::Error| DbError::new(format!("sslrootcert {shown}: {e}"));
    let mut pem = Vec::new();
    std::fs::File::open(file).and_then(|f| f.take(MAX_ROOTS_BYTES + 1).read_to_end(&mut pem)).map_err(fail)?;
    if pem.len() as u64 > MAX_ROOTS_BYTES {
        return Err(DbError::new(format!(
            "sslrootcert {shown}: over {MAX_ROOTS_BYTES} bytes, not a file of certificates"
        )));
    }
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| DbError::new(format!("sslrootcert {shown}: not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(DbError::new(format!("sslrootcert {shown}: holds no certificate")));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_driver_is_told_disable_or_require_and_weak_modes_are_refused() {
        let plain = split("postgres://u@db:5432/v?application_name=x").unwrap();
        assert_eq!(plain, ("postgres://u@db:5432/v?application_name=x&sslmode=disable".into(), false, None));
        let tls = split("postgres://u@db/v?sslmode=verify-full&sslrootcert=/etc/ca.pem").unwrap();
        assert_eq!(tls, ("postgres://u@db/v?sslmode=require".into(), true, Some("/etc/ca.pem".into())));
        assert_eq!(split("postgres://u@db/v?sslmode=require&sslrootcert=system").unwrap().2, None);
        for (url, says) in [
            ("postgres://u@db/v?sslmode=prefer", "falls back to an unencrypted connection"),
            ("postgres://u@db/v?sslmode=allow", "falls back to an unencrypted connection"),
            ("postgres://u@db/v?sslmode=verify", "give disable, require, verify-ca or verify-full"),
            ("postgres://u@db/v?sslrootcert=/etc/ca.pem", "names sslrootcert but not TLS"),
        ] {
            let err = wants_tls(url).unwrap_err();
            assert!(err.contains(says), "{url}: {err}");
        }
    }

    /// A certificate authority of the test's own, and a certificate it
    /// signed for `localhost` alone: (the authority's PEM, the server's
    /// certificate and key).
    fn authority_and_localhost() -> (String, String, String) {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "vidgate test authority");
        let authority = rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let server = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let cert = server.signed_by(&key, &authority).unwrap();
        (authority.pem(), cert.pem(), key.serialize_pem())
    }

    /// Whether the journal's connection is encrypted, as the server sees it.
    fn encrypted(journal: &crate::journal::Journal) -> bool {
        use crate::journal::db::SqlExt;
        let sql = "SELECT (CASE WHEN ssl THEN 1 ELSE 0 END)::int8 FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
        journal.with(move |c| c.one::<i64>(sql, &[])).unwrap() == Some(1)
    }

    #[test]
    fn a_journal_over_tls_checks_the_servers_certificate_and_name() {
        use crate::journal::{testing, Journal};
        let Some(server) = testing::OwnServer::start() else { return };
        let (authority, cert, key) = authority_and_localhost();
        server.serve_tls(&cert, &key);
        let dir = tempfile::tempdir().unwrap();
        let roots = dir.path().join("authority.pem");
        std::fs::write(&roots, authority).unwrap();
        let port = reqwest::Url::parse(&server.url).unwrap().port().unwrap();
        let at = |host: &str, query: &str| format!("postgres://vidgate@{host}:{port}/vidgate{query}");
        let trusting = format!("?sslmode=verify-full&sslrootcert={}", roots.display());

        let journal = Journal::connect(&at("localhost", &trusting), None, 1).unwrap();
        assert!(encrypted(&journal), "verify-full with the server's authority is TLS");
        journal.record_spend("p", 0.25).unwrap();
        assert!((journal.spent_today().unwrap() - 0.25).abs() < 1e-9);
        drop(journal);
        let plain = Journal::connect(&at("localhost", ""), None, 1).unwrap();
        assert!(!encrypted(&plain), "no sslmode: plain, as the docs say");
        drop(plain);

        for (url, says) in [
            // The public roots do not know the test's authority.
            (at("localhost", "?sslmode=verify-full"), "UnknownIssuer"),
            // A certificate for localhost does not answer for 127.0.0.1, even under "require".
            (at("127.0.0.1", &trusting.replace("verify-full", "require")), "certificate not valid for name"),
        ] {
            let err = Journal::connect(&url, None, 1).expect_err("refused").to_string();
            assert!(err.contains(says), "{url}: {err}");
        }
        // A server that offers no TLS is refused when TLS is asked.
        let bare = testing::server_url().unwrap();
        let err = Journal::connect(&format!("{bare}?sslmode=require"), None, 1).err().unwrap().to_string();
        assert!(err.contains("server does not support TLS"), "{err}");
    }

    #[test]
    fn a_roots_file_that_is_missing_or_holds_no_certificate_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").unwrap();
        let cases = [
            (dir.path().join("missing.pem"), "No such file"),
            (empty, "holds no certificate"),
            // A device that never ends is read no further than the limit.
            (std::path::PathBuf::from("/dev/zero"), "over 4194304 bytes"),
        ];
        for (file, says) in cases {
            let url = format!("postgres://u@db/v?sslmode=verify-full&sslrootcert={}", file.display());
            let err = target(&url).err().unwrap().to_string();
            assert!(err.contains(&file.display().to_string()) && err.contains(says), "{err}");
        }
    }
}
