// oauth4webapi as an independent DPoP client of keybound, for
// crates/keybound-cli/tests/interop_clients.rs:
//
//   node client.mjs ISSUER CLIENT_ID CLIENT_SECRET API_URL
//
// RFC 8414 discovery, a fresh ES256 DPoP key, client credentials with client_secret_basic and a
// DPoP proof, the `use_dpop_nonce` answer retried the way oauth4webapi documents it
// (isDPoPNonceError, then the same request again: the DPoP handle has cached the DPoP-Nonce),
// then GET API_URL with the token and a proof (same retry if the resource server asks for a
// nonce). Prints one JSON line:
//   {token_type, access_token, jkt_in_token, jkt, public_jwk, token_nonce_retries,
//    api_nonce_retries, api_status, api_body}
// Any other failure exits 1 with the error on stderr.
//
// keybound runs on http://127.0.0.1 in the test, and oauth4webapi refuses plain http unless
// each call carries its `allowInsecureRequests` option: set here, and only for loopback issuers.
import * as oauth from 'oauth4webapi'

const [issuerArg, clientId, clientSecret, apiArg] = process.argv.slice(2)
if (!issuerArg || !clientId || !clientSecret || !apiArg) {
  console.error('usage: node client.mjs ISSUER CLIENT_ID CLIENT_SECRET API_URL')
  process.exit(2)
}
const issuer = new URL(issuerArg)
const api = new URL(apiArg)
const loopback = (url) => ['127.0.0.1', '[::1]', 'localhost'].includes(url.hostname)
if (!loopback(issuer) || !loopback(api)) {
  console.error('allowInsecureRequests is only used against loopback: refusing', issuerArg, apiArg)
  process.exit(2)
}
const insecure = { [oauth.allowInsecureRequests]: true }

// The payload of a JWT, decoded (no signature check: the test checks the token with keybound).
const jwtPayload = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString())

const as = await oauth
  .discoveryRequest(issuer, { algorithm: 'oauth2', ...insecure })
  .then((response) => oauth.processDiscoveryResponse(issuer, response))
if (!as.dpop_signing_alg_values_supported?.includes('ES256')) {
  throw new Error(`the AS does not list ES256 for DPoP: ${as.dpop_signing_alg_values_supported}`)
}

const client = { client_id: clientId }
const clientAuth = oauth.ClientSecretBasic(clientSecret)
const keyPair = await oauth.generateKeyPair('ES256', { extractable: true })
const DPoP = oauth.DPoP(client, keyPair)

// Token request; on use_dpop_nonce the handle already holds the AS's nonce: send it again.
let tokenNonceRetries = 0
let token
for (;;) {
  const response = await oauth.clientCredentialsGrantRequest(
    as,
    client,
    clientAuth,
    new URLSearchParams(),
    { DPoP, ...insecure },
  )
  try {
    token = await oauth.processClientCredentialsResponse(as, client, response)
    break
  } catch (err) {
    if (oauth.isDPoPNonceError(err) && tokenNonceRetries === 0) {
      tokenNonceRetries += 1
      continue
    }
    throw err
  }
}

// The protected API, with the same key; a resource-server nonce challenge is retried once.
let apiNonceRetries = 0
let apiResponse
for (;;) {
  try {
    apiResponse = await oauth.protectedResourceRequest(
      token.access_token,
      'GET',
      api,
      new Headers({ accept: 'application/json' }),
      undefined,
      { DPoP, ...insecure },
    )
    break
  } catch (err) {
    if (oauth.isDPoPNonceError(err) && apiNonceRetries === 0) {
      apiNonceRetries += 1
      continue
    }
    throw err
  }
}
const apiText = await apiResponse.text()
let apiBody
try {
  apiBody = JSON.parse(apiText)
} catch {
  apiBody = apiText
}

console.log(
  JSON.stringify({
    token_type: token.token_type,
    access_token: token.access_token,
    jkt_in_token: jwtPayload(token.access_token).cnf?.jkt ?? null,
    jkt: await DPoP.calculateThumbprint(),
    public_jwk: await crypto.subtle.exportKey('jwk', keyPair.publicKey),
    token_nonce_retries: tokenNonceRetries,
    api_nonce_retries: apiNonceRetries,
    api_status: apiResponse.status,
    api_body: apiBody,
  }),
)
