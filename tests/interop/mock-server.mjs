// oauth2-mock-server on 127.0.0.1, for tests/it/interop.rs.
//
//   node mock-server.mjs [PORT]        (PORT 0 or omitted: any free port)
//
// First stdout line: {"issuer", "token_endpoint", "kid"}.
// Tokens come from the provider's real token endpoint:
//   POST {token_endpoint}  grant_type=client_credentials&aud=A&scope=S&org_id=O
// `org_id` (a form field) is copied into the token by the
// `beforeTokenSigning` hook, as an Auth0 Organization would add it.
//
// Control: one command per stdin line, one JSON line per answer on stdout.
//   rotate  -> {"kid": NEW, "kids": [...]}  a new RS256 key is generated and
//              published; the store signs round-robin over its keys, so the
//              next tokens alternate between the old and the new key.
//   quit / end of stdin -> exit.

import { createInterface } from 'node:readline';
import { OAuth2Server, Events } from 'oauth2-mock-server';

// stdout carries the control protocol only.
console.log = console.error;
console.info = console.error;

const port = Number.parseInt(process.argv[2] ?? '0', 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`usage: node mock-server.mjs [PORT]; got ${process.argv[2]}`);
  process.exit(2);
}

const server = new OAuth2Server();
let generation = 0;
const newKey = async () => {
  generation += 1;
  const key = await server.issuer.keys.generate('RS256', { kid: `mock-rs256-${generation}` });
  return key.kid;
};
const firstKid = await newKey();

server.service.on(Events.BeforeTokenSigning, (token, req) => {
  const org = req.body?.org_id;
  if (typeof org === 'string' && org !== '') {
    token.payload.org_id = org;
  }
  const clientId = req.body?.client_id;
  if (typeof clientId === 'string' && token.payload.sub === undefined) {
    token.payload.sub = `${clientId}@clients`;
  }
});

await server.start(port, '127.0.0.1');
// The library names a loopback listener `localhost` in its issuer; pin the
// address we actually listen on so nothing resolves `localhost` to ::1.
server.issuer.url = `http://127.0.0.1:${server.address().port}`;

const say = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
say({
  issuer: server.issuer.url,
  token_endpoint: `${server.issuer.url}/token`,
  kid: firstKid,
});

const stop = async (code) => {
  await server.stop().catch(() => {});
  process.exit(code);
};
process.on('SIGTERM', () => stop(0));
process.on('SIGINT', () => stop(0));

const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
  const [cmd] = line.trim().split(/\s+/);
  try {
    if (cmd === 'rotate') {
      const kid = await newKey();
      say({ kid, kids: server.issuer.keys.toJSON().map((k) => k.kid) });
    } else if (cmd === 'quit') {
      break;
    } else if (cmd !== undefined && cmd !== '') {
      say({ error: `unknown command ${JSON.stringify(cmd)}` });
    }
  } catch (e) {
    say({ error: String(e?.stack ?? e) });
  }
}
await stop(0);
