// node-oidc-provider configured for keybound's interop tests: DPoP-bound client credentials
// ('app'), and the authorization-code flow with PKCE, PAR and DPoP-bound codes for a public
// native client ('native-app') and, when a public JWK is given as the second argument, a
// confidential client authenticating with private_key_jwt ('web-app'). A DPoP nonce is
// required everywhere. Usage: node provider.mjs PORT [CLIENT_ASSERTION_JWK_JSON]
import Provider from 'oidc-provider';

const port = Number(process.argv[2] || 3000);
const issuer = `http://127.0.0.1:${port}`;
const assertionJwk = process.argv[3] ? JSON.parse(process.argv[3]) : undefined;

const codeClient = {
  grant_types: ['authorization_code'],
  response_types: ['code'],
  dpop_bound_access_tokens: true,
};

const clients = [
  {
    client_id: 'app',
    client_secret: 's3cret-s3cret-s3cret-s3cret',
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_basic',
    dpop_bound_access_tokens: true,
  },
  {
    ...codeClient,
    client_id: 'native-app',
    application_type: 'native',
    redirect_uris: ['http://127.0.0.1/callback'],
    token_endpoint_auth_method: 'none',
  },
];
if (assertionJwk) {
  clients.push({
    ...codeClient,
    client_id: 'web-app',
    redirect_uris: ['https://app.example/callback'],
    token_endpoint_auth_method: 'private_key_jwt',
    jwks: { keys: [assertionJwk] },
  });
}

const provider = new Provider(issuer, {
  clients,
  // Fixed keys: this provider only ever runs on loopback for a test.
  cookies: { keys: ['keybound-interop-cookie-key'] },
  pkce: { required: () => true },
  features: {
    // The login and consent pages that the interop test fills in.
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    pushedAuthorizationRequests: { enabled: true },
    dPoP: { enabled: true, nonceSecret: Buffer.alloc(32, 7), requireNonce: () => true },
    introspection: { enabled: true },
  },
});
provider.listen(port, '127.0.0.1', () => console.log(`listening ${issuer}`));
