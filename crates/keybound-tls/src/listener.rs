//! A rustls listener for `axum::serve` that asks for (never requires) a client certificate and
//! hands each connection's verified chain to the application as [`Peer`] connection info.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use rustls::ServerConfig;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::TlsError;
use crate::identity::{ClientCertificate, TrustAnchors};

/// How a listener treats client certificates. Either way a certificate is requested, never
/// required: a connection without one still reaches the application, which decides.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ClientCertMode {
    /// Any certificate is accepted at the handshake once the client proves it holds the key
    /// (the handshake signature is verified). For `self_signed_tls_client_auth`, for resource
    /// servers (RFC 8705 §6.2: proof of possession only) and for an AS that validates chains per
    /// client afterwards.
    AnyCertificate,
    /// Only certificates chaining to these anchors are accepted at the handshake.
    Pki(TrustAnchors),
}

/// Reads every certificate in PEM text.
///
/// # Errors
/// [`TlsError::Pem`] if the text is not PEM or holds no certificate.
pub fn certificates_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Pem("no certificate in the PEM text".into()));
    }
    Ok(certs)
}

/// The largest PEM file read: far above any real certificate chain, key or CA bundle, and a
/// clear error instead of a hang for a path like `/dev/zero` in a configuration.
pub const MAX_PEM_FILE: u64 = 1024 * 1024;

/// Reads a PEM file (certificates or a key) of at most [`MAX_PEM_FILE`] bytes.
///
/// # Errors
/// [`TlsError::Io`] if it cannot be read or is larger.
pub fn read_pem_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    use std::io::Read as _;
    let io = |e: std::io::Error| TlsError::Io(format!("{}: {e}", path.display()));
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(io)?
        .take(MAX_PEM_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_PEM_FILE {
        return Err(TlsError::Io(format!(
            "{}: larger than {MAX_PEM_FILE} bytes",
            path.display()
        )));
    }
    Ok(bytes)
}

/// The server's certificate chain and key, and how client certificates are treated.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use keybound_tls::{ClientCertMode, Peer, ServerTls, TlsListener};
/// let tls = ServerTls::from_pem_files("server.pem".as_ref(), "server-key.pem".as_ref())?
///     .server_config(ClientCertMode::AnyCertificate)?;
/// let listener = TlsListener::bind("127.0.0.1:8444".parse()?, tls).await?;
/// let app = axum::Router::new();
/// axum::serve(listener, app.into_make_service_with_connect_info::<Peer>()).await?;
/// # Ok(()) }
/// ```
pub struct ServerTls {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("chain", &self.chain.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

impl ServerTls {
    /// A chain (leaf first) and its private key.
    #[must_use]
    pub fn new(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Self {
        Self { chain, key }
    }

    /// Reads a PEM certificate chain and a PEM private key (PKCS#8, SEC1 or PKCS#1).
    ///
    /// # Errors
    /// [`TlsError::Io`] or [`TlsError::Pem`].
    pub fn from_pem_files(chain: &Path, key: &Path) -> Result<Self, TlsError> {
        let chain = certificates_from_pem(&read_pem_file(chain)?)?;
        let key = PrivateKeyDer::from_pem_slice(&read_pem_file(key)?)
            .map_err(|e| TlsError::Pem(format!("{}: {e}", key.display())))?;
        Ok(Self { chain, key })
    }

    /// A rustls server configuration (TLS 1.2 and 1.3, `h2` and `http/1.1` by ALPN) that
    /// requests a client certificate per `mode`. Session resumption is off so that every
    /// connection proves possession of its certificate (RFC 9440 §3.3).
    ///
    /// # Errors
    /// [`TlsError::Certificate`] if rustls refuses the chain or key.
    pub fn server_config(self, mode: ClientCertMode) -> Result<Arc<ServerConfig>, TlsError> {
        let verifier: Arc<dyn ClientCertVerifier> = match mode {
            ClientCertMode::AnyCertificate => Arc::new(PossessionOnly::new()),
            ClientCertMode::Pki(anchors) => anchors.client_verifier_optional()?,
        };
        let mut config = ServerConfig::builder_with_provider(crate::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Certificate(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain, self.key)
            .map_err(|e| TlsError::Certificate(e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        Ok(Arc::new(config))
    }
}

impl TrustAnchors {
    fn client_verifier_optional(&self) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
        Ok(Arc::new(OptionalPki(self.client_verifier())))
    }
}

/// Accepts any client certificate, after the handshake signature proves the key is held.
#[derive(Debug)]
struct PossessionOnly {
    algorithms: WebPkiSupportedAlgorithms,
}

impl PossessionOnly {
    fn new() -> Self {
        Self {
            algorithms: crate::provider().signature_verification_algorithms,
        }
    }
}

impl ClientCertVerifier for PossessionOnly {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        use x509_cert::der::Decode as _;
        x509_cert::Certificate::from_der(end_entity.as_ref())
            .map(|_| ClientCertVerified::assertion())
            .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A PKI verifier that lets connections without a certificate through (the application
/// refuses them where a certificate is needed).
#[derive(Debug)]
struct OptionalPki(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for OptionalPki {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0.verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// One accepted TLS connection: the peer's address and, if it sent one, its certificate.
/// Serve with `into_make_service_with_connect_info::<Peer>()`; [`crate::ClientCertLayer`] turns
/// it into a [`ClientCertificate`] request extension.
#[derive(Clone, Debug)]
pub struct Peer {
    /// The remote address.
    pub remote: SocketAddr,
    /// The client certificate the handshake verified, if any.
    pub certificate: Option<ClientCertificate>,
}

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// Longest a client may take to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes finished but not yet taken by the server.
const BACKLOG: usize = 256;

/// A TLS listener for `axum::serve`. Each handshake runs on its own task with a timeout, so a
/// stalled peer never blocks the accept loop.
#[derive(Debug)]
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, Peer)>,
}

impl TlsListener {
    /// Binds `addr` and starts accepting.
    ///
    /// # Errors
    /// The bind error.
    pub async fn bind(addr: SocketAddr, config: Arc<ServerConfig>) -> std::io::Result<Self> {
        Self::from_tcp(TcpListener::bind(addr).await?, config)
    }

    /// Wraps a bound TCP listener.
    ///
    /// # Errors
    /// If the listener's local address cannot be read.
    pub fn from_tcp(tcp: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(BACKLOG);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(accept_loop(tcp, acceptor, tx));
        Ok(Self { local, ready })
    }
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<TcpStream>, Peer)>,
) {
    loop {
        let (stream, remote) = match tcp.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if tx.is_closed() {
            return;
        }
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
            let tls = match handshake.await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(%error, %remote, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%remote, "TLS handshake timed out");
                    return;
                }
            };
            let certificate = tls.get_ref().1.peer_certificates().and_then(|chain| {
                let (leaf, rest) = chain.split_first()?;
                Some(ClientCertificate::new(
                    leaf.clone().into_owned(),
                    rest.iter().map(|c| c.clone().into_owned()).collect(),
                ))
            });
            let _ = tx
                .send((
                    tls,
                    Peer {
                        remote,
                        certificate,
                    },
                ))
                .await;
        });
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept loop never ends while this receiver lives.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(Peer {
            remote: self.local,
            certificate: None,
        })
    }
}
