//! TLS for the end-to-end tests: certificates made with the `openssl` CLI (a test CA and
//! leaf certificates it signs for `localhost` / `127.0.0.1`), an HTTPS client on
//! tokio-rustls + hyper that reports the negotiated ALPN protocol and the server's
//! certificate, and a recording upstream that speaks HTTPS.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::{Recorded, Resp, random_hex};

/// No TLS exchange in these tests should come near this.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs `openssl` with `args` in `dir`; panics with its output on failure.
fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl (is it installed?): {e}"));
    assert!(
        output.status.success(),
        "openssl {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A test certificate authority (P-256 key, self-signed, valid two days), in `dir`.
pub struct TestCa {
    pub dir: PathBuf,
    pub name: String,
    /// The CA certificate (PEM): what a client or `upstream_ca` trusts.
    pub cert: PathBuf,
    key: PathBuf,
}

/// A leaf certificate and its key (PEM files).
#[derive(Clone, Debug)]
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Leaf {
    /// The DER bytes of the certificate (to compare with what a server presented).
    pub fn der(&self) -> Vec<u8> {
        load_certs(&self.cert)
            .into_iter()
            .next()
            .expect("leaf certificate")
            .as_ref()
            .to_vec()
    }
}

impl TestCa {
    /// Creates `<dir>/<name>-ca.pem` and its key.
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let cert = dir.join(format!("{name}-ca.pem"));
        let key = dir.join(format!("{name}-ca-key.pem"));
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=tollgate test CA {name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout",
                path_str(&key),
                "-out",
                path_str(&cert),
            ],
        );
        TestCa {
            dir: dir.to_owned(),
            name: name.to_owned(),
            cert,
            key,
        }
    }

    /// Issues a server certificate for `localhost` and `127.0.0.1` named `<leaf>.pem`
    /// (key `<leaf>-key.pem`) in the CA's directory.
    pub fn issue(&self, leaf: &str) -> Leaf {
        let cert = self.dir.join(format!("{leaf}.pem"));
        let key = self.dir.join(format!("{leaf}-key.pem"));
        let csr = self.dir.join(format!("{leaf}.csr"));
        let ext = self.dir.join(format!("{leaf}.ext"));
        std::fs::write(
            &ext,
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .expect("write extensions file");
        openssl(
            &self.dir,
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                &format!("/CN=localhost/O={leaf}"),
                "-keyout",
                path_str(&key),
                "-out",
                path_str(&csr),
            ],
        );
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                path_str(&csr),
                "-CA",
                path_str(&self.cert),
                "-CAkey",
                path_str(&self.key),
                "-set_serial",
                &format!("0x{}", random_hex(8)),
                "-days",
                "2",
                "-extfile",
                path_str(&ext),
                "-out",
                path_str(&cert),
            ],
        );
        Leaf { cert, key }
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temp path")
}

/// Every certificate in a PEM file.
pub fn load_certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client config trusting the certificates in `roots` (PEM files), offering `alpn`.
pub fn client_config(roots: &[&Path], alpn: &[&str]) -> ClientConfig {
    let mut store = RootCertStore::empty();
    for root in roots {
        for cert in load_certs(root) {
            store.add(cert).expect("add trust anchor");
        }
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    config
}

/// What one HTTPS exchange saw.
#[derive(Debug)]
pub struct TlsExchange {
    /// The ALPN protocol the server picked (`h2`, `http/1.1`), if any.
    pub alpn: Option<String>,
    /// The server's end-entity certificate (DER).
    pub peer_cert: Vec<u8>,
    /// The HTTP version of the response.
    pub version: Version,
    pub resp: Resp,
}

/// A TLS connection to `addr` with SNI `localhost` (the name on the tests' certificates).
pub async fn connect_tls(
    connector: &TlsConnector,
    addr: SocketAddr,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let name = ServerName::try_from("localhost").expect("server name");
    connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake with {addr}: {e}"))
}

/// `method path` over TLS to `addr` (SNI `localhost`), trusting `roots` and offering `alpn`,
/// with `body`. Speaks HTTP/2 when the server picked `h2`, HTTP/1.1 otherwise. `Err` when
/// the connection or handshake fails (the text says why).
pub async fn https_request(
    addr: SocketAddr,
    roots: &[&Path],
    alpn: &[&str],
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<TlsExchange, String> {
    let body: Bytes = body.into();
    let connector = TlsConnector::from(Arc::new(client_config(roots, alpn)));
    let exchange = async {
        let tls = connect_tls(&connector, addr).await?;
        let (_, session) = tls.get_ref();
        let alpn = session
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned());
        let peer_cert = session
            .peer_certificates()
            .and_then(|certs| certs.first())
            .map(|cert| cert.as_ref().to_vec())
            .unwrap_or_default();
        let mut request = Request::builder()
            .method(method)
            .uri(format!("https://localhost:{}{path}", addr.port()));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let io = TokioIo::new(tls);
        let response = if alpn.as_deref() == Some("h2") {
            let request = request
                .version(Version::HTTP_2)
                .body(Full::new(body))
                .expect("request");
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
            tokio::spawn(conn);
            sender.send_request(request).await
        } else {
            let request = request
                .header("host", format!("localhost:{}", addr.port()))
                .body(Full::new(body))
                .expect("request");
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| format!("HTTP/1.1 handshake: {e}"))?;
            tokio::spawn(conn);
            sender.send_request(request).await
        }
        .map_err(|e| format!("{method} {path} over TLS: {e}"))?;
        let version = response.version();
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("reading body: {e}"))?
            .to_bytes();
        Ok(TlsExchange {
            alpn,
            peer_cert,
            version,
            resp: Resp {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            },
        })
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "no TLS exchange with {addr} within {EXCHANGE_TIMEOUT:?}"
            ))
        })
}

/// A recording upstream over HTTPS (HTTP/1.1 and HTTP/2), in the test's runtime. Answers
/// `200` with `x-upstream: <name>` and body `upstream=<name> uri=<uri>`, like
/// [`super::Upstream`].
pub struct TlsUpstream {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl TlsUpstream {
    /// Serves with `leaf`'s certificate and key.
    pub async fn start(name: &str, leaf: &Leaf) -> TlsUpstream {
        let key = PrivateKeyDer::from_pem_file(&leaf.key)
            .unwrap_or_else(|e| panic!("read {}: {e}", leaf.key.display()));
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(load_certs(&leaf.cert), key)
            .expect("upstream certificate");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind TLS upstream");
        let addr = listener.local_addr().expect("TLS upstream addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let name: Arc<str> = Arc::from(name);
        let accept = tokio::spawn({
            let requests = Arc::clone(&requests);
            async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let acceptor = acceptor.clone();
                    let requests = Arc::clone(&requests);
                    let name = Arc::clone(&name);
                    tokio::spawn(async move {
                        // A client that refuses our certificate just goes away.
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let service = service_fn(move |req| {
                            super::upstream::answer(req, Arc::clone(&name), Arc::clone(&requests))
                        });
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(tls), service)
                            .await;
                    });
                }
            }
        });
        TlsUpstream {
            addr,
            requests,
            accept,
        }
    }

    /// `https://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().expect("request log").clone()
    }
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
