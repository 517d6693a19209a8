// The OpenID Connect provider the sign-in tests start on loopback: panva's oidc-provider (npm, pinned by
// package-lock.json beside this file, installed into .venv/oidc by scripts/_bootstrap.sh), with a real
// username + password login page in place of its development interactions.
//
//   node tests/oidc/provider.mjs CONFIG.json
//
// CONFIG.json (written by tests/signin/oidcprovider.py):
//   { "issuer": "http://127.0.0.1:PORT", "port": PORT, "clients": [...], "jwks": {"keys": [private RSA JWK]},
//     "cookie_key": "...", "accounts_file": "/tmp/.../accounts.json" }
// accounts.json: { "<username>": { "password": "...", "claims": { "email": ..., "groups": [...] } } }, read again
// on every login and every claims request, so a test changes a person's groups between two sign-ins by
// rewriting the file (as an administrator changes them in the identity provider).
import fs from 'node:fs';

import Provider from 'oidc-provider';

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const accounts = () => JSON.parse(fs.readFileSync(config.accounts_file, 'utf8'));

const provider = new Provider(config.issuer, {
  clients: config.clients,
  jwks: config.jwks,
  cookies: { keys: [config.cookie_key] },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'given_name', 'family_name', 'preferred_username'],
    groups: ['groups'],
  },
  scopes: ['openid', 'email', 'profile', 'groups'],
  features: { devInteractions: { enabled: false } },
  async findAccount(ctx, sub) {
    const account = accounts()[sub];
    if (!account) return undefined;
    return { accountId: sub, claims: async () => ({ sub, preferred_username: sub, ...account.claims }) };
  },
});

const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function loginPage(uid, clientId, error) {
  return `<!doctype html><html><head><meta charset="utf-8"><title>Test IdP sign-in</title></head><body>
<h1>Test identity provider</h1><p>Sign in to continue to ${escape(clientId)}.</p>
${error ? `<p class="error" role="alert">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login">
<label>Username <input name="username" autocomplete="username" autofocus></label>
<label>Password <input name="password" type="password" autocomplete="current-password"></label>
<button type="submit">Sign in</button></form></body></html>`;
}

async function formBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// The interactions: a login form checked against accounts.json, then consent granted for the scopes and
// claims asked for (a first-party client, as an organisation's IdP is configured for its own tools).
provider.use(async (ctx, next) => {
  const match = ctx.path.match(/^\/interaction\/([^/]+)(\/login)?$/);
  if (!match) return next();
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  const { uid, prompt, params } = details;
  if (prompt.name === 'login') {
    if (ctx.method === 'POST' && match[2]) {
      const form = await formBody(ctx.req);
      const username = form.get('username') || '';
      const account = accounts()[username];
      if (!account || account.password !== form.get('password')) {
        ctx.type = 'html';
        ctx.body = loginPage(uid, params.client_id, 'Invalid username or password.');
        return undefined;
      }
      const returnTo = await provider.interactionResult(ctx.req, ctx.res, { login: { accountId: username } }, {
        mergeWithLastSubmission: false,
      });
      ctx.status = 303;
      ctx.redirect(returnTo);
      return undefined;
    }
    ctx.type = 'html';
    ctx.body = loginPage(uid, params.client_id, '');
    return undefined;
  }
  if (prompt.name === 'consent') {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
    const missing = prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes || {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    const returnTo = await provider.interactionResult(ctx.req, ctx.res, { consent: { grantId } }, {
      mergeWithLastSubmission: true,
    });
    ctx.status = 303;
    ctx.redirect(returnTo);
    return undefined;
  }
  ctx.status = 400;
  ctx.body = `unexpected prompt ${prompt.name}`;
  return undefined;
});

provider.listen(config.port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${config.issuer}`);
});
