// node-oidc-provider as the node side of bench/compare.sh's token comparison: the same work per
// token request as `keybound serve --config bench/keybound-bench.toml` does.
//
//   - one confidential client `bench` (client_secret_basic, client_credentials only, DPoP-bound
//     access tokens required);
//   - DPoP on, no nonce (keybound's bench configuration requires none either), so every
//     request is: client authentication, proof verification (signature, htm, htu, iat, jti
//     replay check), then signing an ES256 JWT access token with `cnf.jkt`;
//   - JWT access tokens (RFC 9068, `typ: at+jwt`) for the default resource, AUDIENCE, lasting
//     300 s like keybound's;
//   - production mode: run with NODE_ENV=production; no development interactions, fixed keys.
//
// One process, as node is usually run (and compare.sh pins it to one core anyway, like the
// keybound server, so the figures are per core).
//
// Usage: NODE_ENV=production node provider.mjs PORT [AUDIENCE]
//   The client secret comes from BENCH_CLIENT_SECRET (default below); AUDIENCE defaults to
//   http://127.0.0.1:PORT/api. The JWKS is at ISSUER/jwks.
import { generateKeyPair, exportJWK } from 'jose';
import Provider from 'oidc-provider';

const port = Number(process.argv[2] || 3000);
const issuer = `http://127.0.0.1:${port}`;
const audience = process.argv[3] || `${issuer}/api`;
const secret = process.env.BENCH_CLIENT_SECRET || 'bench-secret-bench-secret-bench-secret';
const TOKEN_LIFETIME = 300; // seconds, as keybound-bench.toml's access_token_lifetime_secs

// A fresh ES256 signing key per run, as keybound serve makes one in its data directory.
const { privateKey } = await generateKeyPair('ES256', { extractable: true });
const signingJwk = { ...(await exportJWK(privateKey)), alg: 'ES256', use: 'sig', kid: 'bench-es256' };

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'bench',
      client_secret: secret,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_basic',
      dpop_bound_access_tokens: true,
      // No ID tokens are ever issued to it; this only keeps client validation from wanting an
      // RS256 key in the JWKS.
      id_token_signed_response_alg: 'ES256',
    },
  ],
  jwks: { keys: [signingJwk] },
  // Fixed: the provider only runs on loopback for a benchmark, and sets no cookies on this path.
  cookies: { keys: ['keybound-bench-cookie-key'] },
  scopes: ['openid', 'read'],
  ttl: { ClientCredentials: TOKEN_LIFETIME },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    // No nonceSecret: the provider never issues or requires DPoP nonces.
    dPoP: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => audience,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'read',
        audience,
        accessTokenTTL: TOKEN_LIFETIME,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'ES256' } },
      }),
    },
  },
});
// Errors a client causes are answered, not logged, as keybound does at its default log level.
provider.on('server_error', (_ctx, err) => console.error('server_error', err));

const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`node-oidc-provider ${issuer} (audience ${audience}, NODE_ENV=${process.env.NODE_ENV})`);
});
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => server.close(() => process.exit(0)));
