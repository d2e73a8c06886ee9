// node-oidc-provider configured for DPoP-bound client credentials, for keybound's interop test.
import Provider from 'oidc-provider';

const port = Number(process.argv[2] || 3000);
const issuer = `http://127.0.0.1:${port}`;
const provider = new Provider(issuer, {
  clients: [{
    client_id: 'app',
    client_secret: 's3cret-s3cret-s3cret-s3cret',
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_basic',
    dpop_bound_access_tokens: true,
  }],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    dPoP: { enabled: true, nonceSecret: Buffer.alloc(32, 7), requireNonce: () => true },
    introspection: { enabled: true },
  },
});
provider.listen(port, '127.0.0.1', () => console.log(`listening ${issuer}`));
