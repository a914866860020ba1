import { randomBytes } from 'node:crypto';
import { AccountService } from './services/accounts.js';
import { AlreadyExistsError, type Store } from './store/store.js';

/**
 * On an empty store, creates the default domain and its `postmaster` account with a
 * generated password, and returns that password (shown once, never stored in clear).
 * Used by the server on start and by every command line action. Several processes may
 * start on one empty store at once (cluster nodes): the one that creates the domain makes
 * the postmaster; the others find the domain taken and leave it to that one.
 */
export async function bootstrapStore(store: Store, accounts: AccountService): Promise<string | undefined> {
  if ((await store.domains.list()).length > 0) return undefined;
  try {
    await store.domains.create(AccountService.normalizeDomain(accounts.defaultDomain));
  } catch (err) {
    if (err instanceof AlreadyExistsError) return undefined;
    throw err;
  }
  const password = randomBytes(12).toString('base64url');
  await accounts.create({ address: `postmaster@${accounts.defaultDomain}`, password, realName: 'Postmaster' });
  return password;
}
