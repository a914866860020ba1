import { randomBytes } from 'node:crypto';
import { AccountService } from './services/accounts.js';
import type { Store } from './store/store.js';

/**
 * On an empty store, creates the default domain and its `postmaster` account, and returns
 * the postmaster's password: `password` when given (`ximssd init --password-file`), else a
 * generated one (shown once, never stored in clear). Undefined when the store had a domain
 * already. Used by `ximssd init` and by the server on start (`ximssd serve` on an empty
 * store); no other command creates a store. Several processes may start on one empty store
 * at once (cluster nodes): the one that creates the domain makes the postmaster; the others
 * find the domain taken and leave it to that one.
 */
export async function bootstrapStore(store: Store, accounts: AccountService, password?: string): Promise<string | undefined> {
  if ((await store.domains.list()).length > 0) return undefined;
  if (!(await accounts.createDomainIfMissing(accounts.defaultDomain))) return undefined;
  const chosen = password ?? randomBytes(12).toString('base64url');
  await accounts.create({ address: `postmaster@${accounts.defaultDomain}`, password: chosen, realName: 'Postmaster' });
  return chosen;
}
