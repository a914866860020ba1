import { randomBytes } from 'node:crypto';
import type { AccountService } from './services/accounts.js';
import type { Store } from './store/store.js';

/**
 * On an empty store, creates the default domain and its `postmaster` account with a
 * generated password, and returns that password (shown once, never stored in clear).
 * Used by the server on start and by every command line action.
 */
export async function bootstrapStore(store: Store, accounts: AccountService): Promise<string | undefined> {
  if ((await store.domains.list()).length > 0) return undefined;
  const password = randomBytes(12).toString('base64url');
  await accounts.createDomain(accounts.defaultDomain);
  await accounts.create({ address: `postmaster@${accounts.defaultDomain}`, password, realName: 'Postmaster' });
  return password;
}
