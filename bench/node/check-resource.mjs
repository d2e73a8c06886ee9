// Before timing anything, bench/compare.sh asks both protected resources the same questions and
// expects the same verdicts: a fair comparison needs both to refuse what a DPoP resource server
// must refuse, not just to answer 200 quickly.
//
// Usage: BENCH_CLIENT_SECRET=... node check-resource.mjs TOKEN_ENDPOINT API_URL
//   Gets a DPoP-bound token for client `bench` (scope read) at TOKEN_ENDPOINT, then calls
//   API_URL with a good proof and with twelve kinds of bad request. Prints one line per case;
//   exits 1 if a verdict (accepted or refused) is not the expected one.
import { createHash, randomUUID } from 'node:crypto';

import { exportJWK, generateKeyPair, SignJWT } from 'jose';

const [tokenEndpoint, api] = process.argv.slice(2);
if (!tokenEndpoint || !api) {
  console.error('usage: node check-resource.mjs TOKEN_ENDPOINT API_URL');
  process.exit(2);
}
const secret = process.env.BENCH_CLIENT_SECRET || 'bench-secret-bench-secret-bench-secret';

const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
const jwk = await exportJWK(publicKey);
const privateJwk = await exportJWK(privateKey);
const thief = await generateKeyPair('ES256');
const thiefJwk = await exportJWK(thief.publicKey);
const now = () => Math.floor(Date.now() / 1000);

function proof(claims, { key = privateKey, header = { alg: 'ES256', typ: 'dpop+jwt', jwk } } = {}) {
  return new SignJWT({ jti: randomUUID(), ...claims })
    .setProtectedHeader(header)
    .setIssuedAt(claims.iat ?? now())
    .sign(key);
}

const tokenResponse = await fetch(tokenEndpoint, {
  method: 'POST',
  headers: {
    authorization: `Basic ${Buffer.from(`bench:${secret}`).toString('base64')}`,
    'content-type': 'application/x-www-form-urlencoded',
    dpop: await proof({ htm: 'POST', htu: tokenEndpoint }),
  },
  body: 'grant_type=client_credentials&scope=read',
});
const body = await tokenResponse.json().catch(() => ({}));
if (!tokenResponse.ok || !body.access_token) {
  console.error(`check-resource: no token from ${tokenEndpoint}: ${tokenResponse.status}`, body);
  process.exit(1);
}
const token = body.access_token;
const ath = createHash('sha256').update(token).digest('base64url');
const good = await proof({ htm: 'GET', htu: api, ath });
const tampered = `${token.slice(0, -4)}${token.endsWith('AAAA') ? 'BBBB' : 'AAAA'}`;

const cases = [
  ['a good proof', true, { authorization: `DPoP ${token}`, dpop: good }],
  ['the same proof again (replay)', false, { authorization: `DPoP ${token}`, dpop: good }],
  ['no credentials', false, {}],
  ['the token as Bearer', false, { authorization: `Bearer ${token}` }],
  ['no proof', false, { authorization: `DPoP ${token}` }],
  ['a tampered token', false, {
    authorization: `DPoP ${tampered}`,
    dpop: await proof({ htm: 'GET', htu: api, ath: createHash('sha256').update(tampered).digest('base64url') }),
  }],
  ['a proof without ath', false, { authorization: `DPoP ${token}`, dpop: await proof({ htm: 'GET', htu: api }) }],
  ['a wrong ath', false, { authorization: `DPoP ${token}`, dpop: await proof({ htm: 'GET', htu: api, ath: ath.replace(/^./, (c) => (c === 'A' ? 'B' : 'A')) }) }],
  ['a wrong htm', false, { authorization: `DPoP ${token}`, dpop: await proof({ htm: 'POST', htu: api, ath }) }],
  ['a wrong htu', false, { authorization: `DPoP ${token}`, dpop: await proof({ htm: 'GET', htu: `${api}/other`, ath }) }],
  // A few seconds beyond the 60 s / 30 s window: a second boundary between minting and checking
  // must not flip the verdict.
  ['an iat 65 s old', false, { authorization: `DPoP ${token}`, dpop: await proof({ htm: 'GET', htu: api, ath, iat: now() - 65 }) }],
  ['an iat 35 s ahead', false, { authorization: `DPoP ${token}`, dpop: await proof({ htm: 'GET', htu: api, ath, iat: now() + 35 }) }],
  ['another key (a thief)', false, {
    authorization: `DPoP ${token}`,
    dpop: await proof({ htm: 'GET', htu: api, ath }, { key: thief.privateKey, header: { alg: 'ES256', typ: 'dpop+jwt', jwk: thiefJwk } }),
  }],
  ['a private jwk in the proof', false, {
    authorization: `DPoP ${token}`,
    dpop: await proof({ htm: 'GET', htu: api, ath }, { header: { alg: 'ES256', typ: 'dpop+jwt', jwk: privateJwk } }),
  }],
  ['typ jwt instead of dpop+jwt', false, {
    authorization: `DPoP ${token}`,
    dpop: await proof({ htm: 'GET', htu: api, ath }, { header: { alg: 'ES256', typ: 'jwt', jwk } }),
  }],
];

let wrong = 0;
for (const [name, accept, headers] of cases) {
  const response = await fetch(api, { headers });
  await response.arrayBuffer();
  const accepted = response.status >= 200 && response.status < 300;
  const ok = accepted === accept;
  if (!ok) wrong += 1;
  const challenge = response.headers.get('www-authenticate') || '';
  const code = /error="([^"]+)"/.exec(challenge)?.[1] || '';
  console.log(`  ${ok ? 'ok  ' : 'FAIL'} ${name.padEnd(30)} ${response.status} ${code}`);
}
if (wrong) {
  console.error(`check-resource: ${api}: ${wrong} unexpected verdict(s)`);
  process.exit(1);
}
