/**
 * The store contract: what every engine of the Store interface (src/store/store.ts,
 * queue.ts, rules.ts, datasets.ts) must do, written against the interface only, so that
 * the same tests run on the embedded SQLite engine (test/store-sqlite.test.ts) and on the
 * PostgreSQL engine (test/store-postgres.test.ts).
 *
 * Every describe block gets a new empty store of its own (`fresh`); a test that needs a
 * second process opens another handle on it (`harness.open()`), which is how the
 * concurrent-writer tests race two writers. No assertion depends on how long anything
 * takes: times handed to the store are fixed numbers, and waiting for a relay message has
 * a deadline only so that a lost message fails instead of hanging.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { DatasetLimitError, emailKey, type DatasetAttributes, type DatasetLimits } from '../../src/store/datasets.js';
import type { NewQueuedMessage, QueueLease, RecipientState, RecipientUpdate } from '../../src/store/queue.js';
import type { RuleGuard, RuleRecord } from '../../src/store/rules.js';
import {
  AlreadyExistsError,
  MAX_RELAY_MESSAGE,
  NotFoundError,
  QuotaExceededError,
  type AccountRecord,
  type AppendResult,
  type FlagDelta,
  type MailboxRecord,
  type MailboxStats,
  type MessageMeta,
  type NewAccount,
  type NewMessage,
  type SessionRecord,
  type Store,
} from '../../src/store/store.js';
import type { XimssValue } from '../../src/xml/objects.js';
import { fileStoreContract } from './files.js';
import { accountAclContract } from './account-acl.js';
import { calendarIndexContract } from './calendar-index.js';
import { davNamesContract } from './dav-names.js';
import { imContract } from './im.js';
import { meetingsContract } from './meetings.js';
import { billingContract } from './billing.js';
import { smimeContract } from './smime.js';
import { registrationsContract } from './registrations.js';
import { remoteSipContract } from './remote-sip.js';
import { remoteMailContract } from './remote-mail.js';
import { loginSecurityContract } from './login-security.js';

export interface StoreHarness {
  /** Opens a new handle on the same store (another process, as far as the store can tell). */
  open(): Promise<Store>;
}

/** Makes a new empty store; `destroy` cleans it up after every handle on it was closed. */
export type FreshStore = () => Promise<{ harness: StoreHarness; destroy(): Promise<void> }>;

// ---------------------------------------------------------------------------------------
// Builders: small and deterministic.

/** A fixed point in time (ms) the tests count from. */
const T = 1_700_000_000_000;
const DAY = 86_400_000;

/** Flag bits as the services use them (src/services/mail/flags.ts). */
const F = { Seen: 1, Answered: 2, Flagged: 4, Deleted: 8, Draft: 16, Recent: 32, Media: 64, MDNSent: 256 } as const;

let counter = 0;
/** A name no other test of the file uses. */
export function unique(prefix: string): string {
  return `${prefix}${++counter}`;
}

export function newAccount(domain: string, name: string, extra: Partial<NewAccount> = {}): NewAccount {
  return { domain, name, passwordHash: '$scrypt$fake', cramMd5Context: null, ...extra };
}

interface MessageOptions {
  flags?: number;
  keywords?: readonly string[];
  internalDate?: number;
  /** The stored header block (a binary string: one char per byte). */
  header?: string;
  raw?: Buffer;
  subject?: string;
  date?: number | null;
  origUid?: number;
  attrs?: { [key: string]: XimssValue } | null;
}

/** Message `i`: its own subject, sender and internal date (T + i s). */
export function message(i: number, options: MessageOptions = {}): NewMessage {
  const subject = options.subject ?? `m${i}`;
  const header = options.header ?? `Subject: ${subject}\r\nMessage-ID: <m${i}@contract.test>\r\n`;
  const raw = options.raw ?? Buffer.from(`${header}\r\nbody ${i}\r\n`, 'latin1');
  const result: NewMessage = {
    raw,
    flags: options.flags ?? 0,
    keywords: options.keywords ?? [],
    internalDate: options.internalDate ?? T + i * 1000,
    header,
    envelope: { date: options.date ?? null, dateShift: 0, from: `sender${i}@contract.test`, to: 'rcpt@contract.test', cc: '', subject, priority: 0 },
  };
  if (options.origUid !== undefined) result.origUid = options.origUid;
  if (options.attrs !== undefined) result.attrs = options.attrs;
  return result;
}

/** A message of exactly `size` bytes (at least 40). */
function sized(i: number, size: number, options: MessageOptions = {}): NewMessage {
  const header = `Subject: s${i}\r\n`;
  const head = Buffer.from(`${header}\r\n`, 'latin1');
  assert.ok(size >= head.length + 1);
  return message(i, { ...options, header, raw: Buffer.concat([head, Buffer.alloc(size - head.length, 0x61)]) });
}

function delta(d: Partial<FlagDelta>): FlagDelta {
  return { set: 0, clear: 0, addKeywords: [], removeKeywords: [], ...d };
}

function queued(created: number, recipients: readonly string[], options: { key?: string | null; sender?: string } = {}): NewQueuedMessage {
  return {
    sender: options.sender ?? 'from@contract.test',
    raw: Buffer.from(`Subject: queued\r\n\r\nqueued at ${created} for ${recipients.join(', ')}\r\n`),
    created,
    expires: created + 5 * DAY,
    ret: 'HDRS',
    envid: `env-${created}`,
    source: 'authenticated',
    key: options.key ?? null,
    recipients: recipients.map((address) => ({ address, notify: 'SUCCESS,FAILURE', orcpt: `rfc822;${address}` })),
  };
}

function outcome(
  address: string,
  state: RecipientState,
  o: { nextAttempt?: number; attempted?: boolean; status?: string | null; diagnostic?: string | null; remoteMta?: string | null } = {},
): RecipientUpdate {
  return {
    address,
    state,
    attempted: o.attempted ?? true,
    nextAttempt: o.nextAttempt ?? T,
    status: o.status !== undefined ? o.status : state === 'failed' ? '5.1.1' : state === 'pending' ? '4.4.1' : '2.0.0',
    diagnostic: o.diagnostic ?? null,
    remoteMta: o.remoteMta ?? null,
  };
}

function lease(owner: string, until: number): QueueLease {
  return { owner, until };
}

function rule(name: string, priority: number, extra: Partial<RuleRecord> = {}): RuleRecord {
  return {
    type: 'mailIn',
    name,
    priority,
    stage: null,
    conditions: [{ opCode: 'From', operator: 'is', parameter: `*@${name.toLowerCase()}.test` }],
    actions: [{ opCode: 'Store in', parameter: name }],
    comment: null,
    ...extra,
  };
}

/** A guard that lets the write through and records what it was shown. */
function recordingGuard(): RuleGuard & { calls: { existing: RuleRecord | undefined; count: number }[] } {
  const calls: { existing: RuleRecord | undefined; count: number }[] = [];
  const guard = (existing: RuleRecord | undefined, count: number): void => {
    calls.push({ existing, count });
  };
  return Object.assign(guard, { calls });
}

const refusingGuard = (): never => {
  throw new GuardRefusal();
};
class GuardRefusal extends Error {}

const roomy: DatasetLimits = { maxDatasets: 100, maxEntries: 100, maxAttributes: 20, maxEntryBytes: 4096 };

/** A plain object with the same own properties (dataset attributes are null-prototype objects). */
function plain(attrs: DatasetAttributes): Record<string, string> {
  return Object.fromEntries(Object.entries(attrs));
}

/** The counters mailboxStats must give for these messages. */
function statsOf(messages: readonly MessageMeta[]): MailboxStats {
  const stats: MailboxStats = { messages: messages.length, unseen: 0, media: 0, unseenMedia: 0, size: 0, oldest: null };
  for (const m of messages) {
    const seen = (m.flags & F.Seen) !== 0;
    const media = (m.flags & F.Media) !== 0;
    if (!seen) stats.unseen++;
    if (media) stats.media++;
    if (media && !seen) stats.unseenMedia++;
    stats.size += m.size;
    stats.oldest = stats.oldest === null ? m.internalDate : Math.min(stats.oldest, m.internalDate);
  }
  return stats;
}

/** Every mailbox's stats of the account against its messages; accountUsage against their sizes. */
async function checkCounters(store: Store, accountId: number): Promise<Map<number, MailboxStats>> {
  const boxes = await store.mail.listMailboxes(accountId);
  const stats = await store.mail.mailboxStats(accountId);
  let total = 0;
  for (const box of boxes) {
    const expected = statsOf(await store.mail.listMessages(box.id));
    assert.deepEqual(stats.get(box.id), expected, `stats of ${box.name}`);
    total += expected.size;
  }
  assert.equal(stats.size, boxes.length, 'one entry per mailbox');
  assert.equal(await store.mail.accountUsage(accountId), total, 'accountUsage');
  return stats;
}

const byUid = (a: { uid: number }, b: { uid: number }): number => a.uid - b.uid;
const numeric = (a: number, b: number): number => a - b;
const sorted = <X>(xs: readonly X[], compare?: (a: X, b: X) => number): X[] => [...xs].sort(compare);

/** Waits until `check` holds; fails (rather than hanging) after `ms`. */
async function eventually(what: string, check: () => boolean | Promise<boolean>, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`${what}: still not so after ${ms} ms`);
    await sleep(20);
  }
}

// ---------------------------------------------------------------------------------------
// One store per describe block.

export interface Context {
  /** The first handle on this describe's store. */
  readonly store: Store;
  /** Another handle on the same store (closed after the describe). */
  open(): Promise<Store>;
  /** A new account in a new domain. */
  account(name?: string): Promise<AccountRecord>;
  /** A new mailbox of a new account (or of `accountId`). */
  mailbox(accountId?: number): Promise<MailboxRecord>;
}

export function useStore(fresh: FreshStore): Context {
  let made: Awaited<ReturnType<FreshStore>> | undefined;
  let first: Store | undefined;
  const handles: Store[] = [];
  const ctx: Context = {
    get store(): Store {
      if (!first) throw new Error('the store did not open (see the before hook)');
      return first;
    },
    async open() {
      if (!made) throw new Error('no store yet');
      const handle = await made.harness.open();
      handles.push(handle);
      return handle;
    },
    async account(name = 'user') {
      const domain = `${unique('d')}.test`;
      await ctx.store.domains.create(domain);
      return ctx.store.accounts.create(newAccount(domain, unique(name)));
    },
    async mailbox(accountId) {
      const owner = accountId ?? (await ctx.account()).id;
      return ctx.store.mail.createMailbox(owner, unique('Box'), '', false);
    },
  };
  before(async () => {
    made = await fresh();
    first = await ctx.open();
  });
  after(async () => {
    try {
      for (const handle of handles.splice(0).reverse()) await handle.close();
    } finally {
      await made?.destroy();
    }
  });
  return ctx;
}

/** A test with a timeout, so that an engine that hangs fails instead. */
export function it(name: string, fn: () => Promise<void>): void {
  test(name, { timeout: 60_000 }, fn);
}

// ---------------------------------------------------------------------------------------

/** Registers the contract's describe/test blocks; `fresh` makes a new empty store (each describe gets its own) and cleans it up after. */
export function storeContract(engine: string, fresh: FreshStore): void {
  describe(`store contract (${engine})`, () => {
    domainsAndAccounts(engine, fresh);
    alertsAndMeta(fresh);
    mailboxes(fresh);
    messages(fresh);
    flagsAndChanges(fresh);
    countersAndQuota(fresh);
    concurrentMail(fresh);
    concurrentDecisions(fresh);
    storedReadModifyWrite(fresh);
    queue(fresh);
    rules(fresh);
    datasets(fresh);
    fileStoreContract(fresh);
    accountAclContract(fresh);
    davNamesContract(fresh);
    calendarIndexContract(fresh);
    imContract(fresh);
    registrationsContract(fresh);
    meetingsContract(fresh);
    remoteSipContract(fresh);
    billingContract(fresh);
    smimeContract(fresh);
    remoteMailContract(fresh);
    loginSecurityContract(fresh);
    cluster(fresh);
    sharedState(fresh);
    relay(fresh);
  });
}

// ---------------------------------------------------------------------------------------

function domainsAndAccounts(engine: string, fresh: FreshStore): void {
  describe('domains and accounts', () => {
    const c = useStore(fresh);

    it('the engine says what it is', async () => {
      assert.equal(c.store.engine, engine);
    });

    it('domains: create, get, list, update settings, remove', async () => {
      const created = await c.store.domains.create('b.test', { SignupAllowed: 'Yes' });
      assert.equal(created.name, 'b.test');
      assert.ok(created.created instanceof Date);
      assert.deepEqual(created.settings, { SignupAllowed: 'Yes' });
      await c.store.domains.create('a.test');
      const ours = (await c.store.domains.list()).map((d) => d.name).filter((n) => n === 'a.test' || n === 'b.test');
      assert.deepEqual(ours, ['a.test', 'b.test']);
      const read = (await c.store.domains.get('b.test'))!;
      assert.deepEqual(read.settings, { SignupAllowed: 'Yes' });
      assert.equal(read.created.getTime(), created.created.getTime());
      assert.equal(await c.store.domains.get('nope.test'), undefined);
      const nested = { SignupAllowed: 'No', AccountDefaults: { PWDAllowed: 'No', List: ['1', '2'] } };
      await c.store.domains.updateSettings('b.test', nested);
      assert.deepEqual((await c.store.domains.get('b.test'))?.settings, nested);
      assert.equal(await c.store.domains.remove('a.test'), true);
      assert.equal(await c.store.domains.remove('a.test'), false);
      assert.equal(await c.store.domains.get('a.test'), undefined);
      assert.ok(!(await c.store.domains.list()).some((d) => d.name === 'a.test'));
    });

    it('a duplicate domain is an AlreadyExistsError', async () => {
      await c.store.domains.create('dup.test');
      await assert.rejects(c.store.domains.create('dup.test'), AlreadyExistsError);
    });

    it('a domain with accounts is not removed', async () => {
      await c.store.domains.create('busy.test');
      const account = await c.store.accounts.create(newAccount('busy.test', 'u'));
      assert.equal(await c.store.domains.remove('busy.test'), false);
      assert.ok(await c.store.domains.get('busy.test'));
      assert.equal(await c.store.accounts.remove(account.id), true);
      assert.equal(await c.store.domains.remove('busy.test'), true);
    });

    it('accounts: create, get by name and id, list, count', async () => {
      await c.store.domains.create('one.test');
      await c.store.domains.create('two.test');
      const a = await c.store.accounts.create(
        newAccount('one.test', 'alice', { realName: 'Alice', recoveryEmail: 'a@x.test', settings: { PWDAllowed: 'No' }, cramMd5Context: 'ab01' }),
      );
      assert.equal(a.domain, 'one.test');
      assert.equal(a.name, 'alice');
      assert.equal(a.realName, 'Alice');
      assert.equal(a.recoveryEmail, 'a@x.test');
      assert.equal(a.passwordHash, '$scrypt$fake');
      assert.equal(a.cramMd5Context, 'ab01');
      assert.deepEqual(a.settings, { PWDAllowed: 'No' });
      assert.deepEqual(a.prefs, {});
      assert.equal(a.prevLogin, null);
      assert.equal(a.lastFailedLogin, null);
      assert.equal(a.credentialsVersion, 1);
      assert.ok(a.created instanceof Date);
      const b = await c.store.accounts.create(newAccount('one.test', 'bob'));
      assert.equal(b.realName, null);
      assert.equal(b.recoveryEmail, null);
      assert.deepEqual(b.settings, {});
      const cc = await c.store.accounts.create(newAccount('two.test', 'alice'));
      assert.notEqual(a.id, b.id);
      assert.notEqual(a.id, cc.id);
      assert.deepEqual(await c.store.accounts.get('one.test', 'alice'), a);
      assert.deepEqual(await c.store.accounts.getById(cc.id), cc);
      assert.equal(await c.store.accounts.get('one.test', 'carol'), undefined);
      assert.equal(await c.store.accounts.getById(999_999), undefined);
      const listed = (await c.store.accounts.list()).map((x) => `${x.name}@${x.domain}`).filter((x) => /@(one|two)\.test$/.test(x));
      assert.deepEqual(listed, ['alice@one.test', 'bob@one.test', 'alice@two.test']);
      assert.deepEqual((await c.store.accounts.list('one.test')).map((x) => x.name), ['alice', 'bob']);
      assert.deepEqual(await c.store.accounts.list('one.test').then((l) => l[0]), a);
      assert.equal(await c.store.accounts.count('one.test'), 2);
      assert.equal(await c.store.accounts.count('two.test'), 1);
      assert.equal(await c.store.accounts.count('none.test'), 0);
    });

    it('a duplicate name in the same domain is an AlreadyExistsError; in another domain it is fine', async () => {
      await c.store.domains.create('dup1.test');
      await c.store.domains.create('dup2.test');
      await c.store.accounts.create(newAccount('dup1.test', 'alice'));
      await assert.rejects(c.store.accounts.create(newAccount('dup1.test', 'alice')), AlreadyExistsError);
      await c.store.accounts.create(newAccount('dup2.test', 'alice'));
      assert.equal(await c.store.accounts.count('dup1.test'), 1);
    });

    it('SCRAM verifiers: kept at creation, and later only while the password is the one they were made from', async () => {
      const domain = `${unique('scram')}.test`;
      await c.store.domains.create(domain);
      const without = await c.store.accounts.create(newAccount(domain, 'plain'));
      assert.equal(without.scramCredentials, null);
      const a = await c.store.accounts.create(newAccount(domain, 'alice', { scramCredentials: '{"v":0}' }));
      assert.equal(a.scramCredentials, '{"v":0}');
      assert.equal(await c.store.accounts.setScramCredentials(a.id, '{"v":1}', a.credentialsVersion), true);
      const b = (await c.store.accounts.getById(a.id))!;
      assert.equal(b.scramCredentials, '{"v":1}');
      assert.equal(b.credentialsVersion, a.credentialsVersion, 'keeping verifiers is not a password change');
      await c.store.accounts.setPassword(a.id, '$scrypt$new', null, null, null);
      assert.equal(await c.store.accounts.setScramCredentials(a.id, '{"v":"old password"}', a.credentialsVersion), false, 'the password changed since');
      assert.equal((await c.store.accounts.getById(a.id))!.scramCredentials, null);
      assert.equal(await c.store.accounts.setScramCredentials(a.id, '{"v":2}', a.credentialsVersion + 1), true);
      assert.equal((await c.store.accounts.getById(a.id))!.scramCredentials, '{"v":2}');
      assert.equal(await c.store.accounts.setScramCredentials(999_999_999, '{}', 1), false, 'no such account');
    });

    it('Digest credentials: kept at creation, and later only while the password is the one they were made from', async () => {
      const domain = `${unique('digest')}.test`;
      await c.store.domains.create(domain);
      const without = await c.store.accounts.create(newAccount(domain, 'plain'));
      assert.equal(without.digestCredentials, null);
      const a = await c.store.accounts.create(newAccount(domain, 'alice', { digestCredentials: '{"d":0}' }));
      assert.equal(a.digestCredentials, '{"d":0}');
      assert.equal(a.scramCredentials, null, 'the two kinds are kept apart');
      assert.equal(await c.store.accounts.setDigestCredentials(a.id, '{"d":1}', a.credentialsVersion), true);
      const b = (await c.store.accounts.getById(a.id))!;
      assert.equal(b.digestCredentials, '{"d":1}');
      assert.equal(b.credentialsVersion, a.credentialsVersion, 'keeping credentials is not a password change');
      await c.store.accounts.setPassword(a.id, '$scrypt$new', null, '{"s":1}', '{"d":2}');
      const changed = (await c.store.accounts.getById(a.id))!;
      assert.equal(changed.digestCredentials, '{"d":2}', 'a password change brings its own');
      assert.equal(changed.scramCredentials, '{"s":1}');
      assert.equal(await c.store.accounts.setDigestCredentials(a.id, '{"d":"old password"}', a.credentialsVersion), false, 'the password changed since');
      assert.equal((await c.store.accounts.getById(a.id))!.digestCredentials, '{"d":2}');
      await c.store.accounts.setPassword(a.id, '$scrypt$newer', null, null, null);
      assert.equal((await c.store.accounts.getById(a.id))!.digestCredentials, null);
      assert.equal(await c.store.accounts.setDigestCredentials(a.id, '{"d":3}', a.credentialsVersion + 2), true);
      const kept = (await c.store.accounts.getById(a.id))!;
      assert.equal(kept.digestCredentials, '{"d":3}');
      assert.equal(kept.scramCredentials, null, 'keeping one kind leaves the other alone');
      assert.equal(await c.store.accounts.setDigestCredentials(999_999_999, '{}', 1), false, 'no such account');
    });

    it('an account in a domain that does not exist is refused (and is not a duplicate)', async () => {
      await assert.rejects(c.store.accounts.create(newAccount('ghost.test', 'x')), (err: unknown) => !(err instanceof AlreadyExistsError));
      assert.equal(await c.store.accounts.get('ghost.test', 'x'), undefined);
    });

    it('updates: password (bumps credentialsVersion, nothing else does), recovery E-mail, real name, settings, prefs, logins', async () => {
      const a = await c.account('alice');
      await c.store.accounts.setPassword(a.id, '$scrypt$other', 'abcd', '{"scram":1}', '{"digest":1}');
      await c.store.accounts.setRecoveryEmail(a.id, 'r@x.test');
      await c.store.accounts.setRealName(a.id, 'Alice A.');
      await c.store.accounts.setSettings(a.id, { RulesAllowed: 'No' });
      await c.store.accounts.setPrefs(a.id, { TimeZone: 'Asia/Tokyo', Nested: { a: ['1', '2'] } });
      const login = { time: new Date(T), address: '192.0.2.1' };
      const failed = { time: new Date(T + 100_000), address: '2001:db8::1' };
      await c.store.accounts.recordLogin(a.id, login);
      await c.store.accounts.recordFailedLogin(a.id, failed);
      const b = (await c.store.accounts.getById(a.id))!;
      assert.equal(b.passwordHash, '$scrypt$other');
      assert.equal(b.cramMd5Context, 'abcd');
      assert.equal(b.scramCredentials, '{"scram":1}');
      assert.equal(b.digestCredentials, '{"digest":1}');
      assert.equal(b.credentialsVersion, a.credentialsVersion + 1);
      assert.equal(b.recoveryEmail, 'r@x.test');
      assert.equal(b.realName, 'Alice A.');
      assert.deepEqual(b.settings, { RulesAllowed: 'No' });
      assert.deepEqual(b.prefs, { TimeZone: 'Asia/Tokyo', Nested: { a: ['1', '2'] } });
      assert.deepEqual(b.prevLogin, login);
      assert.deepEqual(b.lastFailedLogin, failed);
      await c.store.accounts.setPassword(a.id, '$scrypt$third', null, null, null);
      await c.store.accounts.setRecoveryEmail(a.id, null);
      await c.store.accounts.setRealName(a.id, null);
      const d = (await c.store.accounts.getById(a.id))!;
      assert.equal(d.credentialsVersion, a.credentialsVersion + 2);
      assert.equal(d.cramMd5Context, null);
      assert.equal(d.scramCredentials, null);
      assert.equal(d.digestCredentials, null);
      assert.equal(d.recoveryEmail, null);
      assert.equal(d.realName, null);
      assert.deepEqual(d.prevLogin, login, 'a failed login does not touch the last login');
    });

    it('remove: true once; the name can be taken again; an account goes with what it has', async () => {
      const a = await c.account('gone');
      const box = await c.store.mail.createMailbox(a.id, 'INBOX', '', false);
      await c.store.mail.append(box.id, [message(1)]);
      await c.store.mail.setSubscribed(a.id, 'INBOX', true);
      await c.store.mail.setAlias(a.id, 'In', 'INBOX');
      await c.store.alerts.post(a.id, 'hello', new Date(T));
      await c.store.accounts.setAliases(a.id, ['gone-alias']);
      await c.store.accounts.addPasswordReset(unique('token'), a.id, Date.now() + DAY);
      await c.store.rules.put(a.id, rule('R', 5), () => {});
      await c.store.rules.claimReply(a.id, 'R', 'x@y.test', T, T - DAY);
      await c.store.datasets.setEntry(a.id, 'Contacts', 'e', { changes: { email: 'x@y.test' }, createDataset: true }, roomy);
      assert.equal(await c.store.accounts.remove(a.id), true);
      assert.equal(await c.store.accounts.remove(a.id), false);
      assert.equal(await c.store.accounts.get(a.domain, a.name), undefined);
      assert.equal(await c.store.accounts.getById(a.id), undefined);
      assert.equal(await c.store.accounts.getByAlias(a.domain, 'gone-alias'), undefined);
      assert.equal(await c.store.mail.getMailboxById(box.id), undefined);
      assert.deepEqual(await c.store.alerts.pending(a.id), []);
      assert.deepEqual(await c.store.rules.list(a.id, 'mailIn'), []);
      assert.equal(await c.store.datasets.exists(a.id, 'Contacts'), false);
      await c.store.accounts.create(newAccount(a.domain, a.name));
      assert.equal(await c.store.accounts.getByAlias(a.domain, 'gone-alias'), undefined);
    });

    it('aliases: replaced as a whole, unique in their domain (a conflict changes nothing), gone with the account', async () => {
      const domain = `${unique('alias')}.test`;
      const other = `${unique('alias')}.test`;
      await c.store.domains.create(domain);
      await c.store.domains.create(other);
      const a = await c.store.accounts.create(newAccount(domain, 'alice'));
      const b = await c.store.accounts.create(newAccount(domain, 'bob'));
      const z = await c.store.accounts.create(newAccount(other, 'zed'));
      assert.deepEqual(await c.store.accounts.aliases(a.id), []);
      await c.store.accounts.setAliases(a.id, ['al', 'alice2']);
      await c.store.accounts.setAliases(b.id, ['bobby']);
      assert.deepEqual(sorted(await c.store.accounts.aliases(a.id)), ['al', 'alice2']);
      assert.equal((await c.store.accounts.getByAlias(domain, 'al'))?.id, a.id);
      assert.deepEqual(await c.store.accounts.getByAlias(domain, 'alice2'), await c.store.accounts.getById(a.id));
      assert.equal(await c.store.accounts.getByAlias(other, 'al'), undefined, 'an alias is per domain');
      assert.equal(await c.store.accounts.getByAlias(domain, 'alice'), undefined, 'a name is not an alias');

      await assert.rejects(c.store.accounts.setAliases(b.id, ['bob2', 'al']), AlreadyExistsError);
      assert.deepEqual(await c.store.accounts.aliases(b.id), ['bobby'], 'the refused change left the old aliases');
      assert.equal(await c.store.accounts.getByAlias(domain, 'bob2'), undefined);
      assert.equal((await c.store.accounts.getByAlias(domain, 'al'))?.id, a.id);

      await c.store.accounts.setAliases(z.id, ['al']);
      assert.equal((await c.store.accounts.getByAlias(other, 'al'))?.id, z.id);

      await c.store.accounts.setAliases(a.id, ['alice3']);
      assert.deepEqual(await c.store.accounts.aliases(a.id), ['alice3']);
      assert.equal(await c.store.accounts.getByAlias(domain, 'al'), undefined);
      await c.store.accounts.setAliases(b.id, ['bobby', 'al']);
      assert.equal((await c.store.accounts.getByAlias(domain, 'al'))?.id, b.id);
      await c.store.accounts.setAliases(b.id, []);
      assert.deepEqual(await c.store.accounts.aliases(b.id), []);
      await c.store.accounts.remove(a.id);
      assert.equal(await c.store.accounts.getByAlias(domain, 'alice3'), undefined);
      await c.store.accounts.setAliases(b.id, ['alice3']);
    });

    it('password-reset tokens: found until they expire, taken once, taking one takes the account\'s others', async () => {
      const a = await c.account();
      const b = await c.account();
      const now = Date.now();
      const expires = now + 3_600_000;
      const [t1, t2, t3] = [unique('hash-'), unique('hash-'), unique('hash-')];
      await c.store.accounts.addPasswordReset(t1, a.id, expires);
      await c.store.accounts.addPasswordReset(t2, a.id, expires);
      await c.store.accounts.addPasswordReset(t3, b.id, expires);
      assert.equal(await c.store.accounts.findPasswordReset(t1, now), a.id);
      assert.equal(await c.store.accounts.findPasswordReset(t1, now), a.id, 'finding does not use it up');
      assert.equal(await c.store.accounts.findPasswordReset(t1, expires + 1), undefined, 'expired');
      assert.equal(await c.store.accounts.findPasswordReset('no-such-hash', now), undefined);
      assert.equal(await c.store.accounts.takePasswordReset(t1, now), a.id);
      assert.equal(await c.store.accounts.takePasswordReset(t1, now), undefined, 'used up');
      assert.equal(await c.store.accounts.findPasswordReset(t2, now), undefined, "the account's other token went too");
      assert.equal(await c.store.accounts.findPasswordReset(t3, now), b.id, "another account's token stays");
      assert.equal(await c.store.accounts.takePasswordReset(t3, expires + 1), undefined, 'an expired token is not taken');
      assert.equal(await c.store.accounts.takePasswordReset('no-such-hash', now), undefined);
    });
  });
}

function alertsAndMeta(fresh: FreshStore): void {
  describe('alerts and meta', () => {
    const c = useStore(fresh);

    it('alerts: pending until confirmed, oldest first; accountsWithPending; removed with their account', async () => {
      const a = await c.account('alice');
      const b = await c.account('bob');
      assert.deepEqual(await c.store.alerts.pending(a.id), []);
      assert.deepEqual(await c.store.alerts.accountsWithPending(), []);
      const first = await c.store.alerts.post(a.id, 'first', new Date(T));
      const second = await c.store.alerts.post(a.id, 'second ☺ <&>', new Date(T + 1000));
      assert.equal(first.accountId, a.id);
      assert.equal(first.text, 'first');
      assert.equal(first.posted.getTime(), T);
      assert.notEqual(first.id, second.id);
      await c.store.alerts.post(b.id, 'for bob', new Date(T));
      assert.deepEqual(await c.store.alerts.pending(a.id), [first, second]);
      assert.deepEqual(sorted(await c.store.alerts.accountsWithPending(), numeric), sorted([a.id, b.id], numeric));
      await c.store.alerts.confirm(first.id);
      assert.deepEqual(await c.store.alerts.pending(a.id), [second]);
      await c.store.alerts.confirm(second.id);
      assert.deepEqual(await c.store.alerts.pending(a.id), []);
      assert.deepEqual(await c.store.alerts.accountsWithPending(), [b.id]);
      await c.store.accounts.remove(b.id);
      assert.deepEqual(await c.store.alerts.accountsWithPending(), []);
      assert.deepEqual(await c.store.alerts.pending(b.id), []);
    });

    it('meta: get and upsert, seen by another handle', async () => {
      assert.equal(await c.store.meta.get('secret'), undefined);
      await c.store.meta.set('secret', 'one');
      await c.store.meta.set('secret', 'two');
      assert.equal(await c.store.meta.get('secret'), 'two');
      const other = await c.open();
      assert.equal(await other.meta.get('secret'), 'two');
      await other.meta.set('identity', 'ünïcode ☺');
      assert.equal(await c.store.meta.get('identity'), 'ünïcode ☺');
    });
  });
}

// ---------------------------------------------------------------------------------------
// Mail

/** Changes the store decides from what is stored, in one transaction: settings, preferences, ACLs, expunging the Deleted. */
function storedReadModifyWrite(fresh: FreshStore): void {
  describe('changes decided on what is stored', () => {
    const c = useStore(fresh);

    it('account settings and preferences, and domain settings, merge key by key (null removes); concurrent merges of other keys are all kept', async () => {
      const account = await c.account('merge');
      await c.store.accounts.setSettings(account.id, { Keep: 'yes', Drop: 'x' });
      assert.deepEqual(await c.store.accounts.mergeSettings(account.id, { Drop: null, Added: { Nested: ['1'] } }), { Keep: 'yes', Added: { Nested: ['1'] } });
      // The real name and the recovery address change in the same transaction (undefined: left as they are).
      await c.store.accounts.mergeSettings(account.id, {}, { realName: 'Merged Name', recoveryEmail: 'merged@elsewhere.test' });
      let stored = await c.store.accounts.getById(account.id);
      assert.equal(stored?.realName, 'Merged Name');
      assert.equal(stored?.recoveryEmail, 'merged@elsewhere.test');
      await c.store.accounts.mergeSettings(account.id, { Keep: 'still' }, { realName: null });
      stored = await c.store.accounts.getById(account.id);
      assert.equal(stored?.realName, null);
      assert.equal(stored?.recoveryEmail, 'merged@elsewhere.test');
      assert.equal(stored?.settings.Keep, 'still');
      await assert.rejects(c.store.accounts.mergeSettings(-1, {}, { realName: 'nobody' }), NotFoundError);
      assert.deepEqual((await c.store.accounts.getById(account.id))?.settings, { Keep: 'still', Added: { Nested: ['1'] } });
      const other = await c.open();
      await Promise.all(
        Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? c.store : other).accounts.mergePrefs(account.id, { [`Key${i}`]: String(i) })),
      );
      const prefs = (await c.store.accounts.getById(account.id))!.prefs;
      assert.equal(Object.keys(prefs).length, 20, `every merge kept: ${JSON.stringify(prefs)}`);
      await assert.rejects(c.store.accounts.mergePrefs(987_654, { A: '1' }), NotFoundError);
      // Public Info: a dictionary of its own, beside settings and preferences.
      assert.deepEqual(await c.store.accounts.mergePublicInfo(account.id, { Title: 'Engineer', Phone: ['1', '2'] }), { Title: 'Engineer', Phone: ['1', '2'] });
      assert.deepEqual(await other.accounts.mergePublicInfo(account.id, { Title: null }), { Phone: ['1', '2'] });
      const withInfo = (await c.store.accounts.getById(account.id))!;
      assert.deepEqual(withInfo.publicInfo, { Phone: ['1', '2'] });
      assert.equal(Object.keys(withInfo.prefs).length, 20, 'the preferences are untouched');
      await assert.rejects(c.store.accounts.mergePublicInfo(987_654, { A: '1' }), NotFoundError);

      const domain = `${unique('merge')}.test`;
      await c.store.domains.create(domain, { A: '1' });
      await Promise.all([c.store.domains.mergeSettings(domain, { B: '2' }), other.domains.mergeSettings(domain, { C: '3' })]);
      assert.deepEqual((await c.store.domains.get(domain))?.settings, { A: '1', B: '2', C: '3' });
      await assert.rejects(c.store.domains.mergeSettings('missing.test', { A: '1' }), NotFoundError);
      // Within a dictionary (a domain's AccountDefaults): created when missing, removed when left empty;
      // the domain's own settings and the dictionary change in the one transaction.
      assert.deepEqual(await c.store.domains.mergeSettings(domain, { D: '4' }, { AccountDefaults: { MaxAccountSize: '1M' } }), { A: '1', B: '2', C: '3', D: '4', AccountDefaults: { MaxAccountSize: '1M' } });
      await Promise.all([
        c.store.domains.mergeSettings(domain, {}, { AccountDefaults: { RulesAllowed: 'None' } }),
        other.domains.mergeSettings(domain, {}, { AccountDefaults: { PWDAllowed: 'No' } }),
      ]);
      assert.deepEqual((await c.store.domains.get(domain))?.settings.AccountDefaults, { MaxAccountSize: '1M', RulesAllowed: 'None', PWDAllowed: 'No' });
      await c.store.domains.mergeSettings(domain, { D: null }, { AccountDefaults: { MaxAccountSize: null, RulesAllowed: null, PWDAllowed: null } });
      assert.deepEqual((await c.store.domains.get(domain))?.settings, { A: '1', B: '2', C: '3' });
      await assert.rejects(c.store.domains.mergeSettings('missing.test', { A: '1' }, { AccountDefaults: {} }), NotFoundError);
    });

    it('highestModseqs reads the modseq of each existing mailbox at once', async () => {
      const [one, two] = [await c.mailbox(), await c.mailbox()];
      await c.store.mail.append(two.id, [message(0)]);
      const modseqs = await c.store.mail.highestModseqs([one.id, two.id, 987_654]);
      assert.deepEqual([...modseqs].sort((x, y) => x[0] - y[0]), [
        [one.id, one.highestModseq],
        [two.id, two.highestModseq + 1],
      ]);
      assert.equal((await c.store.mail.highestModseqs([])).size, 0);
    });

    it('ACL updates apply to the ACL as stored: concurrent updates from two handles are all kept; a throwing change changes nothing', async () => {
      const box = await c.mailbox();
      const other = await c.open();
      await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          (i % 2 === 0 ? c.store : other).mail.updateMailboxAcl(box.id, (acl) => [...acl, { pattern: `user${i}`, rights: 'lr' }]),
        ),
      );
      const acl = (await c.store.mail.getMailboxById(box.id))!.acl;
      assert.deepEqual(acl.map((e) => e.pattern).sort(), Array.from({ length: 10 }, (_, i) => `user${i}`).sort());
      await assert.rejects(
        c.store.mail.updateMailboxAcl(box.id, () => {
          throw new Error('refused');
        }),
        /refused/,
      );
      assert.deepEqual((await c.store.mail.getMailboxById(box.id))!.acl, acl);
      await assert.rejects(c.store.mail.updateMailboxAcl(987_654, (x) => [...x]), NotFoundError);
    });

    it('expunge with onlyDeleted removes only the messages whose Deleted flag is set as stored', async () => {
      const box = await c.mailbox();
      const r = await c.store.mail.append(box.id, [message(0, { flags: F.Deleted }), message(1), message(2, { flags: F.Deleted | F.Seen })]);
      const [u0, u1, u2] = r.messages.map((m) => m.uid) as [number, number, number];
      // Another handle clears one Deleted flag: that message stays.
      await (await c.open()).mail.updateFlags(box.id, [u2], delta({ clear: F.Deleted }));
      const result = await c.store.mail.expunge(box.id, [u0, u1, u2], { onlyDeleted: true });
      assert.deepEqual(result.removed.map((x) => x.uid), [u0]);
      assert.deepEqual((await c.store.mail.listMessages(box.id)).map((m) => m.uid), [u1, u2]);
      const nothing = await c.store.mail.expunge(box.id, [u1, u2], { onlyDeleted: true });
      assert.deepEqual(nothing.removed, []);
      assert.equal(nothing.modseq, result.modseq, 'nothing removed: modseq unchanged');
    });
  });
}

function mailboxes(fresh: FreshStore): void {
  describe('mailboxes', () => {
    const c = useStore(fresh);

    it('create, get by name and id, list; a taken name is an AlreadyExistsError; names are per account', async () => {
      const a = await c.account();
      const inbox = await c.store.mail.createMailbox(a.id, 'INBOX', '', false);
      assert.equal(inbox.name, 'INBOX');
      assert.equal(inbox.accountId, a.id);
      assert.equal(inbox.mailboxClass, '');
      assert.equal(inbox.pureFolder, false);
      assert.deepEqual(inbox.acl, []);
      assert.ok(Number.isInteger(inbox.uidValidity) && inbox.uidValidity > 0);
      assert.ok(Number.isInteger(inbox.uidNext) && inbox.uidNext >= 1);
      assert.ok(Number.isInteger(inbox.highestModseq));
      const calendar = await c.store.mail.createMailbox(a.id, 'Calendar', 'IPF.Appointment', false);
      assert.equal(calendar.mailboxClass, 'IPF.Appointment');
      const folder = await c.store.mail.createMailbox(a.id, 'Lists', '', true);
      assert.equal(folder.pureFolder, true);
      assert.deepEqual(await c.store.mail.getMailbox(a.id, 'INBOX'), inbox);
      assert.deepEqual(await c.store.mail.getMailboxById(calendar.id), calendar);
      assert.equal(await c.store.mail.getMailbox(a.id, 'Nope'), undefined);
      assert.equal(await c.store.mail.getMailboxById(999_999), undefined);
      assert.deepEqual(sorted((await c.store.mail.listMailboxes(a.id)).map((m) => m.name)), ['Calendar', 'INBOX', 'Lists']);
      await assert.rejects(c.store.mail.createMailbox(a.id, 'INBOX', '', false), AlreadyExistsError);
      await assert.rejects(c.store.mail.createMailbox(a.id, 'Lists', '', true), AlreadyExistsError);
      const b = await c.account();
      const otherInbox = await c.store.mail.createMailbox(b.id, 'INBOX', '', false);
      assert.notEqual(otherInbox.id, inbox.id);
      assert.deepEqual((await c.store.mail.listMailboxes(b.id)).map((m) => m.name), ['INBOX']);
    });

    it('overPureFolder: a pure folder becomes the new mailbox (same id); a mailbox does not', async () => {
      const a = await c.account();
      const folder = await c.store.mail.createMailbox(a.id, 'Projects', '', true);
      await assert.rejects(c.store.mail.createMailbox(a.id, 'Projects', 'IPF.Note', false), AlreadyExistsError);
      const box = await c.store.mail.createMailbox(a.id, 'Projects', 'IPF.Note', false, { overPureFolder: true });
      assert.equal(box.id, folder.id);
      assert.equal(box.pureFolder, false);
      assert.equal(box.mailboxClass, 'IPF.Note');
      assert.deepEqual(await c.store.mail.getMailbox(a.id, 'Projects'), box);
      assert.equal((await c.store.mail.listMailboxes(a.id)).length, 1);
      await assert.rejects(c.store.mail.createMailbox(a.id, 'Projects', '', false, { overPureFolder: true }), AlreadyExistsError);
      const plainBox = await c.store.mail.createMailbox(a.id, 'Fresh', '', false, { overPureFolder: true });
      assert.equal(plainBox.pureFolder, false);
      await c.store.mail.append(box.id, [message(1)]);
      assert.equal((await c.store.mail.listMessages(box.id)).length, 1);
    });

    it('rename: several in one go (ids kept), a swap, and a taken name refuses all of them', async () => {
      const a = await c.account();
      const parent = await c.store.mail.createMailbox(a.id, 'A', '', false);
      const child = await c.store.mail.createMailbox(a.id, 'A/Sub', '', false);
      const b = await c.store.mail.createMailbox(a.id, 'B', '', false);
      const taken = await c.store.mail.createMailbox(a.id, 'C', '', false);
      await c.store.mail.append(parent.id, [message(1)]);
      await c.store.mail.renameMailboxes(a.id, [{ from: 'A', to: 'X' }, { from: 'A/Sub', to: 'X/Sub' }]);
      assert.equal(await c.store.mail.getMailbox(a.id, 'A'), undefined);
      assert.equal(await c.store.mail.getMailbox(a.id, 'A/Sub'), undefined);
      const x = (await c.store.mail.getMailbox(a.id, 'X'))!;
      assert.equal(x.id, parent.id);
      assert.equal(x.uidValidity, parent.uidValidity);
      assert.equal((await c.store.mail.getMailbox(a.id, 'X/Sub'))?.id, child.id);
      assert.equal((await c.store.mail.listMessages(x.id)).length, 1, 'the messages went with it');

      await c.store.mail.renameMailboxes(a.id, [{ from: 'X', to: 'B' }, { from: 'B', to: 'X' }]);
      assert.equal((await c.store.mail.getMailbox(a.id, 'B'))?.id, parent.id);
      assert.equal((await c.store.mail.getMailbox(a.id, 'X'))?.id, b.id);

      await assert.rejects(c.store.mail.renameMailboxes(a.id, [{ from: 'X/Sub', to: 'Y' }, { from: 'X', to: 'C' }]), AlreadyExistsError);
      assert.equal((await c.store.mail.getMailbox(a.id, 'X/Sub'))?.id, child.id, 'the first rename was undone');
      assert.equal(await c.store.mail.getMailbox(a.id, 'Y'), undefined);
      assert.equal((await c.store.mail.getMailbox(a.id, 'X'))?.id, b.id);
      assert.equal((await c.store.mail.getMailbox(a.id, 'C'))?.id, taken.id);
      assert.deepEqual(sorted((await c.store.mail.listMailboxes(a.id)).map((m) => m.name)), ['B', 'C', 'X', 'X/Sub']);
    });

    it('remove: with their messages, in one go; leavePureFolders leaves a new empty pure folder', async () => {
      const a = await c.account();
      const one = await c.store.mail.createMailbox(a.id, 'One', '', false);
      const two = await c.store.mail.createMailbox(a.id, 'Two', '', false);
      const parent = await c.store.mail.createMailbox(a.id, 'Parent', 'IPF.Note', false);
      const child = await c.store.mail.createMailbox(a.id, 'Parent/Child', '', false);
      await c.store.mail.append(one.id, [sized(1, 100)]);
      await c.store.mail.append(two.id, [sized(2, 200)]);
      await c.store.mail.append(parent.id, [sized(3, 300), sized(4, 400)]);
      await c.store.mail.append(child.id, [sized(5, 500)]);
      assert.equal(await c.store.mail.accountUsage(a.id), 1500);

      await c.store.mail.removeMailboxes([one.id, two.id]);
      assert.equal(await c.store.mail.getMailboxById(one.id), undefined);
      assert.equal(await c.store.mail.getMailboxById(two.id), undefined);
      assert.equal(await c.store.mail.readRaw(one.id, 1), undefined);
      assert.deepEqual(await c.store.mail.listMessages(two.id), []);
      assert.equal(await c.store.mail.accountUsage(a.id), 1200);

      await c.store.mail.removeMailboxes([parent.id], { leavePureFolders: true });
      const folder = (await c.store.mail.getMailbox(a.id, 'Parent'))!;
      assert.ok(folder, 'a pure folder of the same name');
      assert.equal(folder.pureFolder, true);
      assert.notEqual(folder.id, parent.id, 'a new folder');
      assert.equal(await c.store.mail.getMailboxById(parent.id), undefined);
      assert.deepEqual(await c.store.mail.listMessages(folder.id), []);
      assert.equal((await c.store.mail.mailboxStats(a.id)).get(folder.id)?.messages, 0);
      assert.equal(await c.store.mail.accountUsage(a.id), 500);
      assert.equal((await c.store.mail.listMessages(child.id)).length, 1, 'the child is untouched');
      assert.deepEqual(sorted((await c.store.mail.listMailboxes(a.id)).map((m) => m.name)), ['Parent', 'Parent/Child']);
      // The folder can become a mailbox again.
      const again = await c.store.mail.createMailbox(a.id, 'Parent', '', false, { overPureFolder: true });
      assert.equal(again.id, folder.id);
    });

    it('ACL: replaced through updateMailboxAcl', async () => {
      const box = await c.mailbox();
      const acl = [
        { pattern: 'bob@contract.test', rights: 'lrsw' },
        { pattern: 'anyone', rights: 'l' },
      ];
      assert.deepEqual(await c.store.mail.updateMailboxAcl(box.id, () => acl), acl);
      assert.deepEqual((await c.store.mail.getMailboxById(box.id))?.acl, acl);
      await c.store.mail.updateMailboxAcl(box.id, () => []);
      assert.deepEqual((await c.store.mail.getMailboxById(box.id))?.acl, []);
    });

    it('subscriptions and mailbox aliases, per account', async () => {
      const a = await c.account();
      const b = await c.account();
      assert.deepEqual(await c.store.mail.subscriptions(a.id), []);
      await c.store.mail.setSubscribed(a.id, 'INBOX', true);
      await c.store.mail.setSubscribed(a.id, 'Lists/Node', true);
      await c.store.mail.setSubscribed(a.id, 'INBOX', true);
      await c.store.mail.setSubscribed(b.id, 'Other', true);
      assert.deepEqual(sorted(await c.store.mail.subscriptions(a.id)), ['INBOX', 'Lists/Node']);
      await c.store.mail.setSubscribed(a.id, 'INBOX', false);
      await c.store.mail.setSubscribed(a.id, 'Never', false);
      assert.deepEqual(await c.store.mail.subscriptions(a.id), ['Lists/Node']);
      assert.deepEqual(await c.store.mail.subscriptions(b.id), ['Other']);

      assert.deepEqual(await c.store.mail.aliases(a.id), []);
      await c.store.mail.setAlias(a.id, 'Work', 'INBOX/Work');
      await c.store.mail.setAlias(a.id, 'Home', 'INBOX');
      await c.store.mail.setAlias(b.id, 'Work', 'Elsewhere');
      const byName = (x: { name: string }, y: { name: string }): number => (x.name < y.name ? -1 : 1);
      assert.deepEqual(sorted(await c.store.mail.aliases(a.id), byName), [
        { name: 'Home', target: 'INBOX' },
        { name: 'Work', target: 'INBOX/Work' },
      ]);
      await c.store.mail.setAlias(a.id, 'Work', 'Other');
      assert.deepEqual(sorted(await c.store.mail.aliases(a.id), byName), [
        { name: 'Home', target: 'INBOX' },
        { name: 'Work', target: 'Other' },
      ]);
      await c.store.mail.setAlias(a.id, 'Work', null);
      await c.store.mail.setAlias(a.id, 'Missing', null);
      assert.deepEqual(await c.store.mail.aliases(a.id), [{ name: 'Home', target: 'INBOX' }]);
      assert.deepEqual(await c.store.mail.aliases(b.id), [{ name: 'Work', target: 'Elsewhere' }]);
    });
  });
}

function messages(fresh: FreshStore): void {
  describe('messages', () => {
    const c = useStore(fresh);

    it('append: UIDs from uidNext, modseq +1 per append, UIDVALIDITY kept, the metadata as given', async () => {
      const box = await c.mailbox();
      const r1 = await c.store.mail.append(box.id, [message(0), message(1)]);
      assert.deepEqual(r1.messages.map((m) => m.uid), [box.uidNext, box.uidNext + 1]);
      assert.deepEqual(r1.messages.map((m) => m.origUid), [box.uidNext, box.uidNext + 1], 'ORIGUID: the UID');
      assert.equal(r1.modseq, box.highestModseq + 1);
      assert.ok(r1.messages.every((m) => m.modseq === r1.modseq));
      assert.equal(r1.uidNext, box.uidNext + 2);
      assert.equal(r1.replaced, null);
      const m0 = message(0);
      assert.deepEqual(r1.messages[0], {
        uid: box.uidNext,
        origUid: box.uidNext,
        modseq: r1.modseq,
        flags: 0,
        keywords: [],
        internalDate: m0.internalDate,
        size: m0.raw.length,
        ...m0.envelope,
        attrs: null,
      });
      let read = (await c.store.mail.getMailboxById(box.id))!;
      assert.equal(read.uidNext, r1.uidNext);
      assert.equal(read.highestModseq, r1.modseq);
      assert.equal(read.uidValidity, box.uidValidity);

      const attrs = { Color: 'red', List: ['a', 'b'], Dict: { k: 'v' } };
      const m2 = message(2, {
        flags: F.Seen | F.Flagged,
        keywords: ['$Label1', 'Work'],
        attrs,
        date: T - 3_600_000,
        subject: '=?utf-8?q?caf=C3=A9?=',
      });
      m2.envelope = { ...m2.envelope, dateShift: -18_000, cc: 'cc@contract.test', priority: 2 };
      const r2 = await c.store.mail.append(box.id, [m2]);
      assert.equal(r2.modseq, r1.modseq + 1);
      const stored = r2.messages[0]!;
      assert.equal(stored.uid, r1.uidNext);
      assert.equal(stored.flags, F.Seen | F.Flagged);
      assert.deepEqual(stored.keywords, ['$Label1', 'Work']);
      assert.deepEqual(stored.attrs, attrs);
      assert.equal(stored.date, T - 3_600_000);
      assert.equal(stored.dateShift, -18_000);
      assert.equal(stored.cc, 'cc@contract.test');
      assert.equal(stored.priority, 2);
      assert.equal(stored.subject, '=?utf-8?q?caf=C3=A9?=');
      assert.deepEqual(await c.store.mail.getMessage(box.id, stored.uid), stored);
      assert.deepEqual(await c.store.mail.listMessages(box.id), [...r1.messages, ...r2.messages]);
      assert.equal(await c.store.mail.getMessage(box.id, 999), undefined);

      const r3 = await c.store.mail.append(box.id, [message(3, { origUid: 77 })]);
      assert.equal(r3.messages[0]!.origUid, 77, 'an explicit ORIGUID is kept');
      assert.equal(r3.modseq, r2.modseq + 1);
      read = (await c.store.mail.getMailboxById(box.id))!;
      assert.equal(read.uidValidity, box.uidValidity);
      assert.equal(read.highestModseq, r3.modseq);
      assert.equal(read.uidNext, r3.uidNext);
    });

    it('append to a mailbox that is gone is a NotFoundError', async () => {
      const box = await c.mailbox();
      await c.store.mail.removeMailboxes([box.id]);
      await assert.rejects(c.store.mail.append(box.id, [message(1)]), NotFoundError);
    });

    it('a delivery key makes an append idempotent (in any mailbox); the key is only recorded with what it stored', async () => {
      const box = await c.mailbox();
      const other = await c.mailbox();
      const key = unique('q1/alice/store/');
      const r1 = await c.store.mail.append(box.id, [message(1)], { deliveryKey: key });
      assert.equal(r1.messages.length, 1);
      const r2 = await c.store.mail.append(box.id, [message(1)], { deliveryKey: key });
      assert.deepEqual(r2.messages, []);
      assert.equal(r2.modseq, r1.modseq);
      assert.equal(r2.uidNext, r1.uidNext);
      assert.equal(r2.replaced, null);
      assert.deepEqual((await c.store.mail.append(other.id, [message(1)], { deliveryKey: key })).messages, []);
      assert.equal((await c.store.mail.listMessages(box.id)).length, 1);
      assert.deepEqual(await c.store.mail.listMessages(other.id), []);
      assert.equal((await c.store.mail.getMailboxById(box.id))?.highestModseq, r1.modseq);

      // A refused append records nothing: the same key goes through afterwards.
      const failing = unique('q2/alice/store/');
      await assert.rejects(
        c.store.mail.append(box.id, [sized(2, 1000)], { deliveryKey: failing, quota: { accountId: box.accountId, limit: 100 } }),
        QuotaExceededError,
      );
      assert.equal((await c.store.mail.append(box.id, [message(2)], { deliveryKey: failing })).messages.length, 1);
    });

    it('replace: by UID or ORIGUID, in the same transaction (one modseq); mustExist; keepOrigUid', async () => {
      const box = await c.mailbox();
      const r1 = await c.store.mail.append(box.id, [message(1)]);
      const u1 = r1.messages[0]!.uid;
      const r2 = await c.store.mail.append(box.id, [message(2)], { replace: { uid: u1, byOrigUid: false, mustExist: true, keepOrigUid: true } });
      assert.equal(r2.replaced, u1);
      assert.equal(r2.modseq, r1.modseq + 1);
      const u2 = r2.messages[0]!.uid;
      assert.equal(u2, r1.uidNext);
      assert.equal(r2.messages[0]!.origUid, u1, 'keepOrigUid');
      assert.equal(await c.store.mail.getMessage(box.id, u1), undefined);
      const changes = await c.store.mail.changesSince(box.id, r1.modseq);
      assert.deepEqual(changes.removed, [{ uid: u1, origUid: u1, modseq: r2.modseq }]);
      assert.deepEqual(changes.changed.map((m) => m.uid), [u2]);
      assert.equal((await c.store.mail.getMailboxById(box.id))?.highestModseq, r2.modseq);

      // By ORIGUID: u2 has ORIGUID u1.
      const r3 = await c.store.mail.append(box.id, [message(3)], { replace: { uid: u1, byOrigUid: true, mustExist: true, keepOrigUid: false } });
      assert.equal(r3.replaced, u2);
      const u3 = r3.messages[0]!.uid;
      assert.equal(r3.messages[0]!.origUid, u3, 'not kept: its own UID');
      assert.deepEqual((await c.store.mail.listMessages(box.id)).map((m) => m.uid), [u3]);

      const before = (await c.store.mail.getMailboxById(box.id))!;
      await assert.rejects(
        c.store.mail.append(box.id, [message(4)], { replace: { uid: 999, byOrigUid: false, mustExist: true, keepOrigUid: false } }),
        NotFoundError,
      );
      const after = (await c.store.mail.getMailboxById(box.id))!;
      assert.equal(after.uidNext, before.uidNext, 'nothing stored');
      assert.equal(after.highestModseq, before.highestModseq);
      const r5 = await c.store.mail.append(box.id, [message(5)], { replace: { uid: 999, byOrigUid: true, mustExist: false, keepOrigUid: true } });
      assert.equal(r5.replaced, null);
      assert.equal(r5.messages[0]!.origUid, r5.messages[0]!.uid);
      assert.deepEqual((await c.store.mail.listMessages(box.id)).map((m) => m.uid), [u3, r5.messages[0]!.uid]);
    });

    it('readRaw and readHeaders give back the bytes as stored (latin1 header bytes, binary bodies)', async () => {
      const box = await c.mailbox();
      let high = '';
      for (let b = 0x80; b <= 0xff; b++) high += String.fromCharCode(b);
      const header = `Subject: caf\xe9 \x80\x81\xfe\xff\r\nX-High: ${high}\r\nX-Tab:\tend\r\n`;
      const body = Buffer.alloc(3 * 256);
      for (let i = 0; i < body.length; i++) body[i] = i % 256;
      const raw = Buffer.concat([Buffer.from(header, 'latin1'), Buffer.from('\r\n'), body]);
      const plainMessage = message(2);
      const r = await c.store.mail.append(box.id, [message(1, { header, raw, subject: 'caf\xe9' }), plainMessage]);
      const [u1, u2] = r.messages.map((m) => m.uid) as [number, number];
      assert.equal(r.messages[0]!.size, raw.length);
      const readBack = await c.store.mail.readRaw(box.id, u1);
      assert.ok(readBack && Buffer.isBuffer(readBack));
      assert.equal(readBack.length, raw.length);
      assert.ok(readBack.equals(raw), 'the same bytes');
      assert.ok((await c.store.mail.readRaw(box.id, u2))?.equals(plainMessage.raw));
      assert.equal(await c.store.mail.readRaw(box.id, 999), undefined);
      const headers = await c.store.mail.readHeaders(box.id, [u1, 999, u2]);
      assert.equal(headers.size, 2, 'missing UIDs are left out');
      assert.equal(headers.get(u1), header);
      assert.equal(headers.get(u2), plainMessage.header);
      assert.equal((await c.store.mail.getMessage(box.id, u1))?.subject, 'caf\xe9');
      assert.equal((await c.store.mail.readHeaders(box.id, [])).size, 0);
    });

    it('keyset pages by UID add up to the whole mailbox, through removals', async () => {
      const box = await c.mailbox();
      const other = await c.mailbox(box.accountId);
      await c.store.mail.append(other.id, [message(-1)]);
      const appended = await c.store.mail.append(box.id, Array.from({ length: 250 }, (_, i) => message(i)));
      const first = appended.messages[0]!.uid;
      const uid = (n: number): number => first + n;
      await c.store.mail.expunge(box.id, [uid(2), uid(3), uid(99)]);
      const all = await c.store.mail.listMessages(box.id);
      assert.equal(all.length, 247);
      assert.ok(all.every((m, i) => i === 0 || m.uid > all[i - 1]!.uid), 'UID order');

      const paged: MessageMeta[] = [];
      let reads = 0;
      for (let afterUid = 0; ; reads++) {
        const page = await c.store.mail.listMessages(box.id, { afterUid, limit: 40 });
        assert.ok(page.length <= 40);
        assert.ok(page.every((m, i) => m.uid > afterUid && (i === 0 || m.uid > page[i - 1]!.uid)), 'above afterUid, ascending');
        paged.push(...page);
        if (page.length < 40) break;
        afterUid = page[page.length - 1]!.uid;
      }
      assert.deepEqual(paged, all, 'the pages are the mailbox, in UID order');
      assert.equal(reads, 6);
      assert.deepEqual(await c.store.mail.listMessages(box.id, { afterUid: appended.uidNext, limit: 10 }), []);
      assert.deepEqual(
        (await c.store.mail.listMessages(box.id, { afterUid: uid(1), limit: 3 })).map((m) => m.uid),
        [uid(4), uid(5), uid(6)],
        'removed UIDs are skipped',
      );
    });

    it('copy: new UIDs in the target, marked Recent, missing UIDs skipped, the source untouched', async () => {
      const a = await c.account();
      const src = await c.mailbox(a.id);
      const dst = await c.mailbox(a.id);
      const appended = await c.store.mail.append(src.id, [
        message(0, { flags: F.Seen, keywords: ['Work'], attrs: { Note: 'x' } }),
        message(1),
        message(2, { flags: F.Flagged | F.Media }),
      ]);
      const [s0, , s2] = appended.messages as [MessageMeta, MessageMeta, MessageMeta];
      const srcBefore = (await c.store.mail.getMailboxById(src.id))!;
      const dstBefore = (await c.store.mail.getMailboxById(dst.id))!;
      const copied = await c.store.mail.copy(src.id, [s0.uid, 999, s2.uid], dst.id, { move: false });
      assert.deepEqual(copied.copied.map((x) => x.from), [s0.uid, s2.uid]);
      assert.deepEqual(copied.copied.map((x) => x.to.uid), [dstBefore.uidNext, dstBefore.uidNext + 1]);
      assert.equal(copied.modseq, dstBefore.highestModseq + 1);
      assert.equal(copied.sourceModseq, srcBefore.highestModseq, 'a copy does not change the source');
      assert.equal(copied.uidNext, dstBefore.uidNext + 2);
      const to0 = copied.copied[0]!.to;
      assert.equal(to0.flags, F.Seen | F.Recent);
      assert.deepEqual(to0.keywords, ['Work']);
      assert.deepEqual(to0.attrs, { Note: 'x' });
      assert.equal(to0.modseq, copied.modseq);
      assert.equal(to0.size, s0.size);
      assert.equal(to0.internalDate, s0.internalDate);
      assert.equal(to0.subject, s0.subject);
      assert.equal(to0.from, s0.from);
      assert.equal(copied.copied[1]!.to.flags, F.Flagged | F.Media | F.Recent);
      assert.deepEqual(await c.store.mail.getMessage(dst.id, to0.uid), to0);
      assert.ok((await c.store.mail.readRaw(dst.id, to0.uid))?.equals(message(0).raw));
      assert.equal((await c.store.mail.readHeaders(dst.id, [to0.uid])).get(to0.uid), message(0).header);
      assert.deepEqual(await c.store.mail.listMessages(src.id), appended.messages, 'the source is as it was');
      const dstAfter = (await c.store.mail.getMailboxById(dst.id))!;
      assert.equal(dstAfter.highestModseq, copied.modseq);
      assert.equal(dstAfter.uidNext, copied.uidNext);
      assert.equal((await c.store.mail.getMailboxById(src.id))?.highestModseq, srcBefore.highestModseq);

      // Nothing to copy, nothing to append: no modseq is used.
      const nothing = await c.store.mail.copy(src.id, [997, 998], dst.id, { move: true });
      assert.deepEqual(nothing.copied, []);
      assert.equal(nothing.modseq, dstAfter.highestModseq);
      assert.equal(nothing.sourceModseq, srcBefore.highestModseq);
      assert.equal(nothing.uidNext, dstAfter.uidNext);
      const empty = await c.store.mail.append(dst.id, []);
      assert.deepEqual(empty, { messages: [], modseq: dstAfter.highestModseq, replaced: null, uidNext: dstAfter.uidNext });
      assert.equal((await c.store.mail.getMailboxById(dst.id))?.highestModseq, dstAfter.highestModseq);

      // A copy's body outlives its original.
      await c.store.mail.expunge(src.id, [s0.uid]);
      assert.ok((await c.store.mail.readRaw(dst.id, to0.uid))?.equals(message(0).raw));
    });

    it('move: removed from the source as one modseq (sourceModseq); inside one mailbox, two modseqs', async () => {
      const a = await c.account();
      const src = await c.mailbox(a.id);
      const dst = await c.mailbox(a.id);
      const appended = await c.store.mail.append(src.id, [message(0), message(1), message(2)]);
      const [s0, s1, s2] = appended.messages as [MessageMeta, MessageMeta, MessageMeta];
      const dstBefore = (await c.store.mail.getMailboxById(dst.id))!;
      const moved = await c.store.mail.copy(src.id, [s1.uid, 999], dst.id, { move: true });
      assert.deepEqual(moved.copied.map((x) => x.from), [s1.uid]);
      assert.equal(moved.copied[0]!.to.flags, F.Recent);
      assert.equal(moved.modseq, dstBefore.highestModseq + 1);
      assert.equal(moved.sourceModseq, appended.modseq + 1);
      assert.equal((await c.store.mail.getMailboxById(src.id))?.highestModseq, moved.sourceModseq);
      assert.deepEqual((await c.store.mail.listMessages(src.id)).map((m) => m.uid), [s0.uid, s2.uid]);
      assert.equal((await c.store.mail.listMessages(dst.id)).length, 1);
      const changes = await c.store.mail.changesSince(src.id, appended.modseq);
      assert.deepEqual(changes.removed, [{ uid: s1.uid, origUid: s1.origUid, modseq: moved.sourceModseq }]);
      assert.deepEqual(changes.changed, []);

      const inside = await c.store.mail.copy(src.id, [s0.uid], src.id, { move: true });
      assert.equal(inside.modseq, moved.sourceModseq + 1);
      assert.equal(inside.sourceModseq, moved.sourceModseq + 2);
      const box = (await c.store.mail.getMailboxById(src.id))!;
      assert.equal(box.highestModseq, moved.sourceModseq + 2);
      const newUid = inside.copied[0]!.to.uid;
      assert.ok(newUid > s2.uid);
      assert.deepEqual((await c.store.mail.listMessages(src.id)).map((m) => m.uid), [s2.uid, newUid]);
      assert.equal((await c.store.mail.getMessage(src.id, newUid))?.flags, F.Recent);
    });

    it('setAttrs: one modseq; null clears; a missing UID changes nothing', async () => {
      const box = await c.mailbox();
      const r = await c.store.mail.append(box.id, [message(0)]);
      const uid = r.messages[0]!.uid;
      const attrs = { Color: 'red', List: ['a', 'b'], Dict: { k: 'v' } };
      const set = await c.store.mail.setAttrs(box.id, uid, attrs);
      assert.equal(set.modseq, r.modseq + 1);
      assert.deepEqual(set.changed?.attrs, attrs);
      assert.equal(set.changed?.modseq, set.modseq);
      assert.deepEqual((await c.store.mail.getMessage(box.id, uid))?.attrs, attrs);
      const cleared = await c.store.mail.setAttrs(box.id, uid, null);
      assert.equal(cleared.modseq, set.modseq + 1);
      assert.equal(cleared.changed?.attrs, null);
      assert.equal((await c.store.mail.getMessage(box.id, uid))?.attrs, null);
      const missing = await c.store.mail.setAttrs(box.id, 999, attrs);
      assert.equal(missing.changed, undefined);
      assert.equal(missing.modseq, cleared.modseq);
      assert.equal((await c.store.mail.getMailboxById(box.id))?.highestModseq, cleared.modseq);
    });

    it('expunge: one modseq for the lot; missing UIDs skipped; nothing removed, modseq unchanged', async () => {
      const box = await c.mailbox();
      const r = await c.store.mail.append(box.id, [message(0), message(1), message(2, { origUid: 42 })]);
      const [m0, m1, m2] = r.messages as [MessageMeta, MessageMeta, MessageMeta];
      const e = await c.store.mail.expunge(box.id, [m0.uid, 999, m2.uid]);
      assert.equal(e.modseq, r.modseq + 1);
      assert.deepEqual(sorted(e.removed, byUid), [
        { uid: m0.uid, origUid: m0.uid },
        { uid: m2.uid, origUid: 42 },
      ]);
      assert.deepEqual((await c.store.mail.listMessages(box.id)).map((m) => m.uid), [m1.uid]);
      assert.equal(await c.store.mail.readRaw(box.id, m0.uid), undefined);
      const again = await c.store.mail.expunge(box.id, [m0.uid, 999]);
      assert.deepEqual(again.removed, []);
      assert.equal(again.modseq, e.modseq);
      const read = (await c.store.mail.getMailboxById(box.id))!;
      assert.equal(read.highestModseq, e.modseq);
      assert.equal(read.uidNext, r.uidNext, 'UIDs are not reused');
      const next = await c.store.mail.append(box.id, [message(3)]);
      assert.equal(next.messages[0]!.uid, r.uidNext);
    });
  });
}

function flagsAndChanges(fresh: FreshStore): void {
  describe('flag deltas and changes', () => {
    const c = useStore(fresh);

    it('updateFlags applies deltas to the flags as stored, one modseq per call; nothing changed, nothing bumped', async () => {
      const box = await c.mailbox();
      const r = await c.store.mail.append(box.id, [message(0), message(1, { flags: F.Seen }), message(2, { keywords: ['Work'] })]);
      const [u0, u1, u2] = r.messages.map((m) => m.uid) as [number, number, number];

      const set = await c.store.mail.updateFlags(box.id, [u0, u1, u2, 999], delta({ set: F.Seen | F.Flagged }));
      assert.equal(set.modseq, r.modseq + 1);
      assert.deepEqual(set.modified, []);
      assert.deepEqual(sorted(set.changed, byUid).map((m) => [m.uid, m.flags, m.modseq]), [
        [u0, F.Seen | F.Flagged, set.modseq],
        [u1, F.Seen | F.Flagged, set.modseq],
        [u2, F.Seen | F.Flagged, set.modseq],
      ]);
      assert.deepEqual(sorted(set.changed, byUid)[2]!.keywords, ['Work'], 'keywords untouched by a flag delta');
      assert.deepEqual(await c.store.mail.getMessage(box.id, u0), sorted(set.changed, byUid)[0]);

      const same = await c.store.mail.updateFlags(box.id, [u0, u1], delta({ set: F.Seen }));
      assert.deepEqual(same.changed, []);
      assert.equal(same.modseq, set.modseq, 'nothing changed: modseq unchanged');
      assert.equal((await c.store.mail.getMailboxById(box.id))?.highestModseq, set.modseq);
      assert.equal((await c.store.mail.getMessage(box.id, u0))?.modseq, set.modseq);

      const twice = await c.store.mail.updateFlags(box.id, [u1, u1], delta({ set: F.Draft }));
      assert.equal(twice.modseq, set.modseq + 1);
      assert.deepEqual(twice.changed.map((m) => [m.uid, m.flags]), [[u1, F.Seen | F.Flagged | F.Draft]], 'a UID listed twice changes once');
      await c.store.mail.updateFlags(box.id, [u1], delta({ clear: F.Draft }));
      const base = (await c.store.mail.getMailboxById(box.id))!.highestModseq;

      const none = await c.store.mail.updateFlags(box.id, [998, 999], delta({ set: F.Deleted }));
      assert.deepEqual(none.changed, []);
      assert.equal(none.modseq, base);

      const clearWins = await c.store.mail.updateFlags(box.id, [u0, u2], delta({ set: F.Flagged | F.Answered, clear: F.Flagged }));
      assert.equal(clearWins.modseq, base + 1);
      assert.deepEqual(sorted(clearWins.changed, byUid).map((m) => [m.uid, m.flags]), [
        [u0, F.Seen | F.Answered],
        [u2, F.Seen | F.Answered],
      ]);
      assert.equal((await c.store.mail.getMessage(box.id, u1))?.flags, F.Seen | F.Flagged, 'not listed, not changed');
      assert.equal((await c.store.mail.getMessage(box.id, u1))?.modseq, base);
    });

    it('keywords: added with their spelling, compared case-insensitively, removal wins', async () => {
      const box = await c.mailbox();
      const r = await c.store.mail.append(box.id, [message(0, { keywords: ['Work'] }), message(1)]);
      const [u0, u1] = r.messages.map((m) => m.uid) as [number, number];
      const add = await c.store.mail.updateFlags(box.id, [u0, u1], delta({ addKeywords: ['WORK', 'Home'] }));
      assert.equal(add.modseq, r.modseq + 1);
      assert.deepEqual(sorted(add.changed, byUid).map((m) => m.keywords), [['Work', 'Home'], ['WORK', 'Home']]);
      const again = await c.store.mail.updateFlags(box.id, [u0], delta({ addKeywords: ['work', 'HOME'] }));
      assert.deepEqual(again.changed, []);
      assert.equal(again.modseq, add.modseq, 'an existing keyword in other case is no change');
      const removed = await c.store.mail.updateFlags(box.id, [u0, u1], delta({ removeKeywords: ['work'] }));
      assert.equal(removed.modseq, add.modseq + 1);
      assert.deepEqual(sorted(removed.changed, byUid).map((m) => m.keywords), [['Home'], ['Home']]);
      const both = await c.store.mail.updateFlags(box.id, [u0], delta({ addKeywords: ['Fresh'], removeKeywords: ['FRESH'] }));
      assert.deepEqual(both.changed, [], 'removal wins: nothing added');
      assert.equal(both.modseq, removed.modseq);
      const mixed = await c.store.mail.updateFlags(box.id, [u0], delta({ set: F.Seen, addKeywords: ['$Label1'], removeKeywords: ['home'] }));
      assert.equal(mixed.changed[0]?.flags, F.Seen);
      assert.deepEqual(mixed.changed[0]?.keywords, ['$Label1']);
      assert.deepEqual((await c.store.mail.getMessage(box.id, u0))?.keywords, ['$Label1']);
    });

    it('unchangedSince: messages changed after it are left alone and listed in modified', async () => {
      const box = await c.mailbox();
      const r = await c.store.mail.append(box.id, [message(0), message(1), message(2)]);
      const [u0, u1, u2] = r.messages.map((m) => m.uid) as [number, number, number];
      const touched = await c.store.mail.updateFlags(box.id, [u1], delta({ set: F.Draft }));
      const guarded = await c.store.mail.updateFlags(box.id, [u0, u1, u2], delta({ set: F.Deleted }), { unchangedSince: r.modseq });
      assert.deepEqual(guarded.modified, [u1]);
      assert.equal(guarded.modseq, touched.modseq + 1);
      assert.deepEqual(sorted(guarded.changed.map((m) => m.uid), numeric), [u0, u2]);
      assert.equal((await c.store.mail.getMessage(box.id, u1))?.flags, F.Draft, 'left as it was');
      assert.equal((await c.store.mail.getMessage(box.id, u0))?.flags, F.Deleted);

      const refused = await c.store.mail.updateFlags(box.id, [u0, u1], delta({ set: F.Seen }), { unchangedSince: r.modseq });
      assert.deepEqual(sorted(refused.modified, numeric), [u0, u1]);
      assert.deepEqual(refused.changed, []);
      assert.equal(refused.modseq, guarded.modseq, 'nothing changed');
      const atIt = await c.store.mail.updateFlags(box.id, [u0], delta({ set: F.Seen }), { unchangedSince: guarded.modseq });
      assert.deepEqual(atIt.modified, [], 'a modseq equal to unchangedSince is not a change after it');
      assert.equal(atIt.changed[0]?.flags, F.Deleted | F.Seen);
    });

    it('changesSince: changed and added after a modseq (each once, as now), removals with their modseqs, one snapshot', async () => {
      const box = await c.mailbox();
      const r = await c.store.mail.append(box.id, [message(0), message(1), message(2)]);
      const [u0, u1, u2] = r.messages.map((m) => m.uid) as [number, number, number];
      const noted = (await c.store.mail.getMailboxById(box.id))!;
      const empty = await c.store.mail.changesSince(box.id, noted.highestModseq);
      assert.deepEqual(empty, { modseq: noted.highestModseq, uidNext: noted.uidNext, changed: [], removed: [], complete: true });

      await c.store.mail.updateFlags(box.id, [u1], delta({ set: F.Seen }));
      const f2 = await c.store.mail.updateFlags(box.id, [u1], delta({ set: F.Answered }));
      const added = await c.store.mail.append(box.id, [message(3), message(4)]);
      const [u3, u4] = added.messages.map((m) => m.uid) as [number, number];
      const e1 = await c.store.mail.expunge(box.id, [u4]);
      const e2 = await c.store.mail.expunge(box.id, [u0]);
      const attrs = await c.store.mail.setAttrs(box.id, u2, { Seen: 'by contract' });

      const changes = await c.store.mail.changesSince(box.id, noted.highestModseq);
      const now = (await c.store.mail.getMailboxById(box.id))!;
      assert.equal(changes.modseq, now.highestModseq);
      assert.equal(changes.modseq, attrs.modseq);
      assert.equal(changes.uidNext, now.uidNext);
      assert.equal(changes.uidNext, added.uidNext);
      assert.equal(changes.complete, true);
      const changed = sorted(changes.changed, byUid);
      assert.deepEqual(changed.map((m) => m.uid), [u1, u2, u3]);
      assert.deepEqual(changed[0], await c.store.mail.getMessage(box.id, u1));
      assert.equal(changed[0]!.modseq, f2.modseq);
      assert.equal(changed[0]!.flags, F.Seen | F.Answered);
      assert.equal(changed[1]!.modseq, attrs.modseq);
      assert.equal(changed[2]!.modseq, added.modseq);
      const removed = sorted(changes.removed, byUid);
      assert.deepEqual(removed, [
        { uid: u0, origUid: u0, modseq: e2.modseq },
        { uid: u4, origUid: u4, modseq: e1.modseq },
      ]);

      const later = await c.store.mail.changesSince(box.id, e1.modseq);
      assert.deepEqual(sorted(later.changed, byUid).map((m) => m.uid), [u2]);
      assert.deepEqual(later.removed, [{ uid: u0, origUid: u0, modseq: e2.modseq }]);
    });

    it('UIDVALIDITY stays through appends, flag changes, removals and renames', async () => {
      const box = await c.mailbox();
      const r = await c.store.mail.append(box.id, [message(0), message(1)]);
      await c.store.mail.updateFlags(box.id, [r.messages[0]!.uid], delta({ set: F.Seen }));
      await c.store.mail.expunge(box.id, [r.messages[1]!.uid]);
      const newName = unique('Renamed');
      await c.store.mail.renameMailboxes(box.accountId, [{ from: box.name, to: newName }]);
      const read = (await c.store.mail.getMailbox(box.accountId, newName))!;
      assert.equal(read.id, box.id);
      assert.equal(read.uidValidity, box.uidValidity);
    });
  });
}

function countersAndQuota(fresh: FreshStore): void {
  describe('counters and quota', () => {
    const c = useStore(fresh);

    const checkStats = (accountId: number): Promise<Map<number, MailboxStats>> => checkCounters(c.store, accountId);

    it('mailboxStats and accountUsage after appends, flag changes, copies, moves, replacements, expunges and removals', async () => {
      const a = await c.account();
      const stranger = await c.mailbox();
      await c.store.mail.append(stranger.id, [sized(9, 5000)]);
      const A = await c.mailbox(a.id);
      const B = await c.mailbox(a.id);
      let stats = await checkStats(a.id);
      assert.deepEqual(stats.get(A.id), { messages: 0, unseen: 0, media: 0, unseenMedia: 0, size: 0, oldest: null });

      const r = await c.store.mail.append(A.id, [
        sized(0, 100, { internalDate: T + 5000 }),
        sized(1, 200, { flags: F.Seen, internalDate: T + 3000 }),
        sized(2, 300, { flags: F.Media, internalDate: T + 4000 }),
        sized(3, 400, { flags: F.Media | F.Seen, internalDate: T + 6000 }),
      ]);
      const [u0, u1, u2, u3] = r.messages.map((m) => m.uid) as [number, number, number, number];
      stats = await checkStats(a.id);
      assert.deepEqual(stats.get(A.id), { messages: 4, unseen: 2, media: 2, unseenMedia: 1, size: 1000, oldest: T + 3000 });
      assert.equal(await c.store.mail.accountUsage(a.id), 1000);

      await c.store.mail.updateFlags(A.id, [u0, u2], delta({ set: F.Seen }));
      stats = await checkStats(a.id);
      assert.deepEqual(stats.get(A.id), { messages: 4, unseen: 0, media: 2, unseenMedia: 0, size: 1000, oldest: T + 3000 });
      await c.store.mail.updateFlags(A.id, [u1, u2], delta({ clear: F.Seen }));
      await c.store.mail.updateFlags(A.id, [u1], delta({ set: F.Media }));
      stats = await checkStats(a.id);
      assert.deepEqual(stats.get(A.id), { messages: 4, unseen: 2, media: 3, unseenMedia: 2, size: 1000, oldest: T + 3000 });

      await c.store.mail.copy(A.id, [u1, u3], B.id, { move: false });
      stats = await checkStats(a.id);
      assert.deepEqual(stats.get(B.id), { messages: 2, unseen: 1, media: 2, unseenMedia: 1, size: 600, oldest: T + 3000 });
      assert.equal(await c.store.mail.accountUsage(a.id), 1600, 'copies count');

      await c.store.mail.copy(A.id, [u1], B.id, { move: true });
      stats = await checkStats(a.id);
      assert.deepEqual(stats.get(A.id), { messages: 3, unseen: 1, media: 2, unseenMedia: 1, size: 800, oldest: T + 4000 });
      assert.equal(stats.get(B.id)?.messages, 3);

      await c.store.mail.append(A.id, [sized(4, 50, { flags: F.Seen, internalDate: T + 1000 })], {
        replace: { uid: u2, byOrigUid: false, mustExist: true, keepOrigUid: false },
      });
      stats = await checkStats(a.id);
      assert.deepEqual(stats.get(A.id), { messages: 3, unseen: 0, media: 1, unseenMedia: 0, size: 550, oldest: T + 1000 });

      await c.store.mail.setAttrs(A.id, u0, { a: 'b' });
      await c.store.mail.expunge(A.id, [u0, u3]);
      await checkStats(a.id);
      await c.store.mail.removeMailboxes([B.id]);
      stats = await checkStats(a.id);
      assert.equal(stats.has(B.id), false);
      assert.equal(await c.store.mail.accountUsage(a.id), 50);
      assert.equal(await c.store.mail.accountUsage(stranger.accountId), 5000);
    });

    it('quota: append refused past the limit (QuotaExceededError, nothing stored); the limit itself is allowed', async () => {
      const a = await c.account();
      const box = await c.mailbox(a.id);
      const other = await c.mailbox(a.id);
      const stranger = await c.mailbox();
      await c.store.mail.append(stranger.id, [sized(9, 10_000)]);
      const quota = { accountId: a.id, limit: 250 };
      await c.store.mail.append(box.id, [sized(1, 100)], { quota });
      await c.store.mail.append(other.id, [sized(2, 100)], { quota });
      const before = (await c.store.mail.getMailboxById(box.id))!;
      await assert.rejects(c.store.mail.append(box.id, [sized(3, 100)], { quota }), QuotaExceededError);
      await assert.rejects(c.store.mail.append(box.id, [sized(4, 20), sized(5, 100)], { quota }), QuotaExceededError, 'all or nothing');
      const after = (await c.store.mail.getMailboxById(box.id))!;
      assert.equal(after.uidNext, before.uidNext, 'nothing stored');
      assert.equal(after.highestModseq, before.highestModseq);
      assert.equal((await c.store.mail.listMessages(box.id)).length, 1);
      assert.equal(await c.store.mail.accountUsage(a.id), 200);
      await c.store.mail.append(box.id, [sized(6, 50)], { quota });
      assert.equal(await c.store.mail.accountUsage(a.id), 250, 'up to the limit');
      await assert.rejects(c.store.mail.append(box.id, [sized(7, 41)], { quota }), QuotaExceededError);
      // Without a quota check nothing is refused.
      await c.store.mail.append(box.id, [sized(8, 41)]);
      assert.equal(await c.store.mail.accountUsage(a.id), 291);
    });

    it('quota: a copy refused when the copies do not fit, nothing stored', async () => {
      const a = await c.account();
      const src = await c.mailbox(a.id);
      const dst = await c.mailbox(a.id);
      const r = await c.store.mail.append(src.id, [sized(1, 100), sized(2, 100), sized(3, 100)]);
      const uids = r.messages.map((m) => m.uid);
      const dstBefore = (await c.store.mail.getMailboxById(dst.id))!;
      await assert.rejects(c.store.mail.copy(src.id, uids.slice(0, 2), dst.id, { move: false, quota: { accountId: a.id, limit: 450 } }), QuotaExceededError);
      assert.deepEqual(await c.store.mail.listMessages(dst.id), []);
      assert.deepEqual((await c.store.mail.listMessages(src.id)).map((m) => m.uid), uids);
      const dstAfter = (await c.store.mail.getMailboxById(dst.id))!;
      assert.equal(dstAfter.uidNext, dstBefore.uidNext);
      assert.equal(dstAfter.highestModseq, dstBefore.highestModseq);
      assert.equal(await c.store.mail.accountUsage(a.id), 300);
      const ok = await c.store.mail.copy(src.id, [uids[0]!], dst.id, { move: false, quota: { accountId: a.id, limit: 450 } });
      assert.equal(ok.copied.length, 1);
      assert.equal(await c.store.mail.accountUsage(a.id), 400);
    });

    it('quota: what does not make the account grow is allowed over the limit (a move inside it, a smaller replacement)', async () => {
      const a = await c.account();
      const src = await c.mailbox(a.id);
      const dst = await c.mailbox(a.id);
      const r = await c.store.mail.append(src.id, [sized(1, 100), sized(2, 100), sized(3, 100)]);
      const uids = r.messages.map((m) => m.uid);
      const quota = { accountId: a.id, limit: 250 };
      const moved = await c.store.mail.copy(src.id, uids.slice(0, 2), dst.id, { move: true, quota });
      assert.equal(moved.copied.length, 2, 'the account does not grow');
      assert.equal(await c.store.mail.accountUsage(a.id), 300);
      await assert.rejects(c.store.mail.copy(dst.id, [moved.copied[0]!.to.uid], src.id, { move: false, quota }), QuotaExceededError);
      await assert.rejects(c.store.mail.append(src.id, [sized(4, 40)], { quota }), QuotaExceededError, 'over the limit: nothing more');
      const smaller = await c.store.mail.append(src.id, [sized(5, 60)], { quota, replace: { uid: uids[2]!, byOrigUid: false, mustExist: true, keepOrigUid: true } });
      assert.equal(smaller.replaced, uids[2]);
      assert.equal(await c.store.mail.accountUsage(a.id), 260);
      await assert.rejects(
        c.store.mail.append(src.id, [sized(6, 80)], { quota, replace: { uid: smaller.messages[0]!.uid, byOrigUid: false, mustExist: true, keepOrigUid: true } }),
        QuotaExceededError,
        'a bigger replacement over the limit',
      );
      assert.equal(await c.store.mail.accountUsage(a.id), 260);
      assert.ok(await c.store.mail.getMessage(src.id, smaller.messages[0]!.uid), 'the refused replacement removed nothing');
    });
  });
}

function concurrentMail(fresh: FreshStore): void {
  describe('concurrent mail writers', () => {
    const c = useStore(fresh);

    it('flag deltas from two handles on the same messages end with the union of what each set', async () => {
      const h1 = await c.open();
      const h2 = await c.open();
      const box = await c.mailbox();
      const r = await c.store.mail.append(box.id, Array.from({ length: 8 }, (_, i) => message(i, { flags: F.Recent })));
      const uids = r.messages.map((m) => m.uid);
      const start = (await c.store.mail.getMailboxById(box.id))!.highestModseq;
      const ROUNDS = 25;
      const bits1 = [F.Seen, F.Answered, F.Flagged];
      const bits2 = [F.Draft, F.Deleted, F.MDNSent];
      const modseqs: number[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        const [a, b] = await Promise.all([
          h1.mail.updateFlags(box.id, uids, delta({ set: bits1[round % 3]!, addKeywords: [`a${round}`] })),
          h2.mail.updateFlags(box.id, uids, delta({ set: bits2[round % 3]!, clear: F.Recent, addKeywords: [`b${round}`] })),
        ]);
        assert.equal(a.changed.length, uids.length, `round ${round}: every message changed (handle 1)`);
        assert.equal(b.changed.length, uids.length, `round ${round}: every message changed (handle 2)`);
        modseqs.push(a.modseq, b.modseq);
      }
      const all = (bits1[0] | bits1[1] | bits1[2] | bits2[0] | bits2[1] | bits2[2]) as number;
      const keywords = sorted(Array.from({ length: ROUNDS }, (_, i) => [`a${i}`, `b${i}`]).flat());
      const end = start + 2 * ROUNDS;
      assert.deepEqual(sorted(modseqs, numeric), Array.from({ length: 2 * ROUNDS }, (_, i) => start + 1 + i), 'one modseq per call, none twice');
      for (const m of await c.store.mail.listMessages(box.id)) {
        assert.equal(m.flags, all, `flags of ${m.uid}`);
        assert.deepEqual(sorted(m.keywords), keywords, `keywords of ${m.uid}`);
        assert.equal(m.modseq, end);
      }
      assert.equal((await c.store.mail.getMailboxById(box.id))?.highestModseq, end);
      assert.equal((await c.store.mail.mailboxStats(box.accountId)).get(box.id)?.unseen, 0);
    });

    it('appends from two handles to one mailbox get distinct UIDs and every modseq exactly once', async () => {
      const h1 = await c.open();
      const h2 = await c.open();
      const box = await c.mailbox();
      const start = box.highestModseq;
      const ROUNDS = 10;
      const results: AppendResult[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        const base = round * 6;
        results.push(
          ...(await Promise.all([
            h1.mail.append(box.id, [message(base)]),
            h2.mail.append(box.id, [message(base + 1)]),
            h1.mail.append(box.id, [message(base + 2)]),
            h2.mail.append(box.id, [message(base + 3)]),
            h1.mail.append(box.id, [message(base + 4)]),
            h2.mail.append(box.id, [message(base + 5)]),
          ])),
        );
      }
      const n = ROUNDS * 6;
      const uids = results.map((r) => r.messages[0]!.uid);
      assert.equal(new Set(uids).size, n, 'distinct UIDs');
      assert.deepEqual(sorted(results.map((r) => r.modseq), numeric), Array.from({ length: n }, (_, i) => start + 1 + i), 'every modseq once');
      assert.ok(results.every((r) => r.messages[0]!.modseq === r.modseq));
      const listed = await c.store.mail.listMessages(box.id);
      assert.deepEqual(listed.map((m) => m.uid), sorted(uids, numeric));
      for (const m of listed) {
        const mine = results.find((r) => r.messages[0]!.uid === m.uid)!;
        assert.deepEqual(m, mine.messages[0]);
      }
      const read = (await c.store.mail.getMailboxById(box.id))!;
      assert.equal(read.highestModseq, start + n);
      assert.ok(read.uidNext > Math.max(...uids));
      assert.equal((await c.store.mail.changesSince(box.id, start)).changed.length, n);
    });

    it('counters stay exact under concurrent flag changes, appends, moves and expunges from two handles', async () => {
      const h1 = await c.open();
      const h2 = await c.open();
      const a = await c.account();
      const A = await c.mailbox(a.id);
      const B = await c.mailbox(a.id);
      const r = await c.store.mail.append(A.id, Array.from({ length: 24 }, (_, i) => sized(i, 100 + i, { flags: i % 3 === 0 ? F.Media : 0 })));
      const uids = r.messages.map((m) => m.uid);
      for (let round = 0; round < 8; round++) {
        await Promise.all([
          h1.mail.updateFlags(A.id, uids, delta(round % 2 === 0 ? { set: F.Seen } : { clear: F.Seen })),
          h2.mail.copy(A.id, [uids[round]!], B.id, { move: true }),
          h1.mail.updateFlags(A.id, uids, delta(round % 2 === 0 ? { clear: F.Media } : { set: F.Media })),
          h2.mail.expunge(A.id, [uids[23 - round]!]),
          h1.mail.append(A.id, [sized(100 + round, 300, { flags: F.Media })]),
          h2.mail.updateFlags(B.id, [], delta({ set: F.Seen })),
          h2.mail.copy(A.id, [uids[8 + round]!], B.id, { move: false }),
        ]);
      }
      await checkCounters(c.store, a.id);
      assert.equal((await c.store.mail.listMessages(A.id)).length, 24 - 8 - 8 + 8);
      assert.equal((await c.store.mail.listMessages(B.id)).length, 16);
    });

    it('the same delivery key from two handles at once stores the message once', async () => {
      const h1 = await c.open();
      const h2 = await c.open();
      const box = await c.mailbox();
      for (let i = 0; i < 10; i++) {
        const key = unique('race/');
        const [a, b] = await Promise.all([
          h1.mail.append(box.id, [message(i)], { deliveryKey: key }),
          h2.mail.append(box.id, [message(i)], { deliveryKey: key }),
        ]);
        assert.equal(a.messages.length + b.messages.length, 1, `key ${key}`);
      }
      assert.equal((await c.store.mail.listMessages(box.id)).length, 10);
    });

    it('a quota is decided inside the transaction: racing appends from two handles never pass it', async () => {
      const h1 = await c.open();
      const h2 = await c.open();
      const a = await c.account();
      const box = await c.mailbox(a.id);
      const quota = { accountId: a.id, limit: 500 };
      const attempts = Array.from({ length: 10 }, (_, i) =>
        (i % 2 === 0 ? h1 : h2).mail.append(box.id, [sized(i, 100)], { quota }).then(
          () => 'stored',
          (err: unknown) => {
            if (err instanceof QuotaExceededError) return 'refused';
            throw err;
          },
        ),
      );
      const outcomes = await Promise.all(attempts);
      assert.equal(outcomes.filter((o) => o === 'stored').length, 5);
      assert.equal(await c.store.mail.accountUsage(a.id), 500);
      assert.equal((await c.store.mail.listMessages(box.id)).length, 5);
    });
  });
}

function raceBoth<T>(h1: Store, h2: Store, run: (h: Store) => Promise<T>): Promise<PromiseSettledResult<T>[]> {
  return Promise.allSettled([run(h1), run(h2)]);
}

function concurrentDecisions(fresh: FreshStore): void {
  describe('concurrent writers: one decision each', () => {
    const c = useStore(fresh);

    it('the same new mailbox from two handles: one is created, the other is an AlreadyExistsError', async () => {
      const [h1, h2] = [await c.open(), await c.open()];
      const a = await c.account();
      for (let i = 0; i < 10; i++) {
        const name = `Race${i}`;
        const results = await raceBoth(h1, h2, (h) => h.mail.createMailbox(a.id, name, '', false));
        const won = results.filter((x) => x.status === 'fulfilled');
        assert.equal(won.length, 1, name);
        const lost = results.find((x) => x.status === 'rejected') as PromiseRejectedResult;
        assert.ok(lost.reason instanceof AlreadyExistsError, `${name}: ${String(lost.reason)}`);
      }
      assert.equal((await c.store.mail.listMailboxes(a.id)).length, 10);
    });

    it('the same alias for two accounts at once: one gets it', async () => {
      const [h1, h2] = [await c.open(), await c.open()];
      const domain = `${unique('race')}.test`;
      await c.store.domains.create(domain);
      const x = await c.store.accounts.create(newAccount(domain, 'x'));
      const y = await c.store.accounts.create(newAccount(domain, 'y'));
      for (let i = 0; i < 10; i++) {
        const alias = `alias${i}`;
        const results = await Promise.allSettled([h1.accounts.setAliases(x.id, [alias]), h2.accounts.setAliases(y.id, [alias])]);
        const winners = results.map((r, j) => (r.status === 'fulfilled' ? [x.id, y.id][j] : undefined)).filter((id) => id !== undefined);
        assert.equal(winners.length, 1, alias);
        assert.ok(results.every((r) => r.status === 'fulfilled' || r.reason instanceof AlreadyExistsError));
        assert.equal((await c.store.accounts.getByAlias(domain, alias))?.id, winners[0]);
      }
    });

    it('the same queue key from two handles at once: queued once', async () => {
      const [h1, h2] = [await c.open(), await c.open()];
      for (let i = 0; i < 10; i++) {
        const key = unique('race-key-');
        const ids = await Promise.all([h1.queue.enqueue(queued(T, ['a@x.test'], { key })), h2.queue.enqueue(queued(T, ['a@x.test'], { key }))]);
        assert.equal(ids.filter((id) => id !== undefined).length, 1, key);
      }
    });

    it('claimReply for one address from two handles at once: one reply goes out', async () => {
      const [h1, h2] = [await c.open(), await c.open()];
      const a = await c.account();
      for (let i = 0; i < 10; i++) {
        const address = `sender${i}@x.test`;
        const got = await Promise.all([h1, h2].map((h) => h.rules.claimReply(a.id, 'Vacation', address, T, T - DAY)));
        assert.equal(got.filter(Boolean).length, 1, address);
      }
    });

    it('dataset limits hold against writers on two handles', async () => {
      const [h1, h2] = [await c.open(), await c.open()];
      const a = await c.account();
      const limits: DatasetLimits = { maxDatasets: 5, maxEntries: 4, maxAttributes: 5, maxEntryBytes: 1000 };
      const creates = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => (i % 2 ? h1 : h2).datasets.create(a.id, `Set${i}`, limits)));
      assert.equal(creates.filter((r) => r.status === 'fulfilled').length, 5);
      assert.ok(creates.every((r) => r.status === 'fulfilled' || r.reason instanceof DatasetLimitError));
      assert.equal((await c.store.datasets.listSubsets(a.id, '')).length, 5);
      const path = (await c.store.datasets.listSubsets(a.id, ''))[0]!;
      const writes = await Promise.allSettled(
        Array.from({ length: 10 }, (_, i) => (i % 2 ? h1 : h2).datasets.setEntry(a.id, path, `e${i}`, { changes: { n: String(i) } }, limits)),
      );
      assert.equal(writes.filter((r) => r.status === 'fulfilled').length, 4);
      assert.ok(writes.every((r) => r.status === 'fulfilled' || r.reason instanceof DatasetLimitError));
      assert.equal((await c.store.datasets.listEntries(a.id, path)).length, 4);
    });
  });
}

// ---------------------------------------------------------------------------------------
// Queue: every group has a store of its own (the queue is server-wide).

function queue(fresh: FreshStore): void {
  describe('queue', () => {
    describe('enqueue and list', () => {
      const c = useStore(fresh);
      it('enqueue: recipients pending from `created`; a key is queued once; list, readRaw, recipients', async () => {
        const m1 = queued(T, ['b@y.test', 'a@x.test'], { key: 'k1' });
        const id1 = await c.store.queue.enqueue(m1);
        assert.equal(typeof id1, 'number');
        assert.equal(await c.store.queue.enqueue(queued(T + 5, ['c@z.test'], { key: 'k1' })), undefined, 'the key was queued');
        const id2 = (await c.store.queue.enqueue(queued(T + 1, ['c@z.test'])))!;
        const id3 = (await c.store.queue.enqueue(queued(T + 1, ['c@z.test'])))!;
        assert.ok(id2 !== undefined && id3 !== undefined && new Set([id1, id2, id3]).size === 3, 'no key: never a duplicate');
        assert.ok((await c.store.queue.readRaw(id1!))?.equals(m1.raw));
        assert.equal(await c.store.queue.readRaw(999_999), undefined);
        const recipients = sorted(await c.store.queue.recipients(id1!), (x, y) => (x.address < y.address ? -1 : 1));
        assert.deepEqual(recipients, [
          { address: 'a@x.test', notify: 'SUCCESS,FAILURE', orcpt: 'rfc822;a@x.test', state: 'pending', attempts: 0, nextAttempt: T, lastAttempt: null, status: null, diagnostic: null, remoteMta: null },
          { address: 'b@y.test', notify: 'SUCCESS,FAILURE', orcpt: 'rfc822;b@y.test', state: 'pending', attempts: 0, nextAttempt: T, lastAttempt: null, status: null, diagnostic: null, remoteMta: null },
        ]);
        assert.deepEqual(await c.store.queue.recipients(999_999), []);
        const list = await c.store.queue.list();
        assert.deepEqual(sorted(list.map((e) => e.message.id), numeric), sorted([id1!, id2, id3], numeric));
        const first = list.find((e) => e.message.id === id1)!;
        assert.deepEqual(first.message, {
          id: id1,
          sender: m1.sender,
          created: m1.created,
          expires: m1.expires,
          ret: 'HDRS',
          envid: m1.envid,
          source: 'authenticated',
          size: m1.raw.length,
        });
        assert.equal(first.lease, null);
        assert.deepEqual(sorted(first.recipients.map((r) => r.address)), ['a@x.test', 'b@y.test']);
        const other = { ...queued(T + 2, ['d@w.test']), ret: null, envid: null, source: 'remote' as const, sender: '' };
        const id4 = (await c.store.queue.enqueue(other))!;
        const listed = (await c.store.queue.list()).find((e) => e.message.id === id4)!;
        assert.equal(listed.message.ret, null);
        assert.equal(listed.message.envid, null);
        assert.equal(listed.message.source, 'remote');
        assert.equal(listed.message.sender, '');
        assert.equal(listed.recipients[0]!.notify, 'SUCCESS,FAILURE');
      });
    });

    describe('claimDue', () => {
      const c = useStore(fresh);
      it('claims due, unleased messages, longest due first, at most `limit`; leases show in the list; expired leases are claimable', async () => {
        const h2 = await c.open();
        const m1 = (await c.store.queue.enqueue(queued(T + 10, ['a@x.test'])))!;
        const m2 = (await c.store.queue.enqueue(queued(T, ['a@x.test', 'b@x.test'])))!;
        const m3 = (await c.store.queue.enqueue(queued(T + 20, ['a@x.test'])))!;
        const m4 = (await c.store.queue.enqueue(queued(T + 1000, ['a@x.test'])))!;
        assert.deepEqual(await c.store.queue.claimDue(T - 1, 10, lease('A', T + 500)), [], 'nothing due yet');
        const a = await c.store.queue.claimDue(T + 100, 2, lease('A', T + 500));
        assert.deepEqual(sorted(a.map((m) => m.id), numeric), sorted([m1, m2], numeric), 'the two longest due');
        assert.deepEqual(a.map((m) => m.id), [m2, m1], 'returned longest due first');
        assert.equal(a.find((m) => m.id === m2)?.created, T);
        const b = await h2.queue.claimDue(T + 100, 10, lease('B', T + 500));
        assert.deepEqual(b.map((m) => m.id), [m3], 'leased and not-yet-due messages are not claimed');
        assert.deepEqual(await h2.queue.claimDue(T + 100, 10, lease('B', T + 500)), []);
        const leases = new Map((await c.store.queue.list()).map((e) => [e.message.id, e.lease]));
        assert.deepEqual(leases.get(m1), lease('A', T + 500));
        assert.deepEqual(leases.get(m2), lease('A', T + 500));
        assert.deepEqual(leases.get(m3), lease('B', T + 500));
        assert.equal(leases.get(m4), null);
        const c2 = await h2.queue.claimDue(T + 600, 10, lease('C', T + 5000));
        assert.deepEqual(sorted(c2.map((m) => m.id), numeric), sorted([m1, m2, m3], numeric), 'expired leases are claimable again');
        const d = await c.store.queue.claimDue(T + 1001, 10, lease('D', T + 5000));
        assert.deepEqual(d.map((m) => m.id), [m4]);
      });
    });

    describe('claim boundaries', () => {
      const c = useStore(fresh);
      it('due when nextAttempt <= now; a lease is over when until <= now', async () => {
        const base = T + 100_000;
        const id = (await c.store.queue.enqueue(queued(base, ['a@x.test'])))!;
        assert.deepEqual(await c.store.queue.claimDue(base - 1, 10, lease('A', base + 100)), []);
        assert.deepEqual((await c.store.queue.claimDue(base, 10, lease('A', base + 100))).map((m) => m.id), [id], 'due at its nextAttempt');
        assert.deepEqual(await c.store.queue.claimDue(base + 99, 10, lease('B', base + 500)), [], 'leased until base + 100');
        assert.deepEqual((await c.store.queue.claimDue(base + 100, 10, lease('B', base + 500))).map((m) => m.id), [id], 'free at its until');
      });
    });

    describe('nextDue', () => {
      const c = useStore(fresh);
      it('the next attempt, or the expiry of the lease that holds it back, whichever is later', async () => {
        assert.equal(await c.store.queue.nextDue(T), undefined, 'an empty queue');
        const m1 = (await c.store.queue.enqueue(queued(T, ['a@x.test'])))!;
        const m2 = (await c.store.queue.enqueue(queued(T + 5000, ['a@x.test'])))!;
        assert.equal(await c.store.queue.nextDue(T), T);
        assert.deepEqual((await c.store.queue.claimDue(T, 10, lease('A', T + 3000))).map((m) => m.id), [m1]);
        assert.equal(await c.store.queue.nextDue(T), T + 3000, "m1's lease holds it back");
        assert.equal(await c.store.queue.renewLease(m1, lease('A', T + 9000)), true);
        assert.equal(await c.store.queue.nextDue(T), T + 5000, 'm2 comes first now');
        assert.deepEqual((await c.store.queue.claimDue(T + 5000, 10, lease('B', T + 6000))).map((m) => m.id), [m2]);
        assert.equal(await c.store.queue.nextDue(T + 5000), T + 6000);
        await c.store.queue.releaseLease(m1, 'A');
        assert.equal(await c.store.queue.nextDue(T + 5000), T, 'released: due since T');
      });
    });

    describe('leases', () => {
      const c = useStore(fresh);
      it('renewLease and releaseLease work for the holder only', async () => {
        const h2 = await c.open();
        const id = (await c.store.queue.enqueue(queued(T, ['a@x.test'])))!;
        await c.store.queue.claimDue(T, 10, lease('A', T + 100));
        assert.equal(await c.store.queue.renewLease(id, lease('A', T + 200)), true);
        assert.deepEqual((await c.store.queue.list())[0]!.lease, lease('A', T + 200));
        assert.equal(await h2.queue.renewLease(id, lease('B', T + 300)), false, 'not the holder');
        await h2.queue.releaseLease(id, 'B');
        assert.deepEqual((await c.store.queue.list())[0]!.lease, lease('A', T + 200), 'a stranger neither renews nor releases');
        assert.deepEqual(await h2.queue.claimDue(T + 150, 10, lease('B', T + 300)), []);
        await c.store.queue.releaseLease(id, 'A');
        assert.equal((await c.store.queue.list())[0]!.lease, null);
        assert.deepEqual((await h2.queue.claimDue(T + 150, 10, lease('B', T + 300))).map((m) => m.id), [id]);
        assert.equal(await c.store.queue.renewLease(999_999, lease('A', T + 200)), false, 'no such message');
      });
    });

    describe('lease expiry', () => {
      const c = useStore(fresh);
      it('an expired lease not taken by anyone is still its owner\'s; one taken over is lost to it', async () => {
        const h2 = await c.open();
        const id = (await c.store.queue.enqueue(queued(T + 10_000, ['a@x.test', 'b@x.test'])))!;
        assert.deepEqual((await c.store.queue.claimDue(T + 10_000, 10, lease('A', T + 10_100))).map((m) => m.id), [id]);
        // Expired (we are past T + 10 100 for the store: the times are the callers'), but nobody took it.
        assert.equal(await c.store.queue.renewLease(id, lease('A', T + 10_300)), true);
        assert.deepEqual(await h2.queue.claimDue(T + 10_200, 10, lease('B', T + 10_500)), [], 'renewed: not claimable');
        assert.deepEqual((await h2.queue.claimDue(T + 10_400, 10, lease('B', T + 10_900))).map((m) => m.id), [id], 'expired: taken over');
        assert.equal(await c.store.queue.renewLease(id, lease('A', T + 20_000)), false, 'lost');
        assert.equal(await c.store.queue.recordAttempt(id, 'A', [outcome('a@x.test', 'delivered')], [queued(T, ['report@x.test'])]), false);
        await c.store.queue.releaseLease(id, 'A');
        const entry = (await c.store.queue.list()).find((e) => e.message.id === id)!;
        assert.deepEqual(entry.lease, lease('B', T + 10_900), "the old owner's release does nothing");
        assert.ok(entry.recipients.every((r) => r.state === 'pending' && r.attempts === 0), 'nothing recorded');
        assert.equal((await c.store.queue.list()).length, 1, 'no report queued');
        assert.equal(await h2.queue.recordAttempt(id, 'B', [outcome('a@x.test', 'delivered')], []), true);
        assert.equal((await c.store.queue.recipients(id)).find((r) => r.address === 'a@x.test')?.state, 'delivered');
      });
    });

    describe('recordAttempt', () => {
      const c = useStore(fresh);
      it('by the holder: outcomes, retries and reports in one go, the message removed (with its delivery keys) once nothing is pending', async () => {
        const box = await c.mailbox();
        const stranger = await c.open();
        const id = (await c.store.queue.enqueue(queued(T, ['r1@x.test', 'r2@x.test', 'r3@x.test', 'r4@x.test'])))!;
        const unclaimed = (await c.store.queue.enqueue(queued(T + 1_000_000, ['z@x.test'])))!;
        assert.deepEqual((await c.store.queue.claimDue(T, 1, lease('A', T + 100_000))).map((m) => m.id), [id]);
        const report = queued(T + 1, ['from@contract.test'], { sender: '' });

        assert.equal(await stranger.queue.recordAttempt(id, 'B', [outcome('r1@x.test', 'delivered')], [report]), false, 'a stranger');
        assert.equal(await c.store.queue.recordAttempt(unclaimed, 'A', [outcome('z@x.test', 'delivered')], [report]), false, 'not leased by A');
        assert.ok((await c.store.queue.recipients(id)).every((r) => r.state === 'pending' && r.attempts === 0 && r.lastAttempt === null));
        assert.equal((await c.store.queue.list()).length, 2, 'no report queued');

        // Local deliveries of this message recorded delivery keys q<id>/...; others are not its own.
        const own = `q${id}/r1@x.test/store/0`;
        const notOwn = `q${id}0/r1@x.test/store/0`;
        assert.equal((await c.store.mail.append(box.id, [message(1)], { deliveryKey: own })).messages.length, 1);
        assert.equal((await c.store.mail.append(box.id, [message(2)], { deliveryKey: notOwn })).messages.length, 1);

        const ok = await c.store.queue.recordAttempt(
          id,
          'A',
          [
            outcome('r1@x.test', 'delivered'),
            outcome('r2@x.test', 'pending', { nextAttempt: T + 60_000, status: '4.4.1', diagnostic: 'connection timed out', remoteMta: 'mx.x.test' }),
            outcome('r3@x.test', 'failed', { status: '5.1.1', diagnostic: '550 no such user', remoteMta: 'mx.x.test' }),
            outcome('r4@x.test', 'pending', { attempted: false, nextAttempt: T + 30_000, status: null }),
          ],
          [report],
        );
        assert.equal(ok, true);
        const rs = new Map((await c.store.queue.recipients(id)).map((r) => [r.address, r]));
        assert.equal(rs.get('r1@x.test')?.state, 'delivered');
        assert.equal(rs.get('r1@x.test')?.attempts, 1);
        assert.equal(typeof rs.get('r1@x.test')?.lastAttempt, 'number');
        assert.deepEqual({ ...rs.get('r2@x.test')!, lastAttempt: 0 }, {
          address: 'r2@x.test', notify: 'SUCCESS,FAILURE', orcpt: 'rfc822;r2@x.test', state: 'pending', attempts: 1, nextAttempt: T + 60_000,
          lastAttempt: 0, status: '4.4.1', diagnostic: 'connection timed out', remoteMta: 'mx.x.test',
        });
        assert.equal(rs.get('r3@x.test')?.state, 'failed');
        assert.equal(rs.get('r3@x.test')?.diagnostic, '550 no such user');
        assert.equal(rs.get('r4@x.test')?.attempts, 0, 'not attempted: not counted');
        assert.equal(rs.get('r4@x.test')?.lastAttempt, null);
        assert.equal(rs.get('r4@x.test')?.nextAttempt, T + 30_000);
        const list = await c.store.queue.list();
        const reports = list.filter((e) => e.message.id !== id && e.message.id !== unclaimed);
        assert.equal(reports.length, 1, 'the report was queued');
        assert.equal(reports[0]!.message.sender, '');
        assert.deepEqual(reports[0]!.recipients.map((r) => [r.address, r.state]), [['from@contract.test', 'pending']]);
        assert.ok((await c.store.queue.readRaw(reports[0]!.message.id))?.equals(report.raw));

        // Nothing of the message is due before T + 30 000 (the report is).
        await c.store.queue.releaseLease(id, 'A');
        assert.ok(!(await c.store.queue.claimDue(T + 29_999, 10, lease('A', T + 100_000))).some((m) => m.id === id));
        assert.deepEqual((await c.store.queue.claimDue(T + 60_000, 10, lease('A', T + 100_000))).map((m) => m.id), [id], 'due again');
        assert.equal(await c.store.queue.recordAttempt(id, 'A', [outcome('r4@x.test', 'relayed')], []), true);
        assert.ok(await c.store.queue.readRaw(id), 'r2 is still pending');
        assert.equal(await c.store.queue.recordAttempt(id, 'A', [outcome('r2@x.test', 'delivered')], []), true);
        assert.equal(await c.store.queue.readRaw(id), undefined, 'removed: nothing pending');
        assert.deepEqual(await c.store.queue.recipients(id), []);
        assert.ok(!(await c.store.queue.list()).some((e) => e.message.id === id));
        assert.equal((await c.store.mail.append(box.id, [message(1)], { deliveryKey: own })).messages.length, 1, 'its delivery keys went with it');
        assert.deepEqual((await c.store.mail.append(box.id, [message(2)], { deliveryKey: notOwn })).messages, [], "another message's keys stay");
        assert.equal(await c.store.queue.recordAttempt(id, 'A', [outcome('r2@x.test', 'delivered')], []), false, 'gone');
      });
    });

    describe('delivery keys', () => {
      const c = useStore(fresh);
      it("a message's key outlives its stay in the queue until pruned; so do mail delivery keys", async () => {
        const box = await c.mailbox();
        const id = (await c.store.queue.enqueue(queued(T, ['a@x.test'], { key: 'submission-1' })))!;
        await c.store.queue.claimDue(T, 1, lease('A', T + 100));
        assert.equal(await c.store.queue.recordAttempt(id, 'A', [outcome('a@x.test', 'delivered')], []), true);
        assert.equal(await c.store.queue.readRaw(id), undefined);
        assert.equal(await c.store.queue.enqueue(queued(T, ['a@x.test'], { key: 'submission-1' })), undefined, 'already sent');
        assert.equal((await c.store.mail.append(box.id, [message(1)], { deliveryKey: 'local-1' })).messages.length, 1);
        await c.store.queue.pruneDeliveryKeys(T - DAY);
        assert.equal(await c.store.queue.enqueue(queued(T, ['a@x.test'], { key: 'submission-1' })), undefined, 'kept');
        assert.deepEqual((await c.store.mail.append(box.id, [message(1)], { deliveryKey: 'local-1' })).messages, []);
        await c.store.queue.pruneDeliveryKeys(Date.now() + DAY);
        assert.equal(typeof (await c.store.queue.enqueue(queued(T, ['a@x.test'], { key: 'submission-1' }))), 'number', 'forgotten');
        assert.equal((await c.store.mail.append(box.id, [message(1)], { deliveryKey: 'local-1' })).messages.length, 1);
      });
    });

    describe('administration: get, retry, remove, settle, stats', () => {
      const c = useStore(fresh);
      it('get answers one entry with its lease; retry makes pending recipients due now (one message or all), leaving leases alone', async () => {
        const h2 = await c.open();
        const a = (await c.store.queue.enqueue(queued(T, ['a1@x.test', 'a2@x.test'])))!;
        const b = (await c.store.queue.enqueue(queued(T, ['b1@x.test'])))!;
        assert.equal(await c.store.queue.get(999_999), undefined);
        const got = (await c.store.queue.get(a))!;
        assert.equal(got.message.id, a);
        assert.deepEqual(sorted(got.recipients.map((r) => r.address)), ['a1@x.test', 'a2@x.test']);
        assert.equal(got.lease, null);
        // a: one recipient delivered, one deferred to T + 1 day; b: deferred to T + 2 days.
        await c.store.queue.claimDue(T, 10, lease('A', T + 100));
        assert.equal(await c.store.queue.recordAttempt(a, 'A', [outcome('a1@x.test', 'delivered'), outcome('a2@x.test', 'pending', { nextAttempt: T + DAY })], []), true);
        assert.equal(await c.store.queue.recordAttempt(b, 'A', [outcome('b1@x.test', 'pending', { nextAttempt: T + 2 * DAY })], []), true);
        await c.store.queue.releaseLease(b, 'A');
        assert.deepEqual((await c.store.queue.get(a))!.lease, lease('A', T + 100), 'the lease shows');
        assert.equal(await c.store.queue.nextDue(T + 1000), T + DAY);
        assert.deepEqual(await h2.queue.retry(T + 1000, b), { messages: 1, recipients: 1 });
        assert.equal((await c.store.queue.get(b))!.recipients[0]!.nextAttempt, T + 1000);
        assert.deepEqual((await c.store.queue.claimDue(T + 1000, 10, lease('B', T + 2000))).map((m) => m.id), [b], 'b is due now; a is still leased');
        assert.deepEqual(await h2.queue.retry(T + 1000), { messages: 1, recipients: 1 }, "a's pending recipient only (b's is due already)");
        const ra = new Map((await c.store.queue.get(a))!.recipients.map((r) => [r.address, r]));
        assert.equal(ra.get('a2@x.test')!.nextAttempt, T + 1000);
        assert.equal(ra.get('a1@x.test')!.state, 'delivered', 'done recipients stay as they are');
        assert.deepEqual((await c.store.queue.get(a))!.lease, lease('A', T + 100), 'retry leaves the lease');
        assert.deepEqual(await c.store.queue.claimDue(T + 50, 10, lease('C', T + 2000)), [], 'held by A until T + 100');
        assert.deepEqual((await c.store.queue.claimDue(T + 1000, 10, lease('C', T + 2000))).map((m) => m.id), [a], 'due at T + 1000 once the lease is over');
        assert.deepEqual(await c.store.queue.retry(T + 1000, 999_999), { messages: 0, recipients: 0 });
      });

      it('remove takes a message (and its delivery keys) away whoever holds it; the holder can record nothing after', async () => {
        const box = await c.mailbox();
        const id = (await c.store.queue.enqueue(queued(T, ['a@x.test'])))!;
        await c.store.queue.claimDue(T + 10 * DAY, 100, lease('A', T + 11 * DAY));
        await c.store.mail.append(box.id, [message(1)], { deliveryKey: `q${id}/a@x.test` });
        assert.equal(await c.store.queue.remove(id), true);
        assert.equal(await c.store.queue.get(id), undefined);
        assert.equal(await c.store.queue.readRaw(id), undefined);
        assert.equal(await c.store.queue.recordAttempt(id, 'A', [outcome('a@x.test', 'delivered')], []), false);
        assert.equal(await c.store.queue.renewLease(id, lease('A', T + 12 * DAY)), false);
        assert.equal(await c.store.queue.remove(id), false, 'gone already');
        assert.equal((await c.store.mail.append(box.id, [message(1)], { deliveryKey: `q${id}/a@x.test` })).messages.length, 1, 'its delivery keys went with it');
      });

      it('settle records what `decide` chooses in one transaction, whoever holds the lease: reports queued, the message removed once nothing is pending', async () => {
        const id = (await c.store.queue.enqueue(queued(T, ['p1@x.test', 'p2@x.test', 'd@x.test'])))!;
        await c.store.queue.claimDue(T + 20 * DAY, 100, lease('A', T + 21 * DAY));
        assert.equal(await c.store.queue.recordAttempt(id, 'A', [outcome('d@x.test', 'delivered')], []), true);
        const before = (await c.store.queue.list()).length;
        const report = queued(T + 5, ['from@contract.test'], { sender: '' });
        let seen: string[] = [];
        const result = await c.store.queue.settle(id, (entry, raw) => {
          assert.ok(raw.length > 0);
          assert.deepEqual(entry.lease, lease('A', T + 21 * DAY));
          const pending = entry.recipients.filter((r) => r.state === 'pending');
          seen = pending.map((r) => r.address).sort();
          return {
            updates: pending.map((r) => outcome(r.address, 'failed', { attempted: false, status: '5.0.0', diagnostic: 'returned by the administrator' })),
            reports: [report],
            result: 'done',
          };
        });
        assert.equal(result, 'done');
        assert.deepEqual(seen, ['p1@x.test', 'p2@x.test']);
        assert.equal(await c.store.queue.get(id), undefined, 'nothing pending: removed');
        assert.equal(await c.store.queue.recordAttempt(id, 'A', [outcome('p1@x.test', 'delivered')], []), false, "the holder's outcome is not recorded");
        const list = await c.store.queue.list();
        assert.equal(list.length, before, 'the report took its place');
        assert.ok(list.some((e) => e.message.sender === '' && e.recipients[0]!.address === 'from@contract.test'));
        assert.equal(await c.store.queue.settle(999_999, () => assert.fail('not called for a missing message')), undefined);

        // A settlement that leaves a recipient pending keeps the message, without a lease.
        const kept = (await c.store.queue.enqueue(queued(T, ['k1@x.test', 'k2@x.test'])))!;
        await c.store.queue.claimDue(T + 20 * DAY, 100, lease('A', T + 21 * DAY));
        await c.store.queue.settle(kept, () => ({ updates: [outcome('k1@x.test', 'failed', { attempted: false })], reports: [], result: undefined }));
        const entry = (await c.store.queue.get(kept))!;
        assert.equal(entry.lease, null);
        assert.deepEqual(entry.recipients.map((r) => [r.address, r.state, r.attempts]), [['k1@x.test', 'failed', 0], ['k2@x.test', 'pending', 0]]);
      });
    });

    describe('stats', () => {
      const c = useStore(fresh);
      it('counts messages and pending recipients, and knows the oldest', async () => {
        assert.deepEqual(await c.store.queue.stats(), { messages: 0, pendingRecipients: 0 });
        const first = (await c.store.queue.enqueue(queued(T + 50, ['a@x.test', 'b@x.test'])))!;
        await c.store.queue.enqueue(queued(T + 10, ['c@x.test']));
        assert.deepEqual(await c.store.queue.stats(), { messages: 2, pendingRecipients: 3, oldestCreated: T + 10 });
        await c.store.queue.claimDue(T + 100, 10, lease('A', T + 200));
        await c.store.queue.recordAttempt(first, 'A', [outcome('a@x.test', 'delivered')], []);
        assert.deepEqual(await c.store.queue.stats(), { messages: 2, pendingRecipients: 2, oldestCreated: T + 10 });
      });
    });

    describe('ids', () => {
      const c = useStore(fresh);
      it('queue ids are never reused, even once every message is gone', async () => {
        const ids: number[] = [];
        for (let i = 0; i < 3; i++) ids.push((await c.store.queue.enqueue(queued(T + i, [`r${i}@x.test`])))!);
        for (const id of ids) assert.equal(await c.store.queue.remove(id), true);
        assert.deepEqual(await c.store.queue.list(), []);
        const next = (await c.store.queue.enqueue(queued(T + 9, ['again@x.test'])))!;
        assert.ok(next > Math.max(...ids), `a new id (${next}) above every earlier one (${ids.join(', ')})`);
        const other = await c.open();
        await other.queue.remove(next);
        assert.ok((await other.queue.enqueue(queued(T + 10, ['again@x.test'])))! > next);
      });
    });

    describe('concurrent claims', () => {
      const c = useStore(fresh);
      it('two handles claiming at once never get the same message', async () => {
        const h1 = await c.open();
        const h2 = await c.open();
        const ids = new Set<number>();
        for (let i = 0; i < 30; i++) ids.add((await c.store.queue.enqueue(queued(T + i, [`r${i}@x.test`])))!);
        const got1: number[] = [];
        const got2: number[] = [];
        for (let round = 0; round < 50; round++) {
          const [a, b] = await Promise.all([
            h1.queue.claimDue(T + 100, 4, lease('h1', T + 1_000_000)),
            h2.queue.claimDue(T + 100, 3, lease('h2', T + 1_000_000)),
          ]);
          got1.push(...a.map((m) => m.id));
          got2.push(...b.map((m) => m.id));
          if (a.length === 0 && b.length === 0) break;
        }
        const all = [...got1, ...got2];
        assert.equal(new Set(all).size, all.length, 'no message claimed twice');
        assert.deepEqual(sorted(all, numeric), sorted([...ids], numeric), 'every message claimed');
        const owners = new Map((await c.store.queue.list()).map((e) => [e.message.id, e.lease?.owner]));
        for (const id of got1) assert.equal(owners.get(id), 'h1');
        for (const id of got2) assert.equal(owners.get(id), 'h2');
      });
    });
  });
}

// ---------------------------------------------------------------------------------------

function rules(fresh: FreshStore): void {
  describe('rules', () => {
    const c = useStore(fresh);

    it('put, get, list (priority first, then name), replace; guards see the rule as stored and the count', async () => {
      const a = await c.account();
      const g1 = recordingGuard();
      await c.store.rules.put(a.id, rule('Alpha', 5), g1);
      assert.deepEqual(g1.calls, [{ existing: undefined, count: 0 }]);
      const g2 = recordingGuard();
      await c.store.rules.put(a.id, rule('Beta', 5, { comment: 'b ☺' }), g2);
      assert.deepEqual(g2.calls, [{ existing: undefined, count: 1 }]);
      await c.store.rules.put(a.id, rule('Gamma', 9), () => {});
      assert.deepEqual((await c.store.rules.list(a.id, 'mailIn')).map((r) => r.name), ['Gamma', 'Alpha', 'Beta']);
      assert.deepEqual(await c.store.rules.get(a.id, 'mailIn', 'Beta'), rule('Beta', 5, { comment: 'b ☺' }));
      assert.equal(await c.store.rules.get(a.id, 'mailIn', 'beta'), undefined, 'names are case-sensitive');

      const replacement = rule('Alpha', 1, {
        conditions: [
          { opCode: 'Subject', operator: 'is', parameter: '*sale*' },
          { opCode: 'Human Generated', operator: '---', parameter: '' },
        ],
        actions: [{ opCode: 'Reply with', parameter: 'Away' }, { opCode: 'Discard', parameter: '' }],
      });
      const g3 = recordingGuard();
      await c.store.rules.put(a.id, replacement, g3);
      assert.deepEqual(g3.calls, [{ existing: rule('Alpha', 5), count: 3 }]);
      assert.deepEqual(await c.store.rules.get(a.id, 'mailIn', 'Alpha'), replacement);
      assert.deepEqual((await c.store.rules.list(a.id, 'mailIn')).map((r) => r.name), ['Gamma', 'Beta', 'Alpha']);

      const signal = rule('Ring', 3, { type: 'signalIn', stage: 'ringing' });
      await c.store.rules.put(a.id, signal, () => {});
      assert.deepEqual(await c.store.rules.list(a.id, 'signalIn'), [signal]);
      assert.equal((await c.store.rules.list(a.id, 'mailIn')).length, 3, 'rule sets are separate');
      const b = await c.account();
      assert.deepEqual(await c.store.rules.list(b.id, 'mailIn'), [], 'and per account');
    });

    it('a throwing guard aborts the write and its error is passed on', async () => {
      const a = await c.account();
      await c.store.rules.put(a.id, rule('Keep', 5), () => {});
      await assert.rejects(c.store.rules.put(a.id, rule('New', 5), refusingGuard), GuardRefusal);
      assert.equal(await c.store.rules.get(a.id, 'mailIn', 'New'), undefined);
      await assert.rejects(c.store.rules.put(a.id, rule('Keep', 1), refusingGuard), GuardRefusal);
      await assert.rejects(c.store.rules.update(a.id, 'mailIn', 'Keep', { priority: 1 }, refusingGuard), GuardRefusal);
      await assert.rejects(c.store.rules.rename(a.id, 'mailIn', 'Keep', 'Other', refusingGuard), GuardRefusal);
      await assert.rejects(c.store.rules.remove(a.id, 'mailIn', 'Keep', refusingGuard), GuardRefusal);
      assert.deepEqual(await c.store.rules.list(a.id, 'mailIn'), [rule('Keep', 5)], 'untouched');
    });

    it('update: priority and/or stage; rename; remove; NotFoundError and AlreadyExistsError', async () => {
      const a = await c.account();
      await c.store.rules.put(a.id, rule('One', 5), () => {});
      await c.store.rules.put(a.id, rule('Two', 4), () => {});
      await c.store.rules.put(a.id, rule('Call', 2, { type: 'signalIn', stage: 'ringing' }), () => {});

      const g = recordingGuard();
      await c.store.rules.update(a.id, 'mailIn', 'One', { priority: 1 }, g);
      assert.deepEqual(g.calls, [{ existing: rule('One', 5), count: 2 }]);
      assert.deepEqual(await c.store.rules.get(a.id, 'mailIn', 'One'), rule('One', 1));
      await c.store.rules.update(a.id, 'signalIn', 'Call', { stage: 'busy' }, () => {});
      assert.deepEqual(await c.store.rules.get(a.id, 'signalIn', 'Call'), rule('Call', 2, { type: 'signalIn', stage: 'busy' }));
      await c.store.rules.update(a.id, 'signalIn', 'Call', { priority: 7, stage: null }, () => {});
      assert.deepEqual(await c.store.rules.get(a.id, 'signalIn', 'Call'), rule('Call', 7, { type: 'signalIn', stage: null }));
      await assert.rejects(c.store.rules.update(a.id, 'mailIn', 'Nope', { priority: 1 }, () => {}), NotFoundError);
      await assert.rejects(c.store.rules.update(a.id, 'signalIn', 'One', { priority: 1 }, () => {}), NotFoundError, 'another set');

      const gr = recordingGuard();
      await c.store.rules.rename(a.id, 'mailIn', 'One', 'Uno', gr);
      assert.deepEqual(gr.calls, [{ existing: rule('One', 1), count: 2 }]);
      assert.equal(await c.store.rules.get(a.id, 'mailIn', 'One'), undefined);
      assert.deepEqual(await c.store.rules.get(a.id, 'mailIn', 'Uno'), { ...rule('One', 1), name: 'Uno' });
      await assert.rejects(c.store.rules.rename(a.id, 'mailIn', 'Uno', 'Two', () => {}), AlreadyExistsError);
      await assert.rejects(c.store.rules.rename(a.id, 'mailIn', 'Nope', 'Other', () => {}), NotFoundError);
      assert.deepEqual((await c.store.rules.list(a.id, 'mailIn')).map((r) => r.name), ['Two', 'Uno']);

      const gd = recordingGuard();
      await c.store.rules.remove(a.id, 'mailIn', 'Two', gd);
      assert.deepEqual(gd.calls, [{ existing: rule('Two', 4), count: 2 }]);
      await assert.rejects(c.store.rules.remove(a.id, 'mailIn', 'Two', () => {}), NotFoundError);
      assert.deepEqual((await c.store.rules.list(a.id, 'mailIn')).map((r) => r.name), ['Uno']);
    });

    it('claimReply once per address and period (the same key may claim again); releaseReply; the log follows renames and goes with removals', async () => {
      const a = await c.account();
      const since = T - 7 * DAY;
      assert.equal(await c.store.rules.claimReply(a.id, 'Vacation', 'x@y.test', T, since), true);
      assert.equal(await c.store.rules.claimReply(a.id, 'Vacation', 'x@y.test', T + 1, since + 1), false, 'replied recently');
      assert.equal(await c.store.rules.claimReply(a.id, 'Vacation', 'other@y.test', T + 1, since + 1), true, 'another address');
      assert.equal(await c.store.rules.claimReply(a.id, 'Other', 'x@y.test', T + 1, since + 1), true, 'another rule');
      const b = await c.account();
      assert.equal(await c.store.rules.claimReply(b.id, 'Vacation', 'x@y.test', T + 1, since + 1), true, 'another account');

      assert.equal(await c.store.rules.claimReply(a.id, 'Vacation', 'k@y.test', T, since, 'delivery-1'), true);
      assert.equal(await c.store.rules.claimReply(a.id, 'Vacation', 'k@y.test', T + 5, since, 'delivery-1'), true, 'the same delivery again');
      assert.equal(await c.store.rules.claimReply(a.id, 'Vacation', 'k@y.test', T + 5, since, 'delivery-2'), false);
      assert.equal(await c.store.rules.claimReply(a.id, 'Vacation', 'k@y.test', T + 5, since), false);

      assert.equal(await c.store.rules.claimReply(a.id, 'Vacation', 'x@y.test', T + 8 * DAY, T + DAY), true, 'the old reply is before `since`');
      await c.store.rules.releaseReply(a.id, 'Vacation', 'x@y.test', T);
      assert.equal(await c.store.rules.claimReply(a.id, 'Vacation', 'x@y.test', T + 8 * DAY + 1, T + DAY), false, 'released another time: kept');
      await c.store.rules.releaseReply(a.id, 'Vacation', 'x@y.test', T + 8 * DAY);
      assert.equal(await c.store.rules.claimReply(a.id, 'Vacation', 'x@y.test', T + 8 * DAY + 2, T + DAY), true, 'released');

      await c.store.rules.put(a.id, rule('Away', 5), () => {});
      assert.equal(await c.store.rules.claimReply(a.id, 'Away', 'q@y.test', T, since), true);
      await c.store.rules.rename(a.id, 'mailIn', 'Away', 'Away2', () => {});
      assert.equal(await c.store.rules.claimReply(a.id, 'Away2', 'q@y.test', T + 1, since), false, 'the log followed the rule');
      assert.equal(await c.store.rules.claimReply(a.id, 'Away', 'q@y.test', T + 1, since), true, 'not left under the old name');
      await c.store.rules.remove(a.id, 'mailIn', 'Away2', () => {});
      await c.store.rules.put(a.id, rule('Away2', 5), () => {});
      assert.equal(await c.store.rules.claimReply(a.id, 'Away2', 'q@y.test', T + 2, since), true, 'the log went with the rule');
    });
  });
}

// ---------------------------------------------------------------------------------------

function datasets(fresh: FreshStore): void {
  describe('datasets', () => {
    const c = useStore(fresh);

    it('create (with parents), exists, listSubsets (direct, sorted), remove (with subsets, not prefix siblings)', async () => {
      const a = await c.account();
      const ds = c.store.datasets;
      await ds.create(a.id, 'Contacts/Work', roomy);
      assert.equal(await ds.exists(a.id, 'Contacts'), true, 'the parent was created');
      assert.equal(await ds.exists(a.id, 'Contacts/Work'), true);
      assert.equal(await ds.exists(a.id, 'contacts'), false, 'case-sensitive');
      await assert.rejects(ds.create(a.id, 'Contacts', roomy), AlreadyExistsError);
      await assert.rejects(ds.create(a.id, 'Contacts/Work', roomy), AlreadyExistsError);
      await ds.create(a.id, 'Contacts/Home', roomy);
      await ds.create(a.id, 'Contacts/Work/Team', roomy);
      await ds.create(a.id, 'Contacts-old', roomy);
      await ds.create(a.id, 'ContactsZ/Sub', roomy);
      await ds.create(a.id, 'Blocked', roomy);
      assert.deepEqual(await ds.listSubsets(a.id, ''), ['Blocked', 'Contacts', 'Contacts-old', 'ContactsZ']);
      assert.deepEqual(await ds.listSubsets(a.id, 'Contacts'), ['Contacts/Home', 'Contacts/Work']);
      assert.deepEqual(await ds.listSubsets(a.id, 'Contacts/Work'), ['Contacts/Work/Team']);
      assert.deepEqual(await ds.listSubsets(a.id, 'Blocked'), []);
      await assert.rejects(ds.listSubsets(a.id, 'Nope'), NotFoundError);
      const b = await c.account();
      assert.deepEqual(await ds.listSubsets(b.id, ''), [], 'per account');

      await ds.setEntry(a.id, 'Contacts/Work/Team', 'e', { changes: { email: 'e@x.test' } }, roomy);
      assert.equal(await ds.remove(a.id, 'Contacts'), true);
      assert.equal(await ds.remove(a.id, 'Contacts'), false);
      for (const gone of ['Contacts', 'Contacts/Work', 'Contacts/Work/Team', 'Contacts/Home']) assert.equal(await ds.exists(a.id, gone), false, gone);
      for (const kept of ['Contacts-old', 'ContactsZ', 'ContactsZ/Sub', 'Blocked']) assert.equal(await ds.exists(a.id, kept), true, kept);
      await ds.create(a.id, 'Contacts/Work/Team', roomy);
      assert.deepEqual(await ds.listEntries(a.id, 'Contacts/Work/Team'), [], 'the entries went with the dataset');
    });

    it('entries: set (merge, replace, null removes), get, list sorted, delete; missing datasets; mustBeNew', async () => {
      const a = await c.account();
      const ds = c.store.datasets;
      await ds.create(a.id, 'Book', roomy);
      const e1 = await ds.setEntry(a.id, 'Book', 'zed', { changes: { email: 'Zed@X.test', name: 'Zed' } }, roomy);
      assert.equal(e1.name, 'zed');
      assert.deepEqual(plain(e1.attrs), { email: 'Zed@X.test', name: 'Zed' });
      await ds.setEntry(a.id, 'Book', 'amy', { changes: { name: 'Amy' } }, roomy);
      assert.deepEqual((await ds.listEntries(a.id, 'Book')).map((e) => e.name), ['amy', 'zed']);
      const merged = await ds.setEntry(a.id, 'Book', 'zed', { changes: { name: null, phone: '+1 555' } }, roomy);
      assert.deepEqual(plain(merged.attrs), { email: 'Zed@X.test', phone: '+1 555' });
      assert.deepEqual(plain((await ds.getEntry(a.id, 'Book', 'zed'))!.attrs), { email: 'Zed@X.test', phone: '+1 555' });
      const replaced = await ds.setEntry(a.id, 'Book', 'zed', { changes: { x: '1', y: null }, replace: true }, roomy);
      assert.deepEqual(plain(replaced.attrs), { x: '1' });
      assert.deepEqual(plain((await ds.getEntry(a.id, 'Book', 'zed'))!.attrs), { x: '1' });
      assert.equal(await ds.getEntry(a.id, 'Book', 'nobody'), undefined);
      assert.equal(await ds.getEntry(a.id, 'Nope', 'zed'), undefined);

      await assert.rejects(ds.setEntry(a.id, 'Book', 'amy', { changes: { a: 'b' }, mustBeNew: true }, roomy), AlreadyExistsError);
      assert.deepEqual(plain((await ds.getEntry(a.id, 'Book', 'amy'))!.attrs), { name: 'Amy' });
      await ds.setEntry(a.id, 'Book', 'new', { changes: { a: 'b' }, mustBeNew: true }, roomy);

      await assert.rejects(ds.setEntry(a.id, 'Nope', 'e', { changes: { a: 'b' } }, roomy), NotFoundError);
      assert.equal(await ds.exists(a.id, 'Nope'), false);
      await ds.setEntry(a.id, 'Auto/Sub', 'e', { changes: { a: 'b' }, createDataset: true }, roomy);
      assert.equal(await ds.exists(a.id, 'Auto'), true);
      assert.deepEqual((await ds.listEntries(a.id, 'Auto/Sub')).map((e) => e.name), ['e']);
      await assert.rejects(ds.listEntries(a.id, 'Nope'), NotFoundError);

      assert.equal(await ds.deleteEntry(a.id, 'Book', 'amy'), true);
      assert.equal(await ds.deleteEntry(a.id, 'Book', 'amy'), false);
      await assert.rejects(ds.deleteEntry(a.id, 'Nope', 'amy'), NotFoundError);
      assert.deepEqual((await ds.listEntries(a.id, 'Book')).map((e) => e.name), ['new', 'zed']);

      const odd = JSON.parse('{"__proto__": "p", "constructor": "c", "ünï ☺": "v"}') as Record<string, string>;
      await ds.setEntry(a.id, 'Book', '__proto__', { changes: odd }, roomy);
      const read = (await ds.getEntry(a.id, 'Book', '__proto__'))!;
      assert.equal(Object.getPrototypeOf(read.attrs), null, 'a null-prototype object');
      assert.deepEqual(sorted(Object.keys(read.attrs)), sorted(['__proto__', 'constructor', 'ünï ☺']));
      assert.equal(read.attrs['__proto__'], 'p');
    });

    it('findByEmail by emailKey; uniqueEmail drops the other entries with the address', async () => {
      const a = await c.account();
      const ds = c.store.datasets;
      assert.deepEqual(await ds.findByEmail(a.id, 'Nope', emailKey('a@x.test')), []);
      await ds.create(a.id, 'Replied', roomy);
      await ds.setEntry(a.id, 'Replied', 'e2', { changes: { email: ' A@X.test ' } }, roomy);
      await ds.setEntry(a.id, 'Replied', 'e1', { changes: { email: 'a@x.test', n: '1' } }, roomy);
      await ds.setEntry(a.id, 'Replied', 'e3', { changes: { email: 'b@x.test' } }, roomy);
      await ds.create(a.id, 'Other', roomy);
      await ds.setEntry(a.id, 'Other', 'e9', { changes: { email: 'a@x.test' } }, roomy);
      assert.deepEqual((await ds.findByEmail(a.id, 'Replied', emailKey(' A@x.TEST'))).map((e) => e.name), ['e1', 'e2']);
      assert.deepEqual(plain((await ds.findByEmail(a.id, 'Replied', 'b@x.test'))[0]!.attrs), { email: 'b@x.test' });
      await ds.setEntry(a.id, 'Replied', 'e2', { changes: { email: null } }, roomy);
      assert.deepEqual((await ds.findByEmail(a.id, 'Replied', 'a@x.test')).map((e) => e.name), ['e1'], 'no email, not found');
      await ds.setEntry(a.id, 'Replied', 'e2', { changes: { email: 'A@x.test' } }, roomy);

      await ds.setEntry(a.id, 'Replied', 'e4', { changes: { email: 'a@X.TEST' }, uniqueEmail: true }, roomy);
      assert.deepEqual((await ds.findByEmail(a.id, 'Replied', 'a@x.test')).map((e) => e.name), ['e4']);
      assert.deepEqual((await ds.listEntries(a.id, 'Replied')).map((e) => e.name), ['e3', 'e4']);
      assert.deepEqual((await ds.findByEmail(a.id, 'Other', 'a@x.test')).map((e) => e.name), ['e9'], 'other datasets untouched');
      await ds.setEntry(a.id, 'Replied', 'e4', { changes: { n: '2' }, uniqueEmail: true }, roomy);
      assert.deepEqual(plain((await ds.getEntry(a.id, 'Replied', 'e4'))!.attrs), { email: 'a@X.TEST', n: '2' });
    });

    it('limits: datasets, entries, attributes, entry size; a refused write changes nothing', async () => {
      const a = await c.account();
      const ds = c.store.datasets;
      const limits: DatasetLimits = { maxDatasets: 4, maxEntries: 2, maxAttributes: 2, maxEntryBytes: 100 };
      await ds.create(a.id, 'A/B/C', limits);
      await assert.rejects(ds.create(a.id, 'P/Q', limits), DatasetLimitError);
      assert.equal(await ds.exists(a.id, 'P'), false, 'no parent left behind');
      await assert.rejects(ds.setEntry(a.id, 'X/Y', 'e', { changes: { a: 'b' }, createDataset: true }, limits), DatasetLimitError);
      assert.equal(await ds.exists(a.id, 'X'), false);
      await ds.create(a.id, 'D', limits);
      await assert.rejects(ds.create(a.id, 'E', limits), DatasetLimitError);

      await ds.setEntry(a.id, 'D', 'one', { changes: { a: '1' } }, limits);
      await ds.setEntry(a.id, 'D', 'two', { changes: { a: '2' } }, limits);
      await assert.rejects(ds.setEntry(a.id, 'D', 'three', { changes: { a: '3' } }, limits), DatasetLimitError);
      await ds.setEntry(a.id, 'D', 'two', { changes: { b: '2' } }, limits);
      assert.deepEqual((await ds.listEntries(a.id, 'D')).map((e) => e.name), ['one', 'two']);

      await assert.rejects(ds.setEntry(a.id, 'D', 'two', { changes: { c: '3' } }, limits), DatasetLimitError);
      assert.deepEqual(plain((await ds.getEntry(a.id, 'D', 'two'))!.attrs), { a: '2', b: '2' });
      await ds.setEntry(a.id, 'D', 'two', { changes: { c: '3', a: null } }, limits);
      assert.deepEqual(plain((await ds.getEntry(a.id, 'D', 'two'))!.attrs), { b: '2', c: '3' });

      await assert.rejects(ds.setEntry(a.id, 'D', 'one', { changes: { a: 'x'.repeat(120) } }, limits), DatasetLimitError);
      await assert.rejects(ds.setEntry(a.id, 'D', 'one', { changes: { a: 'é'.repeat(50) } }, limits), DatasetLimitError, 'UTF-8 bytes');
      assert.deepEqual(plain((await ds.getEntry(a.id, 'D', 'one'))!.attrs), { a: '1' });
      await ds.setEntry(a.id, 'D', 'one', { changes: { a: 'x'.repeat(80) } }, limits);
    });
  });
}

// ---------------------------------------------------------------------------------------

function cluster(fresh: FreshStore): void {
  describe('cluster', () => {
    const c = useStore(fresh);

    it('nodes: heartbeat registers and renews, node, deadNodes, removeNode', async () => {
      const cl = c.store.cluster;
      const n1 = { id: unique('node-'), httpUrl: 'http://192.0.2.1:8100', aliveUntil: T + 30_000 };
      const n2 = { id: unique('node-'), httpUrl: 'http://192.0.2.2:8100', aliveUntil: T + 10_000 };
      await cl.heartbeat(n1);
      await cl.heartbeat(n2);
      assert.deepEqual(await cl.node(n1.id), n1);
      assert.equal(await cl.node('no-such-node'), undefined);
      const ours = (list: { id: string }[]): string[] => sorted(list.map((n) => n.id).filter((id) => id === n1.id || id === n2.id));
      assert.deepEqual(ours(await cl.deadNodes(T)), []);
      assert.deepEqual(await cl.deadNodes(T + 20_000).then((l) => l.filter((n) => n.id === n2.id)), [n2]);
      assert.deepEqual(ours(await cl.deadNodes(T + 20_000)), [n2.id]);
      assert.deepEqual(ours(await cl.deadNodes(T + 40_000)), sorted([n1.id, n2.id]));
      const renewed = { ...n2, httpUrl: 'http://192.0.2.22:8200', aliveUntil: T + 50_000 };
      await cl.heartbeat(renewed);
      assert.deepEqual(await cl.node(n2.id), renewed);
      assert.deepEqual(ours(await cl.deadNodes(T + 40_000)), [n1.id]);
      await cl.removeNode(n1.id);
      assert.equal(await cl.node(n1.id), undefined);
      assert.deepEqual(ours(await cl.deadNodes(T + 40_000)), []);
      await cl.removeNode(n1.id);
    });

    it('sessions: addSession within the limit counting only live nodes, accountSessions oldest first, removeSession, removeNode drops its sessions', async () => {
      const cl = c.store.cluster;
      const a = await c.account();
      const b = await c.account();
      const n1 = { id: unique('node-'), httpUrl: 'http://192.0.2.1:8100', aliveUntil: T + 30_000 };
      const n2 = { id: unique('node-'), httpUrl: 'http://192.0.2.2:8100', aliveUntil: T + 10_000 };
      await cl.heartbeat(n1);
      await cl.heartbeat(n2);
      const s = (urlID: string, node: string, created: number, accountId = a.id): SessionRecord => ({ urlID: unique(urlID), accountId, node, created });
      const s1 = s('s1-', n1.id, T + 1);
      const s2 = s('s2-', n2.id, T + 2);
      const s3 = s('s3-', n1.id, T + 20_000);
      const other = s('o-', n1.id, T + 3, b.id);
      assert.equal(await cl.addSession(s2, 2, T + 5), true);
      assert.equal(await cl.addSession(s1, 2, T + 5), true);
      assert.equal(await cl.addSession(other, 1, T + 5), true, 'another account has its own count');
      assert.equal(await cl.addSession(s3, 2, T + 5), false, 'two live sessions already');
      assert.deepEqual(await cl.accountSessions(a.id, T + 5), [s1, s2], 'oldest first');
      assert.equal(await cl.addSession(s3, 2, T + 20_000), true, "the dead node's session does not count");
      assert.deepEqual(await cl.accountSessions(a.id, T + 20_000), [s1, s3], 'sessions of live nodes only');
      assert.deepEqual(await cl.accountSessions(a.id, T + 5), [s1, s2, s3]);
      assert.deepEqual(await cl.accountSessions(b.id, T + 5), [other]);
      await cl.removeSession(s1.urlID);
      await cl.removeSession('no-such-session');
      assert.deepEqual(await cl.accountSessions(a.id, T + 5), [s2, s3]);
      await cl.removeNode(n1.id);
      assert.deepEqual(await cl.accountSessions(a.id, T + 5), [s2]);
      await cl.heartbeat(n1);
      assert.deepEqual(await cl.accountSessions(a.id, T + 5), [s2], 'the sessions went with the node');
      assert.deepEqual(await cl.accountSessions(b.id, T + 5), []);
      assert.equal(await cl.addSession(s('s4-', n1.id, T + 6), 2, T + 6), true);
    });

    it('boundaries: a node is alive at its aliveUntil and dead after it', async () => {
      const cl = c.store.cluster;
      const a = await c.account();
      const node = { id: unique('node-'), httpUrl: 'http://192.0.2.9:8100', aliveUntil: T + 777 };
      await cl.heartbeat(node);
      assert.ok(!(await cl.deadNodes(T + 777)).some((n) => n.id === node.id));
      assert.ok((await cl.deadNodes(T + 778)).some((n) => n.id === node.id));
      const session = { urlID: unique('edge-'), accountId: a.id, node: node.id, created: T };
      assert.equal(await cl.addSession(session, 1, T + 777), true);
      assert.equal(await cl.addSession({ ...session, urlID: unique('edge-') }, 1, T + 777), false, 'counted at aliveUntil');
      assert.deepEqual(await cl.accountSessions(a.id, T + 777), [session]);
      assert.deepEqual(await cl.accountSessions(a.id, T + 778), []);
    });

    it('two handles racing addSession with limit 1: exactly one wins', async () => {
      const h1 = await c.open();
      const h2 = await c.open();
      const node = { id: unique('node-'), httpUrl: 'http://192.0.2.3:8100', aliveUntil: T + 1_000_000 };
      await c.store.cluster.heartbeat(node);
      for (let i = 0; i < 10; i++) {
        const account = await c.account();
        const one = { urlID: unique('race-a-'), accountId: account.id, node: node.id, created: T + i };
        const two = { urlID: unique('race-b-'), accountId: account.id, node: node.id, created: T + i };
        const [r1, r2] = await Promise.all([h1.cluster.addSession(one, 1, T + 100), h2.cluster.addSession(two, 1, T + 100)]);
        assert.equal(Number(r1) + Number(r2), 1, `round ${i}: ${r1} ${r2}`);
        assert.deepEqual(await c.store.cluster.accountSessions(account.id, T + 100), [r1 ? one : two]);
      }
    });
  });
}

function sharedState(fresh: FreshStore): void {
  describe('shared state', () => {
    const c = useStore(fresh);

    it('update reads, decides and writes; get; expiry; undefined deletes; scopes are separate', async () => {
      const sh = c.store.shared;
      const scope = unique('login-');
      const seen: unknown[] = [];
      const r1 = await sh.update(scope, 'k', T, (v) => {
        seen.push(v);
        return { value: { n: 1, list: ['a'], ok: true }, expires: T + 1000, result: 'first' };
      });
      assert.equal(r1, 'first');
      assert.equal(seen.at(-1), undefined);
      assert.deepEqual(await sh.get(scope, 'k', T + 10), { n: 1, list: ['a'], ok: true });
      assert.equal(await sh.get(`${scope}x`, 'k', T + 10), undefined, 'another scope');
      assert.equal(await sh.get(scope, 'other', T + 10), undefined);
      const r2 = await sh.update(scope, 'k', T + 10, (v) => ({ value: (v as { n: number }).n + 1, expires: T + 2000, result: v }));
      assert.deepEqual(r2, { n: 1, list: ['a'], ok: true });
      assert.equal(await sh.get(scope, 'k', T + 20), 2);
      assert.equal(await sh.get(scope, 'k', T + 5000), undefined, 'expired');
      const r3 = await sh.update(scope, 'k', T + 5000, (v) => ({ value: 'fresh', expires: T + 9000, result: v }));
      assert.equal(r3, undefined, 'an expired value reads as undefined');
      assert.equal(await sh.get(scope, 'k', T + 5001), 'fresh');
      await sh.update(scope, 'k', T + 5001, () => ({ value: undefined, expires: T + 9000, result: null }));
      assert.equal(await sh.get(scope, 'k', T + 5002), undefined, 'deleted');
      assert.equal(await sh.get(scope, 'k', T), undefined, 'deleted, not just expired');
      await sh.update(scope, 'null', T, () => ({ value: null, expires: T + 1000, result: 0 }));
      assert.equal(await sh.get(scope, 'null', T + 1), null, 'null is a value');
      assert.equal(await sh.get(scope, 'null', T + 999), null);
      assert.equal(await sh.get(scope, 'null', T + 1000), undefined, 'expired at its expiry');
    });

    it('a change that throws writes nothing and the error is passed on', async () => {
      const sh = c.store.shared;
      const scope = unique('throw-');
      await sh.update(scope, 'k', T, () => ({ value: 1, expires: T + 1000, result: 0 }));
      class Refusal extends Error {}
      await assert.rejects(
        sh.update(scope, 'k', T, () => {
          throw new Refusal();
        }),
        Refusal,
      );
      assert.equal(await sh.get(scope, 'k', T), 1);
    });

    it('prune forgets what expired before `now`, and only that', async () => {
      const sh = c.store.shared;
      const scope = unique('prune-');
      await sh.update(scope, 'short', T, () => ({ value: 's', expires: T + 500, result: 0 }));
      await sh.update(scope, 'long', T, () => ({ value: 'l', expires: T + 5000, result: 0 }));
      await sh.prune(T + 100);
      assert.equal(await sh.get(scope, 'short', T), 's', 'not expired yet at the prune');
      await sh.prune(T + 1000);
      // Read as of T: a pruned value is gone even for a reader whose clock is behind.
      assert.equal(await sh.get(scope, 'short', T), undefined, 'pruned');
      assert.equal(await sh.get(scope, 'long', T), 'l', 'kept');
    });

    it('updates of one key from two handles at once are atomic: N increments give N', async () => {
      const h1 = await c.open();
      const h2 = await c.open();
      const scope = unique('count-');
      const N = 40;
      const results = await Promise.all(
        Array.from({ length: N }, (_, i) =>
          (i % 2 === 0 ? h1 : h2).shared.update(scope, 'counter', T, (v) => {
            const next = ((v as number | undefined) ?? 0) + 1;
            return { value: next, expires: T + DAY, result: next };
          }),
        ),
      );
      assert.deepEqual(sorted(results, numeric), Array.from({ length: N }, (_, i) => i + 1), 'each saw the one before');
      assert.equal(await c.store.shared.get(scope, 'counter', T), N);
    });
  });
}

function relay(fresh: FreshStore): void {
  describe('relay', () => {
    const c = useStore(fresh);

    it("a message sent by one handle reaches another handle's listener, intact", async () => {
      const sender = await c.open();
      const receiver = await c.open();
      const got: string[] = [];
      const stop = await receiver.relay.listen((m) => got.push(m), () => {});
      try {
        const first = JSON.stringify({ type: 'mailbox', id: unique('relay-'), text: 'ünïcode ☺ "quoted" \\ back' });
        await sender.relay.send(first);
        await eventually('the message arrives', () => got.includes(first));
        const padding = MAX_RELAY_MESSAGE - JSON.stringify({ id: 'max', pad: '' }).length;
        const longest = JSON.stringify({ id: 'max', pad: 'x'.repeat(padding) });
        assert.equal(Buffer.byteLength(longest), MAX_RELAY_MESSAGE);
        await sender.relay.send(longest);
        await eventually('the longest message arrives', () => got.includes(longest));
        assert.equal(got.filter((m) => m === first).length, 1, 'at most once');
      } finally {
        await stop();
      }
    });

    it('an over-long message is refused (by bytes, not characters)', async () => {
      await assert.rejects(c.store.relay.send(JSON.stringify({ pad: 'x'.repeat(MAX_RELAY_MESSAGE) })));
      const multibyte = JSON.stringify({ pad: 'é'.repeat(MAX_RELAY_MESSAGE / 2) });
      assert.ok(multibyte.length < MAX_RELAY_MESSAGE && Buffer.byteLength(multibyte) > MAX_RELAY_MESSAGE);
      await assert.rejects(c.store.relay.send(multibyte));
    });

    it('a stopped listener gets nothing more', async () => {
      const sender = await c.open();
      const receiver = await c.open();
      const stopped: string[] = [];
      const stop = await receiver.relay.listen((m) => stopped.push(m), () => {});
      const before = JSON.stringify({ id: unique('before-') });
      await sender.relay.send(before);
      await eventually('the message before the stop arrives', () => stopped.includes(before));
      await stop();
      const still: string[] = [];
      const stopStill = await receiver.relay.listen((m) => still.push(m), () => {});
      try {
        const afterStop = JSON.stringify({ id: unique('after-') });
        await sender.relay.send(afterStop);
        await eventually("the same handle's new listener gets it", () => still.includes(afterStop));
        assert.ok(!stopped.includes(afterStop), 'the stopped listener did not');
      } finally {
        await stopStill();
      }
    });
  });
}
