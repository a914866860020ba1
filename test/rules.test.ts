/**
 * Account Automated Rules: the XIMSS operations (ruleList, ruleRead, ruleSet, ruleUpdate,
 * ruleRename, ruleRemove) over a real server and socket, RulesAllowed enforcement,
 * listKnownValues, and Mail Rules at final delivery: conditions with every operator,
 * filing actions, idempotent re-runs, and the actions that send mail (checked in the target
 * mailbox of another local account, through the outbound queue; and, for the exact bytes,
 * through a recording submitter).
 */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { Flag } from '../src/services/mail/flags.js';
import { LocalDelivery, type DeliveryOutcome } from '../src/transports/smtp/local-delivery.js';
import type { MailSubmitter, OutgoingMessage } from '../src/transports/smtp/queue.js';
import { XmlElement } from '../src/xml/element.js';
import { sendmail, smtpSession } from './fixtures/smtp-client.js';
import { eventually, expectError, expectOk, freePort, headerValues, rfc822, startTestServer, storedRaw, storedUids, type TestServer, type XimssClient } from './helpers.js';

const PASSWORD = 'rules-secret';
const DOMAIN = 'example.test';

let server: TestServer;

before(async () => {
  // Mail for other domains goes to a relay nothing listens on: it stays queued.
  server = await startTestServer({ ports: { smtp: await freePort() }, outbound: { relay: '127.0.0.1:1' } });
});

after(() => server.stop());

/** A fresh account and a logged-in client for it. */
async function newUser(name = 'user'): Promise<{ address: string; client: XimssClient }> {
  const address = await server.newAccount(name, { password: PASSWORD, realName: `Real ${name}` });
  const { client } = await server.login(address, PASSWORD);
  return { address, client };
}

async function accountOf(address: string) {
  const account = await server.services.accounts.find(address);
  assert.ok(account, address);
  return account;
}

type Cond = [opCode: string, operator: string, parameter?: string];
type Act = [opCode: string, parameter?: string];

function ruleSet(name: string, priority: number | undefined, conditions: Cond[], actions: Act[], extra: { type?: string; stage?: string; comment?: string } = {}): XmlElement {
  const request = new XmlElement('ruleSet', { type: extra.type ?? 'mailIn', name, priority, stage: extra.stage });
  for (const [opCode, operator, parameter] of conditions) request.add('condition', { opCode, operator }, parameter);
  for (const [opCode, parameter] of actions) request.add('action', { opCode }, parameter);
  if (extra.comment !== undefined) request.add('comment', undefined, extra.comment);
  return request;
}

async function setRule(client: XimssClient, name: string, priority: number, conditions: Cond[], actions: Act[]): Promise<void> {
  expectOk(await client.request(ruleSet(name, priority, conditions, actions)), `ruleSet ${name}`);
}

async function clearRules(address: string): Promise<void> {
  const account = await accountOf(address);
  for (const type of ['mailIn', 'signalIn'] as const) {
    for (const rule of await server.services.rules.list(account, type)) await server.services.rules.remove(account, type, rule.name);
  }
}

interface Envelope {
  sender?: string;
  authenticated?: boolean;
  key?: string;
}

/** Final delivery in-process (what SMTP and the queue call). */
async function deliver(to: string, raw: Buffer, env: Envelope = {}, delivery = server.services.delivery): Promise<DeliveryOutcome> {
  const account = await accountOf(to);
  return delivery.deliver(
    raw,
    { sender: env.sender ?? 'someone@remote.example', recipient: to, account, authenticated: env.authenticated ?? false, remoteAddress: '192.0.2.7' },
    env.key === undefined ? {} : { key: env.key },
  );
}

let messageCounter = 0;

/** A message: header pairs (From/To/Subject/Message-ID defaults) and a body. */
function mail(fields: Record<string, string | undefined> = {}, body = 'Hello.\n'): Buffer {
  const defaults: Record<string, string> = {
    From: 'Someone <someone@remote.example>',
    To: `target@${DOMAIN}`,
    Subject: 'Hello',
    'Message-ID': `<m${++messageCounter}.${process.pid}@remote.example>`,
    Date: 'Mon, 1 Jan 2024 10:00:00 +0000',
  };
  const merged: Record<string, string | undefined> = { ...defaults, ...fields };
  const headers = Object.entries(merged).filter((e): e is [string, string] => e[1] !== undefined);
  return rfc822(headers, body);
}

/** The first field `name` of the header, unfolded. */
function headerOf(raw: Buffer, name: string): string | undefined {
  return headerValues(raw, name)[0];
}

async function flagsOf(address: string, mailbox: string, uid: number): Promise<{ flags: number; keywords: readonly string[] }> {
  const account = await accountOf(address);
  const box = await server.services.mail.access(account, mailbox, 'r');
  const meta = await server.services.mail.getMessage(box, uid);
  assert.ok(meta, `message ${uid} in ${mailbox}`);
  return { flags: meta.flags, keywords: meta.keywords };
}

/** Waits until the mailbox holds at least `count` messages; returns its UIDs. */
async function waitForMessages(address: string, mailbox: string, count: number, timeoutMs = 8000): Promise<number[]> {
  return eventually(
    async () => {
      const uids = await storedUids(server, address, mailbox).catch(() => []); // not created yet
      return uids.length >= count ? uids : undefined;
    },
    `${count} message(s) in ${address} ${mailbox}`,
    timeoutMs,
  );
}

/** A submitter that records what rules send (and refuses nothing). */
class Recorder implements MailSubmitter {
  readonly sent: OutgoingMessage[] = [];
  async submit(message: OutgoingMessage): Promise<number> {
    return this.sent.push(message);
  }
}

function recordingDelivery(): { delivery: LocalDelivery; recorder: Recorder } {
  const recorder = new Recorder();
  return { delivery: new LocalDelivery({ ...server.services.delivery.deps, submitter: recorder }), recorder };
}

// ---------------------------------------------------------------------------------------

describe('rule operations', () => {
  test('ruleSet, ruleList, ruleRead: the spec example round-trips; ruleList sends no body', async () => {
    const { client } = await newUser('ops');
    const request = ruleSet('Junk Filter', 2, [['Header Field', 'is', 'X-Junk: 5*'], ['Source', 'is not', 'authenticated']], [['Store in', 'Junk'], ['Discard']], {
      comment: 'This is my test Rule!',
    });
    expectOk(await client.request(request));
    await setRule(client, 'Second', 7, [], [['Mark', 'Seen']]);
    await setRule(client, 'Inactive', 0, [['Subject', 'is', 'x']], [['Discard']]);

    const list = expectOk(await client.request(new XmlElement('ruleList', { type: 'mailIn' })));
    assert.deepEqual(
      list.messages.map((m) => m.toString().replace(/ id="[^"]*"/, '')),
      ['<rule type="mailIn" name="Second" priority="7"/>', '<rule type="mailIn" name="Junk Filter" priority="2"/>', '<rule type="mailIn" name="Inactive" priority="0"/>'],
      'highest priority first, no body',
    );

    const read = expectOk(await client.request(new XmlElement('ruleRead', { type: 'mailIn', name: 'Junk Filter' })));
    assert.equal(read.messages.length, 1);
    const rule = read.messages[0]!;
    assert.equal(rule.name, 'rule');
    assert.deepEqual(rule.attrs, { id: rule.attrs.id!, type: 'mailIn', name: 'Junk Filter', priority: '2' });
    assert.deepEqual(
      rule.elements().map((e) => [e.name, e.attrs.opCode, e.attrs.operator, e.text()]),
      [
        ['condition', 'Header Field', 'is', 'X-Junk: 5*'],
        ['condition', 'Source', 'is not', 'authenticated'],
        ['action', 'Store in', undefined, 'Junk'],
        ['action', 'Discard', undefined, ''],
        ['comment', undefined, undefined, 'This is my test Rule!'],
      ],
    );

    // Without a type attribute: Mail Rules (older clients).
    const untyped = expectOk(await client.request(new XmlElement('ruleList')));
    assert.equal(untyped.messages.length, 3);
  });

  test('ruleSet replaces a rule of the same name; ruleUpdate, ruleRename, ruleRemove', async () => {
    const { client } = await newUser('ops');
    await setRule(client, 'A', 3, [['Subject', 'is', 'one']], [['Store in', 'One']]);
    await setRule(client, 'A', 4, [['Subject', 'is', 'two']], [['Store in', 'Two'], ['Stop Processing']]);
    let read = expectOk(await client.request(new XmlElement('ruleRead', { name: 'A' })));
    assert.equal(read.messages[0]!.attrs.priority, '4');
    assert.deepEqual(read.messages[0]!.elements('action').map((a) => a.text()), ['Two', '']);
    assert.equal(read.messages[0]!.element('comment'), undefined);

    // ruleSet without a priority keeps the replaced rule's.
    expectOk(await client.request(ruleSet('A', undefined, [], [['Store in', 'Three']])));
    read = expectOk(await client.request(new XmlElement('ruleRead', { name: 'A' })));
    assert.equal(read.messages[0]!.attrs.priority, '4');

    expectOk(await client.request(new XmlElement('ruleUpdate', { type: 'mailIn', name: 'A', priority: '0' })));
    read = expectOk(await client.request(new XmlElement('ruleRead', { name: 'A' })));
    assert.equal(read.messages[0]!.attrs.priority, '0');
    assert.deepEqual(read.messages[0]!.elements('action').map((a) => a.text()), ['Three'], 'ruleUpdate keeps the body');

    expectOk(await client.request(new XmlElement('ruleRename', { type: 'mailIn', name: 'A', newName: 'B' })));
    expectError(await client.request(new XmlElement('ruleRead', { name: 'A' })), 'rule not found');
    read = expectOk(await client.request(new XmlElement('ruleRead', { name: 'B' })));
    assert.equal(read.messages[0]!.attrs.name, 'B');

    await setRule(client, 'C', 1, [], [['Discard']]);
    expectError(await client.request(new XmlElement('ruleRename', { name: 'B', newName: 'C' })), /already exists/);
    expectOk(await client.request(new XmlElement('ruleRemove', { type: 'mailIn', name: 'B' })));
    const list = expectOk(await client.request(new XmlElement('ruleList', { type: 'mailIn' })));
    assert.deepEqual(list.messages.map((m) => m.attrs.name), ['C']);
    expectError(await client.request(new XmlElement('ruleRemove', { name: 'B' })), 'rule not found');
    expectError(await client.request(new XmlElement('ruleUpdate', { name: 'B', priority: '3' })), 'rule not found');
    expectError(await client.request(new XmlElement('ruleRename', { name: 'B', newName: 'D' })), 'rule not found');
  });

  test('errors: names, priorities, unknown conditions, operators and actions, parameters, limits', async () => {
    const { client } = await newUser('ops');
    const bad = async (request: XmlElement, expected: RegExp | string): Promise<void> => {
      expectError(await client.request(request), expected, request.toString());
    };
    await bad(ruleSet('', 1, [], [['Discard']]), 'the rule name is missing');
    await bad(new XmlElement('ruleRead', {}), 'the name attribute is missing');
    await bad(new XmlElement('ruleRead', { name: 'nope' }), 'rule not found');
    await bad(new XmlElement('ruleRename', { name: 'x' }), 'the newName attribute is missing');
    await bad(ruleSet('r', 11, [], [['Discard']]), /invalid rule priority "11"/);
    await bad(new XmlElement('ruleSet', { name: 'r', priority: 'high' }), /invalid rule priority "high"/);
    await bad(ruleSet('r', -1, [], [['Discard']]), /invalid rule priority/);
    await bad(ruleSet('r', 1, [['Phase of Moon', 'is', 'full']], [['Discard']]), 'unknown rule condition "Phase of Moon"');
    await bad(ruleSet('r', 1, [['Subject', 'resembles', 'x']], [['Discard']]), 'unknown rule operator "resembles"');
    await bad(ruleSet('r', 1, [['Subject', 'greater than', 'x']], [['Discard']]), /does not take the operator "greater than"/);
    await bad(ruleSet('r', 1, [['Message Size', 'is', '10']], [['Discard']]), /does not take the operator "is"/);
    await bad(ruleSet('r', 1, [['Message Size', 'greater than', 'ten']], [['Discard']]), /is not a size/);
    await bad(ruleSet('r', 1, [['Header Field', 'is', 'no colon here']], [['Discard']]), /"Name: value-pattern"/);
    await bad(ruleSet('r', 1, [['Subject', '', 'x']], [['Discard']]), /the operator attribute is missing/);
    await bad(ruleSet('r', 1, [['Human Generated', 'is', '']], [['Discard']]), /takes no operator/);
    await bad(ruleSet('r', 1, [['From', 'in', ' , ']], [['Discard']]), /list of patterns is empty/);
    await bad(ruleSet('r', 1, [], [['Teleport to', 'Mars']]), 'unknown rule action "Teleport to"');
    await bad(ruleSet('r', 1, [], [['Store in', '']]), 'action "Store in" needs a parameter');
    await bad(ruleSet('r', 1, [], [['Store in', '~other@example.test/INBOX']]), /only mailboxes of the account itself/);
    await bad(ruleSet('r', 1, [], [['Mark', 'Seen,(bad)']]), /invalid flag name/);
    await bad(ruleSet('r', 1, [], [['Add Header', 'not a header line']]), /"Name: value" header line/);
    await bad(ruleSet('r', 1, [], [['Redirect to', 'not an address, <x y@z>']]), /is not an E-mail address/);
    await bad(ruleSet('r', 1, [], [['Reply with', '+To: someone@else\n\nbody']]), /may not set the To header field/);
    await bad(ruleSet('r', 1, [], [['Reply with', '+Subject Away\n\nbody']]), /"Name: value" header line/);
    await bad(ruleSet('r', 1, [], [['Store in', 'x'.repeat(5000)]]), /too long/);
    const many = ruleSet('r', 1, [], Array.from({ length: 33 }, (): Act => ['Discard']));
    await bad(many, /too many actions \(at most 32\)/);
    await bad(new XmlElement('ruleList', { type: 'mailOut' }), /unknown rule type: mailOut/);
    const stray = ruleSet('r', 1, [], [['Discard']]);
    stray.add('script', undefined, 'x');
    await bad(stray, 'unexpected element <script> in a rule');
    await bad(new XmlElement('ruleUpdate', { name: 'r' }), 'the priority attribute is missing');

    // The rules limit per account.
    for (let i = 0; i < 100; i++) await setRule(client, `rule ${i}`, 1, [], [['Discard']]);
    await bad(ruleSet('one too many', 1, [], [['Discard']]), /too many rules \(at most 100\)/);
    await setRule(client, 'rule 5', 2, [], [['Discard']]); // replacing one is fine
  });

  test('Signal Rules: own conditions and actions, a stage, SignalRulesAllowed', async () => {
    const { address, client } = await newUser('signal');
    // SignalRulesAllowed is No by default.
    const request = ruleSet('Busy', 5, [['From', 'is', '*@example.test']], [['Redirect to', 'voicemail']], { type: 'signalIn', stage: 'Busy' });
    expectError(await client.request(request), /SignalRulesAllowed is None/);
    await server.services.accounts.setSettings(await accountOf(address), { SignalRulesAllowed: 'Any' });
    expectOk(await client.request(request));
    const list = expectOk(await client.request(new XmlElement('ruleList', { type: 'signalIn' })));
    assert.equal(list.messages[0]!.toString().replace(/ id="[^"]*"/, ''), '<rule type="signalIn" name="Busy" priority="5" stage="Busy"/>');
    expectOk(await client.request(new XmlElement('ruleUpdate', { type: 'signalIn', name: 'Busy', stage: '20' })));
    const read = expectOk(await client.request(new XmlElement('ruleRead', { type: 'signalIn', name: 'Busy' })));
    assert.equal(read.messages[0]!.attrs.stage, '20');
    assert.equal(read.messages[0]!.attrs.priority, '5');
    // Mail-only conditions and actions are unknown to Signal Rules, and the sets are separate.
    expectError(await client.request(ruleSet('x', 1, [['Header Field', 'is', 'A: b']], [], { type: 'signalIn' })), 'unknown rule condition "Header Field"');
    expectError(await client.request(ruleSet('x', 1, [], [['Store in', 'Junk']], { type: 'signalIn' })), 'unknown rule action "Store in"');
    expectError(await client.request(ruleSet('x', 1, [], [], { type: 'signalIn', stage: 'whenever' })), /invalid rule stage/);
    assert.equal(expectOk(await client.request(new XmlElement('ruleList', { type: 'mailIn' }))).messages.length, 0);
    await server.services.accounts.setSettings(await accountOf(address), { SignalRulesAllowed: 'Filter Only' });
    expectError(await client.request(new XmlElement('ruleRemove', { type: 'signalIn', name: 'Busy' })), /"Redirect to" of the rule is not allowed/);
  });
});

describe('RulesAllowed', () => {
  test('Filter Only, No Redirect, None: new and old rules both checked', async () => {
    const { address, client } = await newUser('allowed');
    const account = await accountOf(address);
    await setRule(client, 'Redirector', 3, [], [['Redirect to', 'x@remote.example']]);
    await setRule(client, 'Vacation', 2, [], [['Reply with', 'Away']]);
    await setRule(client, 'Filer', 1, [['Subject', 'is', '*sale*']], [['Store in', 'Ads'], ['Mark', 'Seen']]);

    await server.services.accounts.setSettings(account, { RulesAllowed: 'Filter Only' });
    await setRule(client, 'Filer', 4, [['Subject', 'is', '*promo*']], [['Store in', 'Ads'], ['Discard'], ['Tag Subject', '[ad]'], ['Add Header', 'X-Ad: yes'], ['Stop Processing'], ["Remember 'From' in", 'Ads'], ['Reject with', 'no']]);
    expectError(await client.request(ruleSet('New', 1, [], [['Reply with', 'Hi']])), /"Reply with" of the new rule is not allowed for this account \(RulesAllowed is Filter Only; it needs No Redirect\)/);
    expectError(await client.request(ruleSet('New', 1, [], [['Mirror to', 'a@b.example']])), /needs Any/);
    // The old rule counts too: a rule with a Redirect cannot be replaced, changed, renamed or removed.
    expectError(await client.request(ruleSet('Redirector', 1, [], [['Discard']])), /"Redirect to" of the rule it replaces is not allowed/);
    expectError(await client.request(new XmlElement('ruleUpdate', { name: 'Redirector', priority: '0' })), /"Redirect to" of the rule is not allowed/);
    expectError(await client.request(new XmlElement('ruleRename', { name: 'Redirector', newName: 'R' })), /not allowed/);
    expectError(await client.request(new XmlElement('ruleRemove', { name: 'Redirector' })), /not allowed/);
    expectError(await client.request(new XmlElement('ruleRemove', { name: 'Vacation' })), /"Reply with" of the rule is not allowed/);
    expectOk(await client.request(new XmlElement('ruleUpdate', { name: 'Filer', priority: '2' })));

    await server.services.accounts.setSettings(account, { RulesAllowed: 'No Redirect' });
    expectOk(await client.request(ruleSet('Vacation', 2, [['Human Generated', '---']], [['Reply with', 'Away!'], ['Reply to All with', 'All away']])));
    expectError(await client.request(ruleSet('Vacation', 2, [], [['Forward to', 'x@remote.example']])), /"Forward to" of the new rule is not allowed/);
    expectError(await client.request(new XmlElement('ruleRemove', { name: 'Redirector' })), /not allowed/);

    await server.services.accounts.setSettings(account, { RulesAllowed: 'None' });
    expectError(await client.request(ruleSet('Anything', 1, [], [['Mark', 'Seen']])), /may not modify its Mail Rules \(RulesAllowed is None\)/);
    expectError(await client.request(new XmlElement('ruleRemove', { name: 'Filer' })), /RulesAllowed is None/);
    expectError(await client.request(new XmlElement('ruleUpdate', { name: 'Filer', priority: '1' })), /RulesAllowed is None/);
    // Reading is always allowed.
    assert.equal(expectOk(await client.request(new XmlElement('ruleList'))).messages.length, 3);
    expectOk(await client.request(new XmlElement('ruleRead', { name: 'Redirector' })));
    const status = expectOk(await client.request(new XmlElement('readStatus')));
    assert.equal(status.messages[0]!.element('RulesAllowed')?.text(), 'None');

    await server.services.accounts.setSettings(account, { RulesAllowed: 'Any' });
    expectOk(await client.request(new XmlElement('ruleRemove', { name: 'Redirector' })));
  });
});

describe('listKnownValues', () => {
  test('lists the rule modes (most restrictive first), conditions and actions with allowedSet', async () => {
    const { client } = await newUser('known');
    const reply = expectOk(await client.request(new XmlElement('listKnownValues')));
    const values = reply.messages[0]!;
    assert.equal(values.name, 'knownValues');
    const names = (element: string): string[] => values.elements(element).map((e) => e.attrs.name!);
    assert.deepEqual(names('mailRuleAllowed'), ['None', 'Filter Only', 'No Redirect', 'Any']);
    assert.deepEqual(names('signalRuleAllowed'), ['None', 'Filter Only', 'No Redirect', 'Any']);
    for (const c of ['Header Field', 'From', 'Sender', 'Return-Path', 'To', 'Cc', 'Any To or Cc', 'Each To or Cc', 'Reply-To', 'Subject', 'Message-ID', 'Message Size', 'Source', 'Human Generated']) {
      assert.ok(names('mailRuleCondition').includes(c), `mailRuleCondition ${c}`);
    }
    const actions = Object.fromEntries(values.elements('mailRuleAction').map((e) => [e.attrs.name, e.attrs.allowedSet]));
    assert.deepEqual(actions, {
      'Store in': 'Filter Only',
      Mark: 'Filter Only',
      'Add Header': 'Filter Only',
      'Tag Subject': 'Filter Only',
      Discard: 'Filter Only',
      'Reject with': 'Filter Only',
      'Stop Processing': 'Filter Only',
      "Remember 'From' in": 'Filter Only',
      'Reply with': 'No Redirect',
      'Reply to All with': 'No Redirect',
      'Redirect to': 'Any',
      'Mirror to': 'Any',
      'Forward to': 'Any',
    });
    assert.ok(names('signalRuleCondition').length > 0);
    assert.ok(values.elements('signalRuleAction').every((e) => e.attrs.allowedSet !== undefined));
    // The charsets and time zones are still there.
    assert.ok(names('tzid').includes('HostOS'));
    assert.ok(names('charset').includes('utf-8'));
  });
});

// ---------------------------------------------------------------------------------------

describe('Mail Rules at delivery: conditions', () => {
  let probeUser: { address: string; client: XimssClient };

  before(async () => {
    probeUser = await newUser('probe');
  });

  /** Sets the single rule "probe" (condition(s) -> Store in Hit + Discard); true when a message matched. */
  async function probe(conditions: Cond[], raw: Buffer, env: Envelope = {}): Promise<boolean> {
    await setRule(probeUser.client, 'probe', 5, conditions, [['Store in', 'Hit'], ['Discard']]);
    const outcome = await deliver(probeUser.address, raw, env);
    assert.equal(outcome.stored.length, 1, 'one copy either way');
    return outcome.stored[0]!.mailbox === 'Hit';
  }

  async function check(cases: [Cond, Buffer, boolean, Envelope?][]): Promise<void> {
    for (const [condition, raw, expected, env] of cases) {
      assert.equal(await probe([condition], raw, env), expected, `${JSON.stringify(condition)} on ${headerOf(raw, condition[0].startsWith('Header') ? condition[2]!.split(':')[0]! : condition[0]) ?? raw.toString().slice(0, 80)}`);
    }
  }

  test('the spec example: Junk Filter stores X-Junk: 5 mail in Junk, INBOX gets none (authenticated senders excepted)', async () => {
    const { address, client } = await newUser('junk');
    const request = ruleSet('Junk Filter', 2, [['Header Field', 'is', 'X-Junk: 5*'], ['Source', 'is not', 'authenticated']], [['Store in', 'Junk'], ['Discard']]);
    expectOk(await client.request(request));
    let outcome = await deliver(address, mail({ 'X-Junk': '5 (very likely)' }));
    assert.deepEqual(outcome.stored.map((s) => s.mailbox), ['Junk']);
    assert.deepEqual(await storedUids(server, address, 'INBOX'), []);
    const raw = await storedRaw(server, address, 'Junk', outcome.stored[0]!.uid);
    assert.match(raw!.toString(), /^Return-Path: <someone@remote\.example>\r\n/);
    assert.deepEqual(await flagsOf(address, 'Junk', outcome.stored[0]!.uid), { flags: Flag.Recent, keywords: [] });
    outcome = await deliver(address, mail({ 'X-Junk': '5' }), { authenticated: true });
    assert.deepEqual(outcome.stored.map((s) => s.mailbox), ['INBOX']);
    outcome = await deliver(address, mail({ 'X-Junk': '3' }));
    assert.deepEqual(outcome.stored.map((s) => s.mailbox), ['INBOX']);
    assert.equal((await storedUids(server, address, 'Junk')).length, 1);
  });

  test('Header Field with every operator', async () => {
    await check([
      [['Header Field', 'is', 'X-Junk: 5*'], mail({ 'X-Junk': '5 spam' }), true],
      [['Header Field', 'is', 'x-junk: 5*'], mail({ 'X-JUNK': '5' }), true],
      [['Header Field', 'is', 'X-Junk: 5*'], mail({ 'X-Junk': '3' }), false],
      [['Header Field', 'is', 'X-Junk: 5*'], mail(), false],
      [['Header Field', 'is not', 'X-Junk: 5*'], mail({ 'X-Junk': '3' }), true],
      [['Header Field', 'is not', 'X-Junk: 5*'], mail({ 'X-Junk': '5' }), false],
      [['Header Field', 'is not', 'X-Junk: 5*'], mail(), true],
      [['Header Field', 'in', 'X-Mailer: *Outlook*, *Thunderbird*'], mail({ 'X-Mailer': 'Mozilla Thunderbird 115' }), true],
      [['Header Field', 'in', 'X-Mailer: *Outlook*, *Thunderbird*'], mail({ 'X-Mailer': 'mutt' }), false],
      [['Header Field', 'not in', 'X-Mailer: *Outlook*, *Thunderbird*'], mail({ 'X-Mailer': 'mutt' }), true],
      [['Header Field', 'not in', 'X-Mailer: *Outlook*, *Thunderbird*'], mail({ 'X-Mailer': 'Outlook 16' }), false],
      // Encoded words are matched decoded.
      [['Header Field', 'is', 'X-Note: *привет*'], mail({ 'X-Note': '=?UTF-8?B?0L/RgNC40LLQtdGC?=' }), true],
    ]);
  });

  test('Subject and Message-ID with every operator (case-insensitive pictures, decoded text)', async () => {
    await check([
      [['Subject', 'is', '*invoice*'], mail({ Subject: 'Your INVOICE 42' }), true],
      [['Subject', 'is', 'invoice'], mail({ Subject: 'Your invoice' }), false],
      [['Subject', 'is', 'Your*42'], mail({ Subject: 'Your invoice 42' }), true],
      [['Subject', 'is not', '*invoice*'], mail({ Subject: 'Lunch?' }), true],
      [['Subject', 'is not', '*invoice*'], mail({ Subject: 'invoice' }), false],
      [['Subject', 'in', 'lunch*, *invoice*'], mail({ Subject: 'Lunch today' }), true],
      [['Subject', 'in', 'lunch*, *invoice*'], mail({ Subject: 'Dinner' }), false],
      [['Subject', 'not in', 'lunch*, *invoice*'], mail({ Subject: 'Dinner' }), true],
      [['Subject', 'not in', 'lunch*, *invoice*'], mail({ Subject: 'an invoice' }), false],
      [['Subject', 'is', 'Счёт*'], mail({ Subject: '=?UTF-8?B?0KHRh9GR0YIg4oSWIDU=?=' }), true],
      [['Subject', 'is not', '*'], mail({ Subject: undefined }), true],
      [['Message-ID', 'is', '<*@lists.example>'], mail({ 'Message-ID': '<abc@lists.example>' }), true],
      [['Message-ID', 'is not', '<*@lists.example>'], mail({ 'Message-ID': '<abc@other.example>' }), true],
      [['Message-ID', 'in', '<a@x>, <b@x>'], mail({ 'Message-ID': '<b@x>' }), true],
      [['Message-ID', 'not in', '<a@x>, <b@x>'], mail({ 'Message-ID': '<b@x>' }), false],
    ]);
  });

  test('From, Sender, Reply-To, To, Cc, Return-Path: bare address or "Real Name <address>"', async () => {
    await check([
      [['From', 'is', '*@spam.example'], mail({ From: 'Bad Guy <bad@spam.example>' }), true],
      [['From', 'is', 'Bad Guy*'], mail({ From: 'Bad Guy <bad@spam.example>' }), true],
      [['From', 'is', 'bad guy <bad@spam.example>'], mail({ From: '"Bad Guy" <bad@spam.example>' }), true],
      [['From', 'is', '*@spam.example'], mail({ From: 'good@ham.example' }), false],
      [['From', 'is not', '*@spam.example'], mail({ From: 'good@ham.example' }), true],
      [['From', 'is not', '*@spam.example'], mail({ From: 'x@spam.example' }), false],
      [['From', 'in', '*@spam.example, *@junk.example'], mail({ From: 'x@junk.example' }), true],
      [['From', 'in', '*@spam.example, *@junk.example'], mail({ From: 'x@ham.example' }), false],
      [['From', 'not in', '*@spam.example, *@junk.example'], mail({ From: 'x@ham.example' }), true],
      [['From', 'not in', '*@spam.example, *@junk.example'], mail({ From: 'x@junk.example' }), false],
      // No From at all: only the negative operators are met.
      [['From', 'is', '*'], mail({ From: undefined }), false],
      [['From', 'is not', 'x@y'], mail({ From: undefined }), true],
      [['Sender', 'is', 'list-bounces@*'], mail({ Sender: 'list-bounces@lists.example' }), true],
      [['Sender', 'is', '*'], mail(), false],
      [['Reply-To', 'is', 'replies@*'], mail({ 'Reply-To': 'Replies <replies@x.example>' }), true],
      [['To', 'is', `boss@${DOMAIN}`], mail({ To: `Boss <boss@${DOMAIN}>, other@x.example` }), true],
      [['To', 'is not', `boss@${DOMAIN}`], mail({ To: `Boss <boss@${DOMAIN}>, other@x.example` }), false],
      [['Cc', 'in', 'a@x, b@x'], mail({ Cc: 'c@x, b@x' }), true],
      [['Cc', 'not in', 'a@x, b@x'], mail({ Cc: 'c@x, d@x' }), true],
      [['Return-Path', 'is', '*@bounces.example'], mail(), true, { sender: 'id-123@bounces.example' }],
      [['Return-Path', 'is', '*@bounces.example'], mail(), false, { sender: 'someone@remote.example' }],
      [['Return-Path', 'is not', '*'], mail(), true, { sender: '' }],
    ]);
  });

  test('From in #Dataset (the account dataset of addresses)', async () => {
    const account = await accountOf(probeUser.address);
    await server.services.datasets.addAddress(account, 'Friends', 'Friend One <friend@ham.example>');
    await check([
      [['From', 'in', '#Friends'], mail({ From: 'Friend <FRIEND@ham.example>' }), true],
      [['From', 'in', '#Friends'], mail({ From: 'stranger@ham.example' }), false],
      [['From', 'not in', '#Friends'], mail({ From: 'stranger@ham.example' }), true],
      [['From', 'not in', '#Friends'], mail({ From: 'friend@ham.example' }), false],
      [['From', 'in', '#NoSuchDataset'], mail({ From: 'friend@ham.example' }), false],
    ]);
  });

  test('Any To or Cc, Each To or Cc', async () => {
    await check([
      [['Any To or Cc', 'is', `carol@${DOMAIN}`], mail({ To: `a@${DOMAIN}`, Cc: `Carol <carol@${DOMAIN}>` }), true],
      [['Any To or Cc', 'is', `carol@${DOMAIN}`], mail({ To: `a@${DOMAIN}`, Cc: 'x@remote.example' }), false],
      [['Any To or Cc', 'is not', `carol@${DOMAIN}`], mail({ To: `a@${DOMAIN}` }), true],
      [['Any To or Cc', 'in', `carol@${DOMAIN}, dave@${DOMAIN}`], mail({ To: `dave@${DOMAIN}` }), true],
      [['Any To or Cc', 'not in', `carol@${DOMAIN}, dave@${DOMAIN}`], mail({ To: `dave@${DOMAIN}` }), false],
      [['Each To or Cc', 'is', `*@${DOMAIN}`], mail({ To: `a@${DOMAIN}`, Cc: `b@${DOMAIN}` }), true],
      [['Each To or Cc', 'is', `*@${DOMAIN}`], mail({ To: `a@${DOMAIN}`, Cc: 'x@remote.example' }), false],
      [['Each To or Cc', 'in', `*@${DOMAIN}, *@partner.example`], mail({ To: `a@${DOMAIN}`, Cc: 'x@partner.example' }), true],
      [['Each To or Cc', 'is not', '*@remote.example'], mail({ To: `a@${DOMAIN}` }), true],
      [['Each To or Cc', 'not in', '*@remote.example, *@other.example'], mail({ To: `a@${DOMAIN}`, Cc: 'x@other.example' }), false],
      [['Each To or Cc', 'is', '*'], mail({ To: undefined }), false],
    ]);
  });

  test('Message Size greater than / less than, with K, M, G', async () => {
    const small = mail({}, 'short\n');
    const big = mail({}, 'x'.repeat(70) + '\n'.repeat(1) + ('y'.repeat(76) + '\n').repeat(40));
    assert.ok(small.length < 1024 && big.length > 2048);
    await check([
      [['Message Size', 'greater than', '2K'], big, true],
      [['Message Size', 'greater than', '2K'], small, false],
      [['Message Size', 'less than', '1K'], small, true],
      [['Message Size', 'less than', '1K'], big, false],
      [['Message Size', 'less than', '1M'], big, true],
      [['Message Size', 'greater than', '1G'], big, false],
      [['Message Size', 'greater than', String(small.length - 1)], small, true],
    ]);
  });

  test('Source: authenticated or remote, with every operator', async () => {
    await check([
      [['Source', 'is', 'authenticated'], mail(), true, { authenticated: true }],
      [['Source', 'is', 'authenticated'], mail(), false, { authenticated: false }],
      [['Source', 'is not', 'authenticated'], mail(), true, { authenticated: false }],
      [['Source', 'is not', 'authenticated'], mail(), false, { authenticated: true }],
      [['Source', 'in', 'remote, trusted'], mail(), true, { authenticated: false }],
      [['Source', 'in', 'remote, trusted'], mail(), false, { authenticated: true }],
      [['Source', 'not in', 'remote'], mail(), true, { authenticated: true }],
      [['Source', 'not in', 'remote'], mail(), false, { authenticated: false }],
    ]);
  });

  test('Human Generated: automatic messages, lists, bounces and reports are not', async () => {
    const human: Cond = ['Human Generated', '---'];
    await check([
      [human, mail(), true],
      [human, mail({ 'Auto-Submitted': 'no' }), true],
      [human, mail({ 'Auto-Submitted': 'auto-replied' }), false],
      [human, mail({ 'Auto-Submitted': 'auto-generated; owner-email="x@y"' }), false],
      [human, mail({ Precedence: 'bulk' }), false],
      [human, mail({ Precedence: 'List' }), false],
      [human, mail({ Precedence: 'junk' }), false],
      [human, mail({ Precedence: 'first-class' }), true],
      [human, mail({ 'List-Id': '<dev.lists.example>' }), false],
      [human, mail({ 'List-Unsubscribe': '<mailto:leave@lists.example>' }), false],
      [human, mail(), false, { sender: '' }],
      [human, mail(), false, { sender: 'MAILER-DAEMON@remote.example' }],
      [human, mail(), false, { sender: 'owner-dev@lists.example' }],
      [human, mail(), false, { sender: 'dev-request@lists.example' }],
      [human, mail({ 'Content-Type': 'multipart/report; report-type=delivery-status; boundary="b"' }, '--b--\n'), false],
    ]);
    // The empty operator (and parameter) is taken as ---.
    await setRule(probeUser.client, 'probe', 5, [['Human Generated', '']], [['Discard']]);
    const read = expectOk(await probeUser.client.request(new XmlElement('ruleRead', { name: 'probe' })));
    assert.equal(read.messages[0]!.element('condition')!.attrs.operator, '---');
  });

  test('all conditions of a rule must hold; a rule without conditions always applies', async () => {
    assert.equal(await probe([['Subject', 'is', 'a*'], ['From', 'is', '*@x.example']], mail({ Subject: 'abc', From: 'me@x.example' })), true);
    assert.equal(await probe([['Subject', 'is', 'a*'], ['From', 'is', '*@x.example']], mail({ Subject: 'abc', From: 'me@y.example' })), false);
    assert.equal(await probe([], mail()), true);
  });
});

describe('Mail Rules at delivery: filing actions', () => {
  test('Mark sets flags and keywords of the copies stored after it, INBOX included', async () => {
    const { address, client } = await newUser('mark');
    await setRule(client, 'r', 5, [], [['Store in', 'Before'], ['Mark', 'Seen,Flagged,$Work'], ['Store in', 'After']]);
    const outcome = await deliver(address, mail());
    assert.deepEqual(outcome.stored.map((s) => s.mailbox), ['Before', 'After', 'INBOX']);
    assert.deepEqual(await flagsOf(address, 'Before', outcome.stored[0]!.uid), { flags: Flag.Recent, keywords: [] });
    assert.deepEqual(await flagsOf(address, 'After', outcome.stored[1]!.uid), { flags: Flag.Recent | Flag.Seen | Flag.Flagged, keywords: ['$Work'] });
    assert.deepEqual(await flagsOf(address, 'INBOX', outcome.stored[2]!.uid), { flags: Flag.Recent | Flag.Seen | Flag.Flagged, keywords: ['$Work'] });
    // Negative names clear.
    await setRule(client, 'r', 5, [], [['Mark', 'Seen,Deleted'], ['Mark', 'Unseen']]);
    const second = await deliver(address, mail());
    assert.deepEqual(await flagsOf(address, 'INBOX', second.stored[0]!.uid), { flags: Flag.Recent | Flag.Deleted, keywords: [] });
  });

  test('Add Header and Tag Subject change the copies stored after them', async () => {
    const { address, client } = await newUser('edit');
    await setRule(client, 'r', 5, [], [
      ['Store in', 'Original'],
      ['Add Header', 'X-Filtered: yes\nX-Note: Grüße aus dem Filter'],
      ['Tag Subject', '[SPAM]'],
    ]);
    const outcome = await deliver(address, mail({ Subject: 'Cheap =?UTF-8?Q?pr=C3=BCfung?=' }));
    assert.deepEqual(outcome.stored.map((s) => s.mailbox), ['Original', 'INBOX']);
    const original = (await storedRaw(server, address, 'Original', outcome.stored[0]!.uid))!;
    assert.equal(headerOf(original, 'X-Filtered'), undefined);
    assert.equal(headerOf(original, 'Subject'), 'Cheap =?UTF-8?Q?pr=C3=BCfung?=');
    const inbox = (await storedRaw(server, address, 'INBOX', outcome.stored[1]!.uid))!;
    assert.equal(headerOf(inbox, 'X-Filtered'), 'yes');
    assert.match(headerOf(inbox, 'X-Note')!, /^=\?UTF-8\?Q\?Gr=C3=BC=C3=9Fe\?= aus dem Filter$/i, 'non-ASCII header text is RFC 2047 encoded');
    assert.match(inbox.toString('latin1'), /^[\x00-\x7f]*$/, 'the edited header is ASCII');
    assert.match(headerOf(inbox, 'Subject')!, /^\[SPAM\] Cheap /);
    assert.equal(inbox.toString().split('\r\n').filter((l) => /^Subject:/i.test(l)).length, 1, 'one Subject');
    assert.ok(inbox.toString().endsWith('\r\n\r\nHello.\r\n'), 'the body is untouched');
    // The subject as a mail client shows it.
    const { decodeHeaderText } = await import('../src/services/mime/index.js');
    assert.equal(decodeHeaderText(headerOf(inbox, 'Subject')!), '[SPAM] Cheap prüfung');
    // A subject already tagged is not tagged twice; a message without a Subject gets one.
    const again = await deliver(address, mail({ Subject: '[SPAM] Cheap' }));
    assert.equal(headerOf((await storedRaw(server, address, 'INBOX', again.stored[1]!.uid))!, 'Subject'), '[SPAM] Cheap');
    const none = await deliver(address, mail({ Subject: undefined }));
    assert.equal(headerOf((await storedRaw(server, address, 'INBOX', none.stored[1]!.uid))!, 'Subject'), '[SPAM]');
  });

  test('priority order, Stop Processing, priority 0 inactive; later rules see earlier edits', async () => {
    const { address, client } = await newUser('order');
    await setRule(client, 'low', 1, [], [['Add Header', 'X-Rule: low']]);
    await setRule(client, 'high', 9, [], [['Add Header', 'X-Rule: high']]);
    await setRule(client, 'middle', 5, [['Header Field', 'is', 'X-Rule: high']], [['Add Header', 'X-Rule: middle']]);
    await setRule(client, 'off', 0, [], [['Discard']]);
    let outcome = await deliver(address, mail());
    let raw = (await storedRaw(server, address, 'INBOX', outcome.stored[0]!.uid))!.toString();
    // Each Add Header goes on top: the last rule's field comes first.
    assert.deepEqual(raw.split('\r\n').filter((l) => l.startsWith('X-Rule:')), ['X-Rule: low', 'X-Rule: middle', 'X-Rule: high']);

    await setRule(client, 'middle', 5, [], [['Add Header', 'X-Rule: middle'], ['Stop Processing'], ['Add Header', 'X-Rule: after stop']]);
    outcome = await deliver(address, mail());
    raw = (await storedRaw(server, address, 'INBOX', outcome.stored[0]!.uid))!.toString();
    assert.deepEqual(raw.split('\r\n').filter((l) => l.startsWith('X-Rule:')), ['X-Rule: after stop', 'X-Rule: middle', 'X-Rule: high'], 'the rest of the rule runs, no later rule');

    expectOk(await client.request(new XmlElement('ruleUpdate', { name: 'off', priority: '10' })));
    outcome = await deliver(address, mail());
    assert.deepEqual(outcome.stored, [], 'the re-activated Discard rule runs first');
  });

  test('Reject with: no copy, the outcome carries the text; Discard alone stores nothing', async () => {
    const { address, client } = await newUser('reject');
    await setRule(client, 'bounce', 5, [['Subject', 'is', '*casino*']], [['Reject with', 'No gambling here, thanks.']]);
    await setRule(client, 'after', 1, [], [['Store in', 'Later']]);
    let outcome = await deliver(address, mail({ Subject: 'Big casino bonus' }));
    assert.deepEqual(outcome, { stored: [], rejected: 'No gambling here, thanks.' });
    outcome = await deliver(address, mail({ Subject: 'Hi' }));
    assert.equal(outcome.rejected, undefined);
    assert.deepEqual(outcome.stored.map((s) => s.mailbox), ['Later', 'INBOX']);
    await setRule(client, 'bounce', 5, [['Subject', 'is', '*casino*']], [['Reject with']]);
    outcome = await deliver(address, mail({ Subject: 'casino' }));
    assert.match(outcome.rejected!, /rejected/);
    await clearRules(address);
    await setRule(client, 'drop', 5, [], [['Discard']]);
    assert.deepEqual(await deliver(address, mail()), { stored: [] });
  });

  test('with a delivery key, a delivery run again stores nothing twice', async () => {
    const { address, client } = await newUser('key');
    await setRule(client, 'copy', 5, [], [['Store in', 'Copies'], ['Mark', 'Flagged'], ['Store in', 'Copies']]);
    const raw = mail();
    const first = await deliver(address, raw, { key: 'k1' });
    assert.deepEqual(first.stored.map((s) => s.mailbox), ['Copies', 'Copies', 'INBOX']);
    const second = await deliver(address, raw, { key: 'k1' });
    assert.deepEqual(second.stored, []);
    assert.equal((await storedUids(server, address, 'Copies')).length, 2);
    assert.equal((await storedUids(server, address, 'INBOX')).length, 1);
    await deliver(address, raw, { key: 'k2' });
    assert.equal((await storedUids(server, address, 'INBOX')).length, 2);
  });

  test('a Store in that cannot be done sends the message to INBOX instead', async () => {
    const { address, client } = await newUser('fallback');
    // An alias to another account's mailbox this account may not write to.
    const other = await newUser('other');
    const account = await accountOf(address);
    await server.services.mail.setAlias(account, 'Shared', `~${other.address}/INBOX`);
    await setRule(client, 'r', 5, [], [['Store in', 'Shared'], ['Discard']]);
    const outcome = await deliver(address, mail());
    assert.deepEqual(outcome.stored.map((s) => s.mailbox), ['INBOX']);
  });

  test('over SMTP: the Junk filter and the Source of an authenticated submission', async () => {
    const { address, client } = await newUser('smtp');
    expectOk(await client.request(ruleSet('Junk Filter', 2, [['Header Field', 'is', 'X-Junk: 5*'], ['Source', 'is not', 'authenticated']], [['Store in', 'Junk'], ['Discard']])));
    const raw = mail({ To: address, 'X-Junk': '5' });
    await smtpSend({ from: 'spammer@remote.example', to: address, raw });
    await smtpSend({ from: address, to: address, raw, auth: { user: address, password: PASSWORD } });
    await waitForMessages(address, 'Junk', 1);
    await waitForMessages(address, 'INBOX', 1);
    await sleep(200);
    assert.equal((await storedUids(server, address, 'Junk')).length, 1);
    assert.equal((await storedUids(server, address, 'INBOX')).length, 1);
  });
});

/** One message over SMTP (smtplib), optionally after AUTH PLAIN; every recipient must be accepted. */
async function smtpSend(job: { from: string; to: string; raw: Buffer; auth?: { user: string; password: string } }): Promise<void> {
  const auth = job.auth ? [{ op: 'auth', mechanism: 'PLAIN', ...job.auth } as const] : [];
  const results = await smtpSession(server.ports.smtp!, [{ op: 'ehlo' }, ...auth, sendmail(job.from, [job.to], job.raw)]);
  if (job.auth) assert.equal(results[1]!.code, 235, JSON.stringify(results[1]));
  assert.deepEqual(results.at(-1), { code: 250, refused: {} });
}

// ---------------------------------------------------------------------------------------

describe('Mail Rules at delivery: actions that send mail (through the queue to local accounts)', () => {
  test('Redirect to: Resent-* fields added, the envelope sender kept, the INBOX copy kept', async () => {
    const alice = await newUser('alice');
    const bob = await newUser('bob');
    await setRule(alice.client, 'Redirect', 5, [], [['Redirect to', `${bob.address}`]]);
    const outcome = await deliver(alice.address, mail({ Subject: 'Redirect me' }), { sender: 'origin@remote.example' });
    assert.deepEqual(outcome.stored.map((s) => s.mailbox), ['INBOX']);
    const [uid] = await waitForMessages(bob.address, 'INBOX', 1);
    const raw = (await storedRaw(server, bob.address, 'INBOX', uid!))!;
    assert.match(raw.toString(), /^Return-Path: <origin@remote\.example>\r\n/);
    assert.equal(headerOf(raw, 'Resent-From'), alice.address);
    assert.equal(headerOf(raw, 'Resent-To'), bob.address);
    assert.match(headerOf(raw, 'Resent-Date')!, /^\w{3}, \d{2} \w{3} \d{4} /);
    assert.match(headerOf(raw, 'Resent-Message-ID')!, new RegExp(`^<[^>]+@${DOMAIN.replace('.', '\\.')}>$`));
    assert.equal(headerOf(raw, 'Subject'), 'Redirect me');
    assert.match(headerOf(raw, 'Received')!, /ximssd mail rules/);
  });

  test('Mirror to + Discard (how clients write a redirect without a copy): sent unchanged', async () => {
    const alice = await newUser('alice');
    const bob = await newUser('bob');
    await setRule(alice.client, '#Redirect', 1, [], [['Mirror to', bob.address], ['Discard', '---']]);
    const original = mail({ Subject: 'Mirror me' });
    const outcome = await deliver(alice.address, original, { sender: 'origin@remote.example' });
    assert.deepEqual(outcome, { stored: [] });
    const [uid] = await waitForMessages(bob.address, 'INBOX', 1);
    const raw = (await storedRaw(server, bob.address, 'INBOX', uid!))!;
    assert.match(raw.toString(), /^Return-Path: <origin@remote\.example>\r\n/);
    assert.equal(headerOf(raw, 'Resent-From'), undefined);
    assert.ok(raw.toString().endsWith(original.toString()), 'the message itself is unchanged (a Received field is added above it)');
  });

  test('Forward to: a new message from the account with the original attached', async () => {
    const alice = await newUser('alice');
    const bob = await newUser('bob');
    await setRule(alice.client, 'Forward', 5, [], [['Forward to', bob.address]]);
    const original = mail({ Subject: 'Quarterly =?UTF-8?Q?r=C3=A9sultats?=' });
    await deliver(alice.address, original, { sender: 'origin@remote.example' });
    const [uid] = await waitForMessages(bob.address, 'INBOX', 1);
    const raw = (await storedRaw(server, bob.address, 'INBOX', uid!))!;
    const { decodeHeaderText, parseMime } = await import('../src/services/mime/index.js');
    assert.match(raw.toString(), new RegExp(`^Return-Path: <${alice.address}>\\r\\n`));
    assert.equal(decodeHeaderText(headerOf(raw, 'Subject')!), 'Fwd: Quarterly résultats');
    assert.match(headerOf(raw, 'From')!, new RegExp(`"Real alice" <${alice.address}>`));
    assert.equal(headerOf(raw, 'To'), bob.address);
    assert.match(headerOf(raw, 'Message-ID')!, new RegExp(`@${DOMAIN.replace('.', '\\.')}>$`));
    const root = parseMime(raw);
    assert.equal(`${root.type}/${root.subtype}`, 'multipart/mixed');
    const attached = root.children.find((c) => c.type === 'message' && c.subtype === 'rfc822');
    assert.ok(attached, 'the original is attached as message/rfc822');
    assert.ok(raw.subarray(attached.bodyStart, attached.end).toString().startsWith(original.toString().trimEnd()));
  });

  test('Reply with (the vacation rule as clients write it): once per sender, never to automatic mail', async () => {
    const alice = await newUser('alice');
    const bob = await newUser('bob');
    const carol = await newUser('carol');
    await setRule(alice.client, '#Vacation', 2, [['Human Generated', '---'], ['From', 'not in', '#RepliedAddresses']], [
      ['Reply with', '+Subject: Away\nFrom: me <me@x.example>\n\nI am away'],
      ["Remember 'From' in", 'RepliedAddresses'],
    ]);
    const first = mail({ From: `Bob <${bob.address}>`, To: alice.address, Subject: 'Meeting?' });
    const outcome = await deliver(alice.address, first, { sender: bob.address });
    assert.deepEqual(outcome.stored.map((s) => s.mailbox), ['INBOX'], 'the message itself is kept');
    const [uid] = await waitForMessages(bob.address, 'INBOX', 1);
    const reply = (await storedRaw(server, bob.address, 'INBOX', uid!))!;
    assert.match(reply.toString(), /^Return-Path: <>\r\n/, 'sent with the null sender');
    assert.equal(headerOf(reply, 'Subject'), 'Away');
    assert.equal(headerOf(reply, 'From'), '"me" <me@x.example>');
    assert.match(headerOf(reply, 'To')!, new RegExp(bob.address));
    assert.equal(headerOf(reply, 'Auto-Submitted'), 'auto-replied');
    assert.equal(headerOf(reply, 'In-Reply-To'), headerOf(first, 'Message-ID'));
    assert.equal(headerOf(reply, 'References'), headerOf(first, 'Message-ID'));
    assert.ok(reply.toString().endsWith('\r\n\r\nI am away'), reply.toString());
    // Bob is remembered in the dataset.
    assert.equal(await server.services.datasets.hasAddress(await accountOf(alice.address), 'RepliedAddresses', bob.address), true);

    // A second message from bob: no reply; one from carol: a reply; an automatic one: none.
    await deliver(alice.address, mail({ From: bob.address, To: alice.address, Subject: 'Again' }), { sender: bob.address });
    await deliver(alice.address, mail({ From: carol.address, To: alice.address, Precedence: 'bulk' }), { sender: carol.address });
    await deliver(alice.address, mail({ From: carol.address, To: alice.address, 'Auto-Submitted': 'auto-replied' }), { sender: '' });
    await deliver(alice.address, mail({ From: carol.address, To: alice.address, Subject: 'Hi' }), { sender: carol.address });
    await waitForMessages(carol.address, 'INBOX', 1);
    await sleep(300);
    assert.equal((await storedUids(server, carol.address, 'INBOX')).length, 1);
    assert.equal((await storedUids(server, bob.address, 'INBOX')).length, 1);
    assert.equal((await storedUids(server, alice.address, 'INBOX')).length, 5);
  });

  test('Reply with remembers each sender for 7 days in the store (also without a dataset condition)', async () => {
    const alice = await newUser('alice');
    const bob = await newUser('bob');
    await setRule(alice.client, 'Auto', 5, [], [['Reply with', 'Thanks, got it.']]);
    for (let i = 0; i < 3; i++) await deliver(alice.address, mail({ From: bob.address, Subject: `Note ${i}` }), { sender: bob.address });
    const [uid] = await waitForMessages(bob.address, 'INBOX', 1);
    const reply = (await storedRaw(server, bob.address, 'INBOX', uid!))!;
    assert.equal(headerOf(reply, 'Subject'), 'Re: Note 0');
    assert.match(headerOf(reply, 'From')!, new RegExp(`"Real alice" <${alice.address}>`));
    await sleep(300);
    assert.equal((await storedUids(server, bob.address, 'INBOX')).length, 1);
    // Removing the rule forgets its log: a new rule of that name replies again.
    expectOk(await alice.client.request(new XmlElement('ruleRemove', { name: 'Auto' })));
    await setRule(alice.client, 'Auto', 5, [], [['Reply with', 'Thanks again.']]);
    await deliver(alice.address, mail({ From: bob.address, Subject: 'Note 3' }), { sender: bob.address });
    await waitForMessages(bob.address, 'INBOX', 2);
  });

  test('two accounts mirroring to each other: the loop ends (each mirrors the message once)', async () => {
    const alice = await newUser('alice');
    const bob = await newUser('bob');
    await setRule(alice.client, 'm', 5, [], [['Mirror to', bob.address]]);
    await setRule(bob.client, 'm', 5, [], [['Mirror to', alice.address]]);
    await deliver(alice.address, mail({ Subject: 'ping' }));
    let last = -1;
    for (let i = 0; i < 100; i++) {
      await sleep(100);
      const total = (await storedUids(server, alice.address, 'INBOX')).length + (await storedUids(server, bob.address, 'INBOX')).length;
      if (total === last) break;
      last = total;
    }
    // alice's, bob's, and alice's again from bob (her rules mirrored it once already).
    assert.equal(last, 3, `copies: ${last}`);
  });
});

describe('Mail Rules at delivery: the messages rules send, as submitted', () => {
  test('Reply with: null sender, key, ^S and ^I, Reply to All with Cc', async () => {
    const alice = await newUser('alice');
    const { delivery, recorder } = recordingDelivery();
    await setRule(alice.client, 'r', 5, [], [
      ['Reply with', '+Subject: Re: ^S (auto)\nX-Ref: ^I\n\nAbout "^S" (^I): I am away until Monday.\nÀ bientôt'],
      ['Reply to All with', 'Noted.'],
    ]);
    const raw = mail({ From: 'Dave <dave@remote.example>', To: `${alice.address}, Eve <eve@remote.example>`, Cc: 'frank@remote.example', Subject: 'Plans', 'Message-ID': '<plans-1@remote.example>', References: '<older@remote.example>' });
    await deliver(alice.address, raw, { sender: 'dave@remote.example', key: 'rec-1' }, delivery);
    assert.equal(recorder.sent.length, 2);
    const [reply, replyAll] = recorder.sent as [OutgoingMessage, OutgoingMessage];
    assert.equal(reply.sender, '');
    assert.deepEqual(reply.recipients, ['dave@remote.example']);
    assert.equal(reply.source, 'authenticated');
    assert.equal(reply.key, 'rec-1/send/1');
    assert.equal(headerOf(reply.raw, 'Subject'), 'Re: Plans (auto)');
    assert.equal(headerOf(reply.raw, 'X-Ref'), '<plans-1@remote.example>');
    assert.equal(headerOf(reply.raw, 'In-Reply-To'), '<plans-1@remote.example>');
    assert.equal(headerOf(reply.raw, 'References'), '<older@remote.example> <plans-1@remote.example>');
    assert.equal(headerOf(reply.raw, 'Auto-Submitted'), 'auto-replied');
    assert.match(headerOf(reply.raw, 'Content-Type')!, /text\/plain; charset="?utf-8"?/);
    assert.match(headerOf(reply.raw, 'Date')!, /^\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}$/);
    assert.match(headerOf(reply.raw, 'Message-ID')!, new RegExp(`@${DOMAIN.replace('.', '\\.')}>$`));
    assert.match(reply.raw.toString('utf8'), /About "Plans" \(<plans-1@remote\.example>\): I am away until Monday\.\r\nÀ bientôt/);
    assert.deepEqual(replyAll.recipients, ['dave@remote.example', 'eve@remote.example', 'frank@remote.example']);
    assert.equal(replyAll.key, 'rec-1/send/2');
    assert.equal(headerOf(replyAll.raw, 'Subject'), 'Re: Plans');
    assert.match(headerOf(replyAll.raw, 'Cc')!, /"Eve" <eve@remote\.example>, frank@remote\.example|Eve <eve@remote\.example>, frank@remote\.example/);
    // Never to automatic mail, never to the null sender, never to the account itself.
    recorder.sent.length = 0;
    await deliver(alice.address, mail({ From: 'x@remote.example', 'List-Id': '<l.example>' }), { sender: 'x@remote.example' }, delivery);
    await deliver(alice.address, mail({ From: 'y@remote.example' }), { sender: '' }, delivery);
    await deliver(alice.address, mail({ From: alice.address }), { sender: alice.address }, delivery);
    assert.deepEqual(recorder.sent, []);
  });

  test('a delivery run again with its key submits under the same keys (the queue ignores repeats); a new delivery does not reply again', async () => {
    const alice = await newUser('alice');
    const { delivery, recorder } = recordingDelivery();
    await setRule(alice.client, 'Both', 5, [], [['Redirect to', 'x@remote.example'], ['Reply with', 'Got it']]);
    const raw = mail({ From: 'bob@remote.example', Subject: 'Once' });
    await deliver(alice.address, raw, { sender: 'bob@remote.example', key: 'again-1' }, delivery);
    await deliver(alice.address, raw, { sender: 'bob@remote.example', key: 'again-1' }, delivery);
    assert.deepEqual(recorder.sent.map((m) => m.key), ['again-1/send/1', 'again-1/send/2', 'again-1/send/1', 'again-1/send/2']);
    assert.deepEqual(recorder.sent[0]!.raw.subarray(recorder.sent[0]!.raw.indexOf('\r\n\r\n')), recorder.sent[2]!.raw.subarray(recorder.sent[2]!.raw.indexOf('\r\n\r\n')));
    assert.equal((await storedUids(server, alice.address, 'INBOX')).length, 1, 'stored once');
    // Another delivery (another key) of a message from bob: redirected again, not replied to.
    recorder.sent.length = 0;
    await deliver(alice.address, mail({ From: 'bob@remote.example' }), { sender: 'bob@remote.example', key: 'again-2' }, delivery);
    assert.deepEqual(recorder.sent.map((m) => m.key), ['again-2/send/1']);
  });

  test('Redirect, Mirror and Forward keep the Source; keys count in rule order; Store in before stays stored when sending fails', async () => {
    const alice = await newUser('alice');
    const { delivery, recorder } = recordingDelivery();
    await setRule(alice.client, 'first', 9, [], [['Mark', 'Seen'], ['Redirect to', 'a@remote.example, B <b@remote.example>']]);
    await setRule(alice.client, 'second', 5, [], [['Mirror to', 'bob'], ['Forward to', 'c@remote.example']]);
    await deliver(alice.address, mail(), { sender: 'origin@remote.example', authenticated: true, key: 'rec-2' }, delivery);
    assert.deepEqual(
      recorder.sent.map((m) => [m.key, m.sender, m.recipients, m.source]),
      [
        ['rec-2/send/2', 'origin@remote.example', ['a@remote.example', 'b@remote.example'], 'authenticated'],
        ['rec-2/send/3', 'origin@remote.example', [`bob@${DOMAIN}`], 'authenticated'],
        ['rec-2/send/4', alice.address, ['c@remote.example'], 'authenticated'],
      ],
    );
    recorder.sent.length = 0;
    await deliver(alice.address, mail(), { sender: 'origin@remote.example' }, delivery);
    assert.ok(recorder.sent.every((m) => m.source === 'remote' && m.key === undefined));

    // A submitter that fails: with a key the delivery fails (to be retried); without one, the
    // stored message stands (logged); a discarded message is never lost.
    const failing = new LocalDelivery({ ...server.services.delivery.deps, submitter: { submit: async () => Promise.reject(new Error('queue down')) } });
    await clearRules(alice.address);
    await setRule(alice.client, 'm', 5, [], [['Mirror to', 'x@remote.example']]);
    await assert.rejects(deliver(alice.address, mail(), { key: 'rec-3' }, failing), /could not be queued/);
    const kept = await deliver(alice.address, mail(), {}, failing);
    assert.deepEqual(kept.stored.map((s) => s.mailbox), ['INBOX']);
    await setRule(alice.client, 'm', 5, [], [['Mirror to', 'x@remote.example'], ['Discard']]);
    await assert.rejects(deliver(alice.address, mail(), {}, failing), /could not be queued/);
  });
});
