// Proofs minted by the `dpop` npm package (panva), for crates/keybound-cli/tests/interop_clients.rs.
//
//   node proof.mjs key
//     A new ES256 key pair (WebCrypto, through dpop.generateKeyPair). Prints one JSON line:
//     {private_jwk, public_jwk, jkt}, jkt being dpop.calculateThumbprint of the public key.
//   node proof.mjs proof KEY_FILE HTM HTU [NONCE|-] [ACCESS_TOKEN]
//     A proof from dpop.generateProof signed with the private JWK in KEY_FILE, for method HTM
//     and URL HTU, with `nonce` unless NONCE is `-` or absent, and with `ath` (the hash of
//     ACCESS_TOKEN) when a token is given. Prints the compact proof.
//
// The Rust test takes the key to keybound's token endpoint itself, so that the token is bound
// to this key, then presents the package's resource-server proofs to keybound's demo API.
import { readFileSync } from 'node:fs'
import * as DPoP from 'dpop'

const [mode, ...args] = process.argv.slice(2)

if (mode === 'key') {
  const { privateKey, publicKey } = await DPoP.generateKeyPair('ES256', { extractable: true })
  const privateJwk = await crypto.subtle.exportKey('jwk', privateKey)
  const { kty, crv, x, y } = await crypto.subtle.exportKey('jwk', publicKey)
  console.log(
    JSON.stringify({
      private_jwk: privateJwk,
      public_jwk: { kty, crv, x, y },
      jkt: await DPoP.calculateThumbprint(publicKey),
    }),
  )
} else if (mode === 'proof' && args.length >= 3 && args.length <= 5) {
  const [keyFile, htm, htu, nonce, accessToken] = args
  const jwk = JSON.parse(readFileSync(keyFile, 'utf8'))
  const algorithm = { name: 'ECDSA', namedCurve: 'P-256' }
  const privateKey = await crypto.subtle.importKey('jwk', jwk, algorithm, false, ['sign'])
  const { kty, crv, x, y } = jwk
  const publicKey = await crypto.subtle.importKey('jwk', { kty, crv, x, y }, algorithm, true, [
    'verify',
  ])
  const proof = await DPoP.generateProof(
    { privateKey, publicKey },
    htu,
    htm,
    nonce && nonce !== '-' ? nonce : undefined,
    accessToken,
  )
  console.log(proof)
} else {
  console.error('usage: node proof.mjs key | proof KEY_FILE HTM HTU [NONCE|-] [ACCESS_TOKEN]')
  process.exit(2)
}
