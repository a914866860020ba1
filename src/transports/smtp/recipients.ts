import type { AccountService } from '../../services/accounts.js';
import type { AccountRecord } from '../../store/store.js';

/** A recipient address as this server sees it. */
export type Recipient =
  | { kind: 'local'; account: AccountRecord }
  /** In a domain of ours, but no such account. */
  | { kind: 'unknown' }
  /** A domain that is not ours. */
  | { kind: 'remote' };

/**
 * Classifies a recipient address: an account of a local domain, an unknown address of a
 * local domain, or another domain's. `postmaster` of any local domain, and the bare
 * `postmaster` (the only address without a domain SMTP allows, RFC 5321 4.1.1.3), fall back
 * to postmaster of the default domain: every domain has one (RFC 5321 4.5.1).
 */
export async function resolveRecipient(accounts: AccountService, address: string): Promise<Recipient> {
  const at = address.lastIndexOf('@');
  const localPart = at < 0 ? address : address.slice(0, at);
  if (at >= 0) {
    let domain;
    try {
      domain = await accounts.getDomain(address.slice(at + 1));
    } catch {
      domain = undefined; // not a domain name of ours (an address literal, a bad name)
    }
    if (!domain) return { kind: 'remote' };
    const account = await accounts.find(address);
    if (account) return { kind: 'local', account };
  }
  if (localPart.toLowerCase() === 'postmaster') {
    const postmaster = await accounts.find(`postmaster@${accounts.defaultDomain}`);
    if (postmaster) return { kind: 'local', account: postmaster };
  }
  return { kind: 'unknown' };
}
