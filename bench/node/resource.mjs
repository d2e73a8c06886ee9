// A DPoP-protected resource server on node:http and jose: the node side of bench/compare.sh's
// resource comparison. It does, in the same order, the checks keybound-resource's ResourceLayer
// does for `GET /api/whoami` on `keybound serve` (crates/keybound-resource/src/verifier.rs):
//
//  1. credentials: exactly one Authorization header, scheme DPoP (Bearer is accepted only to be
//     refused at the binding check, as keybound does), a token68 token, no access_token in the
//     query; exactly one DPoP header with the DPoP scheme (none: 400 invalid_request, as
//     keybound answers), none with Bearer;
//  2. the access token, an RFC 9068 JWT: typ at+jwt, alg in the allow-list, kid, no crit, the
//     signature against the issuer's JWKS (fetched once and cached by jose; refetched on an
//     unknown kid), iss, aud, exp and nbf (5 s leeway), cnf.jkt present. Verified tokens are
//     cached by SHA-256 of the token until their exp, at most 100 000, as keybound's
//     verified-token cache does (RS_TOKEN_CACHE=0 turns this off, for a stricter node side);
//  3. the DPoP proof: at most 8 KiB, typ dpop+jwt, alg in the allow-list and fitting the key,
//     no crit, an embedded public jwk (jose refuses private keys), the signature with that
//     key, jti (1 to 256 bytes), htm = the method, htu = PUBLIC_BASE_URL + the request path
//     (normalised by WHATWG URL; query and fragment dropped), iat within 60 s back and 30 s
//     ahead, ath = base64url(SHA-256(token)), a nonce if present must be a string (no nonces
//     are issued, as in keybound's bench configuration);
//  4. the binding: cnf.jkt equals the RFC 7638 thumbprint of the proof's jwk;
//  5. the proof's jti recorded once (key: jkt, htu, jti) in an in-memory map until iat + 60 s,
//     only after everything else passed; a second use is refused.
//
// Then 200 with a small JSON body (sub, client_id, scope, token_type, jkt), like /api/whoami;
// otherwise 400/401 with a WWW-Authenticate challenge (RFC 9449 §7, RFC 6750 §3).
//
// One process, one thread of JavaScript: node as it is usually run (compare.sh pins it to one
// core anyway, like keybound serve, so the figures are per core).
//
// Usage: node resource.mjs PORT JWKS_URL_OR_FILE AUDIENCE PUBLIC_BASE_URL [ISSUER]
//   JWKS_URL_OR_FILE: the issuer's jwks_uri (http(s)://...) or a file holding a JWKS.
//   ISSUER: the exact expected iss; defaults to the origin of the JWKS URL (node-oidc-provider's
//   issuer when its JWKS is at ISSUER/jwks).
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';

import {
  calculateJwkThumbprint,
  createLocalJWKSet,
  createRemoteJWKSet,
  EmbeddedJWK,
  jwtVerify,
} from 'jose';

const [portArg, jwksArg, audience, publicBase, issuerArg] = process.argv.slice(2);
if (!portArg || !jwksArg || !audience || !publicBase) {
  console.error('usage: node resource.mjs PORT JWKS_URL_OR_FILE AUDIENCE PUBLIC_BASE_URL [ISSUER]');
  process.exit(2);
}
const remote = /^https?:\/\//.test(jwksArg);
const issuer = issuerArg || (remote ? new URL(jwksArg).origin : undefined);
if (!issuer) {
  console.error('resource.mjs: give ISSUER when the JWKS comes from a file');
  process.exit(2);
}
const jwks = remote
  ? createRemoteJWKSet(new URL(jwksArg))
  : createLocalJWKSet(JSON.parse(readFileSync(jwksArg, 'utf8')));
const base = publicBase.replace(/\/+$/, '');

// keybound's defaults: the FAPI 2.0 algorithms, a 60 s / 30 s iat window, 5 s token leeway.
const ALGORITHMS = ['ES256', 'EdDSA', 'PS256'];
const ALGS = ALGORITHMS.join(' ');
const MAX_AGE = 60;
const FUTURE_LEEWAY = 30;
const TOKEN_LEEWAY = 5;
const MAX_PROOF_LEN = 8 * 1024;
const MAX_TOKEN_LEN = 16 * 1024;
const MAX_JTI_LEN = 256;
const TOKEN_CACHE_ENTRIES = process.env.RS_TOKEN_CACHE === '0' ? 0 : 100_000;
const REPLAY_CAPACITY = 1 << 20;
const TOKEN68 = /^[A-Za-z0-9\-._~+/]+=*$/;

/** Verified tokens: base64url(SHA-256(token)) -> { claims, until }. */
const tokenCache = new Map();
/** Proofs seen: "jkt htu jti" -> expiry (seconds). */
const seen = new Map();

const now = () => Math.floor(Date.now() / 1000);

function sweep(map, time, expiry) {
  for (const [key, value] of map) if (expiry(value) <= time) map.delete(key);
}
setInterval(() => sweep(seen, now(), (until) => until), 10_000).unref();

class Refusal extends Error {
  constructor(status, code, description, scheme = 'DPoP') {
    super(description ?? '');
    this.status = status;
    this.code = code;
    this.scheme = scheme;
  }
}
const badRequest = (code, text) => new Refusal(400, code, text);
const invalidProof = (text) => new Refusal(401, 'invalid_dpop_proof', text);
const invalidToken = (text, scheme) => new Refusal(401, 'invalid_token', text, scheme);

/** The access token's claims: from the cache, or verified now. */
async function accessToken(token, hash, scheme, time) {
  const cached = tokenCache.get(hash);
  if (cached) {
    if (cached.until > time && cached.claims.exp > time) return cached.claims;
    tokenCache.delete(hash);
  }
  if (token.length > MAX_TOKEN_LEN) throw invalidToken('the access token is too large', scheme);
  let verified;
  try {
    verified = await jwtVerify(token, jwks, {
      issuer,
      audience,
      typ: 'at+jwt',
      algorithms: ALGORITHMS,
      clockTolerance: TOKEN_LEEWAY,
      requiredClaims: ['exp', 'iat', 'sub', 'jti', 'client_id'],
    });
  } catch (cause) {
    throw invalidToken(`invalid access token: ${cause.code || cause.message}`, scheme);
  }
  const { payload: claims, protectedHeader } = verified;
  if (typeof protectedHeader.kid !== 'string') throw invalidToken('the token has no kid', scheme);
  if (protectedHeader.crit !== undefined) throw invalidToken('the token has crit', scheme);
  if (claims.cnf !== undefined && (typeof claims.cnf !== 'object' || claims.cnf === null)) {
    throw invalidToken('cnf is not an object', scheme);
  }
  if (TOKEN_CACHE_ENTRIES > 0) {
    if (tokenCache.size >= TOKEN_CACHE_ENTRIES) sweep(tokenCache, time, (e) => e.until);
    if (tokenCache.size < TOKEN_CACHE_ENTRIES) tokenCache.set(hash, { claims, until: claims.exp });
  }
  return claims;
}

/** The proof's checks; returns its jwk thumbprint, htu and jti for the binding and replay. */
async function checkProof(proof, method, path, ath, time) {
  if (proof.length > MAX_PROOF_LEN) throw invalidProof('the proof is too large');
  let payload;
  let protectedHeader;
  try {
    ({ payload, protectedHeader } = await jwtVerify(proof, EmbeddedJWK, {
      typ: 'dpop+jwt',
      algorithms: ALGORITHMS,
    }));
  } catch (cause) {
    throw invalidProof(`invalid proof: ${cause.code || cause.message}`);
  }
  if (protectedHeader.crit !== undefined) throw invalidProof('the proof has crit');
  const { jti, htm, htu, iat } = payload;
  if (typeof jti !== 'string' || jti.length === 0 || Buffer.byteLength(jti) > MAX_JTI_LEN) {
    throw invalidProof('jti is missing or malformed');
  }
  if (typeof htm !== 'string' || htm !== method) throw invalidProof('htm mismatch');
  const expected = URL.parse(base + path);
  const claimed = typeof htu === 'string' ? URL.parse(htu) : null;
  if (!expected || !claimed || !/^https?:$/.test(claimed.protocol)) {
    throw invalidProof('htu is not an absolute http(s) URI');
  }
  claimed.search = '';
  claimed.hash = '';
  expected.search = '';
  if (claimed.href !== expected.href) throw invalidProof('htu mismatch');
  if (typeof iat !== 'number' || !Number.isFinite(iat)) throw invalidProof('iat is missing');
  const issued = Math.max(0, Math.trunc(iat));
  if (issued < time - MAX_AGE) throw invalidProof('the proof is too old');
  if (issued > time + FUTURE_LEEWAY) throw invalidProof('the proof is from the future');
  if (payload.ath === undefined) throw invalidProof('ath is missing');
  if (payload.ath !== ath) throw invalidProof('ath mismatch');
  if (payload.nonce !== undefined && typeof payload.nonce !== 'string') {
    throw invalidProof('nonce is malformed');
  }
  const jkt = await calculateJwkThumbprint(protectedHeader.jwk, 'sha256');
  return { jkt, htu: expected.href, jti, expires: issued + MAX_AGE };
}

async function verify(req) {
  const time = now();
  const query = req.url.indexOf('?');
  const path = query < 0 ? req.url : req.url.slice(0, query);
  const inQuery = query >= 0
    && req.url.slice(query + 1).split('&').some((p) => p.split('=')[0] === 'access_token');
  const authorizations = req.headersDistinct.authorization || [];
  if (authorizations.length === 0) {
    if (inQuery) throw badRequest('invalid_request', 'access tokens only in the Authorization header');
    throw new Refusal(401, null, null);
  }
  if (authorizations.length > 1 || inQuery) {
    throw badRequest('invalid_request', 'more than one credential was presented');
  }
  const text = authorizations[0];
  const space = text.indexOf(' ');
  const schemeName = (space < 0 ? text : text.slice(0, space)).toLowerCase();
  const token = space < 0 ? '' : text.slice(space + 1).replace(/^ +/, '');
  const scheme = schemeName === 'dpop' ? 'DPoP' : schemeName === 'bearer' ? 'Bearer' : null;
  if (!scheme) throw new Refusal(401, null, null);
  if (!TOKEN68.test(token)) throw invalidToken('the access token is malformed', scheme);
  const proofs = req.headersDistinct.dpop || [];
  if (scheme === 'Bearer' && proofs.length > 0) {
    throw badRequest('invalid_request', 'a DPoP proof was sent with the Bearer scheme');
  }
  if (scheme === 'DPoP' && proofs.length === 0) throw badRequest('invalid_request', 'no DPoP proof');
  if (proofs.length > 1) throw badRequest('invalid_dpop_proof', 'more than one DPoP header');

  // One SHA-256 of the token: the cache key and the expected ath.
  const hash = createHash('sha256').update(token).digest('base64url');
  const claims = await accessToken(token, hash, scheme, time);
  const jkt = claims.cnf?.jkt;
  if (scheme === 'Bearer') {
    // keybound accepts no unbound tokens by default, and never a DPoP-bound one as Bearer.
    throw invalidToken(jkt ? 'a DPoP-bound token was sent as Bearer' : 'the token is not bound', scheme);
  }
  const proof = await checkProof(proofs[0], req.method, path, hash, time);
  if (typeof jkt !== 'string' || jkt !== proof.jkt) {
    throw invalidToken('the proof key is not the one the token is bound to', scheme);
  }
  // Every check passed: record the proof once.
  const replayKey = `${proof.jkt} ${proof.htu} ${proof.jti}`;
  const until = seen.get(replayKey);
  if (until !== undefined && until > time) throw invalidProof('the proof was used before');
  if (seen.size >= REPLAY_CAPACITY) {
    sweep(seen, time, (u) => u);
    if (seen.size >= REPLAY_CAPACITY) {
      throw new Refusal(503, 'temporarily_unavailable', 'the replay cache is full');
    }
  }
  seen.set(replayKey, proof.expires);
  return { claims, jkt };
}

function challenge(refusal) {
  const params = [];
  if (refusal.code) params.push(`error="${refusal.code}"`);
  if (refusal.message) params.push(`error_description="${refusal.message.replace(/["\\]/g, '')}"`);
  const dpop = ['DPoP', [...params, `algs="${ALGS}"`].join(', ')].join(' ');
  if (refusal.scheme === 'Bearer') return [params.length ? `Bearer ${params.join(', ')}` : 'Bearer', dpop];
  return dpop;
}

const server = http.createServer((req, res) => {
  // Drain any body; the answer depends only on the headers.
  req.resume();
  verify(req).then(
    ({ claims, jkt }) => {
      const body = JSON.stringify({
        sub: claims.sub,
        client_id: claims.client_id,
        scope: claims.scope ?? null,
        token_type: 'DPoP',
        jkt,
      });
      res.writeHead(200, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
      });
      res.end(body);
    },
    (error) => {
      if (!(error instanceof Refusal)) {
        console.error('resource.mjs:', error);
        res.writeHead(500, { 'content-length': 0 });
        res.end();
        return;
      }
      const headers = { 'www-authenticate': challenge(error), 'content-length': 0 };
      if (error.status === 503) delete headers['www-authenticate'];
      res.writeHead(error.status, headers);
      res.end();
    },
  );
});
server.listen(Number(portArg), '127.0.0.1', () => {
  console.log(`node resource server on 127.0.0.1:${portArg}: tokens from ${issuer} for ${audience}, `
    + `public URL ${base}, token cache ${TOKEN_CACHE_ENTRIES ? 'on' : 'off'}`);
});
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => server.close(() => process.exit(0)));
