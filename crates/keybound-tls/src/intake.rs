//! Where a request's client certificate comes from: the TLS connection keybound terminated, or
//! a header set by a TLS-terminating proxy that is explicitly trusted (RFC 9440 §4; RFC 9700
//! §4.13). The forwarded headers are removed from every request, trusted or not, so nothing
//! behind this layer can be fooled by a spoofed one.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, header};
use keybound_core::cert::{MAX_CERT_HEADER_LEN, decode_client_cert, decode_client_cert_chain};
use rustls_pki_types::CertificateDer;
use tower::{Layer, Service};

use crate::TlsError;
use crate::identity::ClientCertificate;
use crate::listener::{Peer, certificates_from_pem};

/// RFC 9440 `Client-Cert`.
pub const CLIENT_CERT: HeaderName = HeaderName::from_static("client-cert");
/// RFC 9440 `Client-Cert-Chain`.
pub const CLIENT_CERT_CHAIN: HeaderName = HeaderName::from_static("client-cert-chain");

/// Headers that proxies commonly use to forward a client certificate (nginx, HAProxy, Envoy).
/// Whatever the configured format, these are removed from every request before the
/// application sees it, so an application reading one of them cannot be fooled by a client
/// that sent it itself (standards §5 row 42).
static CONVENTIONAL_CERT_HEADERS: [HeaderName; 5] = [
    HeaderName::from_static("x-ssl-client-cert"),
    HeaderName::from_static("ssl-client-cert"),
    HeaderName::from_static("x-client-cert"),
    HeaderName::from_static("x-ssl-cert"),
    HeaderName::from_static("x-forwarded-client-cert"),
];

/// How a trusted proxy forwards the certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwardedFormat {
    /// RFC 9440 `Client-Cert` (and optional `Client-Cert-Chain`).
    Rfc9440,
    /// A URL-encoded PEM certificate in the named header, as nginx's `$ssl_client_escaped_cert`
    /// produces (e.g. `proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;`).
    EscapedPem(HeaderName),
}

/// An address or a CIDR block of proxies trusted to forward certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxyNet {
    addr: IpAddr,
    prefix: u8,
}

impl ProxyNet {
    /// Parses `10.0.0.5`, `10.0.0.0/8`, `::1` or `fd00::/8`.
    ///
    /// # Errors
    /// [`TlsError::Config`] for anything else.
    pub fn parse(text: &str) -> Result<Self, TlsError> {
        let bad = || TlsError::Config(format!("not an IP address or CIDR block: {text}"));
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(bad)?,
            None => max,
        };
        Ok(Self { addr, prefix })
    }

    /// Whether `ip` is inside this block (IPv4-mapped IPv6 addresses count as IPv4).
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 @ IpAddr::V4(_) => v4,
        };
        let bits = |a: IpAddr| match a {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)) << 96, 32u32),
            IpAddr::V6(v6) => (u128::from(v6), 128u32),
        };
        let ((net, net_len), (have, have_len)) = (bits(self.addr), bits(ip));
        if net_len != have_len {
            return false;
        }
        let prefix = u32::from(self.prefix);
        let mask = if prefix == 0 {
            0
        } else {
            u128::MAX << (128 - prefix)
        };
        net & mask == have & mask
    }
}

/// The proxies trusted to forward client certificates, and the header format they use.
#[derive(Clone, Debug)]
pub struct ForwardedCertificates {
    trusted: Vec<ProxyNet>,
    format: ForwardedFormat,
}

impl ForwardedCertificates {
    /// Certificates forwarded in `format` are read only from peers inside `trusted`.
    #[must_use]
    pub fn new(trusted: Vec<ProxyNet>, format: ForwardedFormat) -> Self {
        Self { trusted, format }
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(ip))
    }

    fn read(&self, headers: &HeaderMap) -> Result<Option<ClientCertificate>, TlsError> {
        match &self.format {
            ForwardedFormat::Rfc9440 => {
                let leaf = single(headers, &CLIENT_CERT)?;
                let Some(leaf) = leaf else {
                    if headers.contains_key(CLIENT_CERT_CHAIN) {
                        return Err(TlsError::Forwarded("Client-Cert-Chain without Client-Cert"));
                    }
                    return Ok(None);
                };
                let leaf = decode_client_cert(leaf)
                    .map_err(|_| TlsError::Forwarded("malformed Client-Cert"))?;
                let mut chain = Vec::new();
                for line in headers.get_all(CLIENT_CERT_CHAIN) {
                    let text = line
                        .to_str()
                        .map_err(|_| TlsError::Forwarded("malformed Client-Cert-Chain"))?;
                    let certs = decode_client_cert_chain(text)
                        .map_err(|_| TlsError::Forwarded("malformed Client-Cert-Chain"))?;
                    chain.extend(certs.into_iter().map(CertificateDer::from));
                }
                if chain.len() > keybound_core::cert::MAX_CHAIN_LEN {
                    return Err(TlsError::Forwarded("Client-Cert-Chain is too long"));
                }
                Ok(Some(ClientCertificate::new(
                    CertificateDer::from(leaf),
                    chain,
                )))
            }
            ForwardedFormat::EscapedPem(name) => {
                let Some(value) = single(headers, name)? else {
                    return Ok(None);
                };
                // nginx sends an empty value when the client sent no certificate.
                if value.is_empty() || value == "-" {
                    return Ok(None);
                }
                let pem = percent_decode(value)
                    .ok_or(TlsError::Forwarded("malformed escaped PEM certificate"))?;
                let mut certs = certificates_from_pem(&pem)
                    .map_err(|_| TlsError::Forwarded("malformed escaped PEM certificate"))?;
                if certs.len() != 1 {
                    return Err(TlsError::Forwarded("expected exactly one PEM certificate"));
                }
                Ok(certs
                    .pop()
                    .map(|leaf| ClientCertificate::new(leaf, Vec::new())))
            }
        }
    }

    /// The header this configuration reads the certificate from, besides RFC 9440's.
    fn escaped_pem_header(&self) -> Option<&HeaderName> {
        match &self.format {
            ForwardedFormat::EscapedPem(name) => Some(name),
            ForwardedFormat::Rfc9440 => None,
        }
    }
}

/// The value of a header that must appear at most once (RFC 9440 §2.2: singleton).
fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a str>, TlsError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(TlsError::Forwarded("the certificate header is repeated"));
    }
    if value.len() > MAX_CERT_HEADER_LEN * 2 {
        return Err(TlsError::Forwarded("the certificate header is too large"));
    }
    value
        .to_str()
        .map(Some)
        .map_err(|_| TlsError::Forwarded("the certificate header is not text"))
}

fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Puts the request's [`ClientCertificate`] into its extensions: from the TLS connection
/// ([`Peer`] connection info) or, for requests from a trusted proxy, from the forwarded
/// header. Forwarded-certificate headers are stripped from every request; a malformed one
/// from a trusted proxy is refused with 400 (fail closed: never treated as "no certificate").
///
/// ```
/// use keybound_tls::{ClientCertLayer, ForwardedCertificates, ForwardedFormat, ProxyNet};
/// let layer = ClientCertLayer::new(Some(ForwardedCertificates::new(
///     vec![ProxyNet::parse("10.0.0.0/8").unwrap()],
///     ForwardedFormat::Rfc9440,
/// )));
/// let app: axum::Router = axum::Router::new().layer(layer);
/// ```
#[derive(Clone, Debug, Default)]
pub struct ClientCertLayer {
    forwarded: Option<Arc<ForwardedCertificates>>,
}

impl ClientCertLayer {
    /// A layer reading connection certificates, and forwarded ones when `forwarded` is set.
    #[must_use]
    pub fn new(forwarded: Option<ForwardedCertificates>) -> Self {
        Self {
            forwarded: forwarded.map(Arc::new),
        }
    }
}

impl<S> Layer<S> for ClientCertLayer {
    type Service = ClientCertService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientCertService {
            inner,
            forwarded: self.forwarded.clone(),
        }
    }
}

/// The service [`ClientCertLayer`] produces.
#[derive(Clone, Debug)]
pub struct ClientCertService<S> {
    inner: S,
    forwarded: Option<Arc<ForwardedCertificates>>,
}

fn refuse(why: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": "invalid_request", "error_description": why });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = StatusCode::BAD_REQUEST;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// What the layer decided for one request.
fn intake(
    forwarded: Option<&ForwardedCertificates>,
    request: &mut Request<Body>,
) -> Result<Option<ClientCertificate>, TlsError> {
    let (remote, from_tls) = if let Some(ConnectInfo(peer)) =
        request.extensions().get::<ConnectInfo<Peer>>()
    {
        (Some(peer.remote.ip()), peer.certificate.clone())
    } else if let Some(ConnectInfo(addr)) = request.extensions().get::<ConnectInfo<SocketAddr>>() {
        (Some(addr.ip()), None)
    } else {
        (None, None)
    };
    let configured = forwarded.and_then(ForwardedCertificates::escaped_pem_header);
    let rfc9440 = [CLIENT_CERT, CLIENT_CERT_CHAIN];
    let certificate_headers = rfc9440
        .iter()
        .chain(&CONVENTIONAL_CERT_HEADERS)
        .chain(configured);
    let result = match forwarded {
        Some(forwarded) if from_tls.is_none() && remote.is_some_and(|ip| forwarded.trusts(ip)) => {
            forwarded.read(request.headers())
        }
        _ => {
            if certificate_headers
                .clone()
                .any(|n| request.headers().contains_key(n))
            {
                tracing::info!(
                    ?remote,
                    "removed client certificate headers sent by an untrusted peer"
                );
            }
            Ok(from_tls)
        }
    };
    for name in certificate_headers {
        request.headers_mut().remove(name);
    }
    result
}

impl<S> Service<Request<Body>> for ClientCertService<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        match intake(self.forwarded.as_deref(), &mut request) {
            Ok(certificate) => {
                request.extensions_mut().remove::<ClientCertificate>();
                if let Some(certificate) = certificate {
                    request.extensions_mut().insert(certificate);
                }
                // Call the instance poll_ready readied; leave a fresh clone for the next call.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                Box::pin(async move { inner.call(request).await })
            }
            Err(error) => {
                tracing::info!(%error, "refused a malformed forwarded client certificate");
                let why = error.to_string();
                Box::pin(async move { Ok(refuse(&why)) })
            }
        }
    }
}
