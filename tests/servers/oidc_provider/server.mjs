// npm oidc-provider 8.8.1 as an external OpenID Provider for Kursa's tests, on 127.0.0.1 only.
// Reads its client, signing keys and users from the JSON file named by OP_CONFIG.
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.env.OP_CONFIG, 'utf8'));
const ISSUER = `http://127.0.0.1:${config.port}`;
const USERS = config.users;

const oidc = new Provider(ISSUER, {
  clients: [{
    client_id: config.client_id,
    client_secret: config.client_secret,
    redirect_uris: [config.redirect_uri],
    post_logout_redirect_uris: config.post_logout_redirect_uri ? [config.post_logout_redirect_uri] : [],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: config.jwks,
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true }, rpInitiatedLogout: { enabled: true } },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    employee: ['employee_number'],
  },
  scopes: ['openid', 'email', 'profile', 'employee'],
  cookies: { keys: ['test-only-cookie-signing-key'] },
  async findAccount(ctx, id) {
    const user = USERS[id] || { preferred_username: id, email: `${id}@nowhere.test` };
    return { accountId: id, async claims() { return { sub: `sub-${id}`, ...user }; } };
  },
});
oidc.proxy = false;
const server = oidc.listen(config.port, '127.0.0.1', () => console.log(`listening on ${ISSUER}`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
