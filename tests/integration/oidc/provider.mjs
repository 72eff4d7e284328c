// A real OpenID Connect provider for iotiam's console sign-in tests (panva/oidc-provider).
//
// One confidential client (the console) whose redirect URI the test passes in, PKCE
// required, and three people with passwords and a `groups` claim in their ID token:
//   alice / alice-pw   groups: plant-a      (mapped to operator of /root/plant-a/)
//   bob   / bob-pw     groups: iot-admins   (mapped to admin of /root/)
//   carol / carol-pw   groups: marketing    (mapped to nothing: refused)
// Its own login page checks the password (devInteractions would take any); consent is
// granted at once, as for a first-party client.
//
// Usage: node provider.mjs <port> <redirect_uri> <client_secret>
// Prints "listening <issuer>" when it answers.

import { createServer } from 'node:http';
import { randomBytes } from 'node:crypto';
import Provider from 'oidc-provider';

const [port, redirectUri, clientSecret] = process.argv.slice(2);
if (!port || !redirectUri || !clientSecret) {
  console.error('usage: node provider.mjs <port> <redirect_uri> <client_secret>');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;

const PEOPLE = {
  alice: { password: 'alice-pw', email: 'alice@plant-a.example', groups: ['plant-a'] },
  bob: { password: 'bob-pw', email: 'bob@example.com', groups: ['iot-admins'] },
  carol: { password: 'carol-pw', email: 'carol@example.com', groups: ['marketing'] },
};

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'iotiam-console',
    client_secret: clientSecret,
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  // PKCE for every client, confidential ones too (only S256 is accepted by v9)
  pkce: { required: () => true },
  scopes: ['openid', 'email', 'groups'],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], groups: ['groups'] },
  // put the scopes' claims in the ID token itself, as Keycloak/Okta/Entra can be told to
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  ttl: { Session: 600, Interaction: 600, AuthorizationCode: 60, AccessToken: 300, IdToken: 300, Grant: 600 },
  async findAccount(ctx, id) {
    const person = PEOPLE[id];
    if (!person) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: person.email, email_verified: true, groups: person.groups };
      },
    };
  },
});

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function loginPage(uid, error) {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Test IdP sign-in</title></head>
<body><h1>Test IdP</h1>${error ? `<p role="alert">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login">
<label for="username">Username</label> <input id="username" name="username" autofocus>
<label for="password">Password</label> <input id="password" name="password" type="password">
<button type="submit">Log in</button></form></body></html>`;
}

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new Error('interaction mismatch');
  const { prompt, params, session } = details;
  if (prompt.name === 'login') {
    if (req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(loginPage(uid));
      return;
    }
    if (req.method === 'POST' && action === 'login') {
      const form = await readForm(req);
      const person = PEOPLE[form.get('username')];
      if (!person || person.password !== form.get('password')) {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
        res.end(loginPage(uid, 'Wrong username or password'));
        return;
      }
      await provider.interactionFinished(req, res, { login: { accountId: form.get('username') } },
        { mergeWithLastSubmission: false });
      return;
    }
  }
  if (prompt.name === 'consent') {
    // first-party client: consent is implied
    const grant = details.grantId ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    grant.addOIDCScope(params.scope);
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: { grantId } },
      { mergeWithLastSubmission: true });
    return;
  }
  res.writeHead(400, { 'content-type': 'text/plain' });
  res.end(`unexpected prompt ${prompt.name}`);
}

const callback = provider.callback();
const server = createServer((req, res) => {
  const match = /^\/interaction\/([\w-]+)(?:\/(login))?$/.exec(req.url.split('?')[0]);
  if (!match) {
    callback(req, res);
    return;
  }
  interaction(req, res, match[1], match[2]).catch((err) => {
    console.error(err);
    if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
    res.end(String(err));
  });
});
server.listen(Number(port), '127.0.0.1', () => {
  console.log(`listening ${issuer}`);
});
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => server.close(() => process.exit(0)));
