// A real OpenID Provider (panva/oidc-provider) on 127.0.0.1, for tests/test_oidc_discovery.py.
//
//   node server.js PORT JWKS_FILE      (PORT 0: any free port; also OP_PORT / OP_JWKS_FILE)
//
// JWKS_FILE holds the private signing keys the test generated, so the test knows the
// kids and can sign with the provider's own keys. The issuer is http://127.0.0.1:PORT
// (plain http on loopback: test-only). One client may use the client_credentials grant
// and gets JWT access tokens signed by the provider. Once listening, one line goes to
// stdout: `ready {"issuer": ..., "client_id": ..., "client_secret": ..., "resource": ...}`.

import { readFileSync } from 'node:fs';
import http from 'node:http';

import Provider from 'oidc-provider';

const port = Number(process.argv[2] ?? process.env.OP_PORT ?? 0);
const jwksFile = process.argv[3] ?? process.env.OP_JWKS_FILE;
if (!Number.isInteger(port) || !jwksFile) {
  console.error('usage: node server.js PORT JWKS_FILE');
  process.exit(2);
}
const jwks = JSON.parse(readFileSync(jwksFile, 'utf8'));
const client = { client_id: 'authsvc-test', client_secret: 'authsvc-test-secret' };
const resource = 'urn:authsvc:test';

const server = http.createServer();
server.listen(port, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    jwks,
    clients: [
      {
        ...client,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_post',
      },
    ],
    // Static cookie keys: without them the provider warns and makes random ones.
    cookies: { keys: ['authsvc-test-cookie-key'] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => resource,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: 'api',
          audience: resource,
          accessTokenTTL: 600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        }),
      },
    },
  });
  server.on('request', provider.callback());
  console.log(`ready ${JSON.stringify({ issuer, ...client, resource })}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections(); // idle keep-alive connections would hold close() back
  });
}
