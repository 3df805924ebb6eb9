// node-oidc-provider on 127.0.0.1, for tests/it/interop.rs.
//
//   node oidc-provider.mjs PORT RESOURCE ORG...   (PORT 0: any free port)
//
// One confidential client per organization (an Auth0-style machine-to-machine
// application that belongs to that organization), allowed the
// client_credentials grant. With `resource=RESOURCE` the token endpoint
// issues RFC 9068 JWT access tokens whose `aud` is RESOURCE, signed RS256,
// carrying `org_id` (from `extraTokenClaims`) and `scope`.
//
// First stdout line:
//   {"issuer", "token_endpoint", "kid", "clients": {ORG: {"client_id", "client_secret"}}}
//
// Control: one command per stdin line, one JSON line per answer on stdout.
//   rotate  -> {"kid": NEW, "kids": [...]}  the provider is restarted in
//              place with a new RS256 key prepended to its `jwks` (the
//              rotation node-oidc-provider documents: the first key signs,
//              the others stay published). Same issuer, same port.
//   quit / end of stdin -> exit.

import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';
import { createInterface } from 'node:readline';
import Provider from 'oidc-provider';

// stdout carries the control protocol only; the library's notices go to stderr.
console.log = console.error;
console.info = console.error;

const [portArg, resource, ...orgs] = process.argv.slice(2);
const port = Number.parseInt(portArg ?? '', 10);
if (!Number.isInteger(port) || port < 0 || port > 65535 || !resource || orgs.length === 0) {
  console.error('usage: node oidc-provider.mjs PORT RESOURCE ORG...');
  process.exit(2);
}

const SCOPES = 'api:read api:write';
const clients = Object.fromEntries(
  orgs.map((org) => [org, { client_id: `svc-${org}`, client_secret: `secret-for-${org}-0123456789abcdef` }]),
);
const orgOfClient = Object.fromEntries(orgs.map((org) => [clients[org].client_id, org]));

let generation = 0;
const newKey = () => {
  generation += 1;
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: `oidc-rs256-${generation}`, alg: 'RS256', use: 'sig' };
};
let keys = [newKey()];

const configuration = () => ({
  clients: orgs.map((org) => ({
    ...clients[org],
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    scope: SCOPES,
  })),
  jwks: { keys },
  scopes: SCOPES.split(' '),
  ttl: { ClientCredentials: 600 },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, indicator) => {
        if (indicator !== resource) {
          throw new Provider.errors.InvalidTarget();
        }
        return {
          audience: resource,
          scope: SCOPES,
          accessTokenTTL: 600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  extraTokenClaims: (_ctx, token) => {
    const org = orgOfClient[token.clientId];
    return org ? { org_id: org } : undefined;
  },
});

let provider;
const start = () => {
  provider = new Provider(issuer, configuration());
  provider.on('server_error', (_ctx, err) => console.error('oidc-provider server_error:', err));
  provider.on('grant.error', (_ctx, err) => console.error('oidc-provider grant.error:', err.message, err.error_description ?? ''));
  return provider.callback();
};

// The issuer holds the port, so the socket is bound before any provider exists.
let handler = (_req, res) => {
  res.statusCode = 503;
  res.end();
};
const server = createServer((req, res) => handler(req, res));
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, '127.0.0.1', resolve);
});
const issuer = `http://127.0.0.1:${server.address().port}`;
handler = start();

const say = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
say({
  issuer,
  token_endpoint: `${issuer}/token`,
  kid: keys[0].kid,
  clients,
});

const stop = (code) => {
  server.closeAllConnections?.();
  server.close(() => process.exit(code));
  setTimeout(() => process.exit(code), 1000).unref();
};
process.on('SIGTERM', () => stop(0));
process.on('SIGINT', () => stop(0));

const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
  const [cmd] = line.trim().split(/\s+/);
  try {
    if (cmd === 'rotate') {
      keys = [newKey(), ...keys];
      handler = start();
      say({ kid: keys[0].kid, kids: keys.map((k) => k.kid) });
    } else if (cmd === 'quit') {
      break;
    } else if (cmd !== undefined && cmd !== '') {
      say({ error: `unknown command ${JSON.stringify(cmd)}` });
    }
  } catch (e) {
    say({ error: String(e?.stack ?? e) });
  }
}
stop(0);
