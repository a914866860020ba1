/**
 * Account balances over XIMSS on the wire (spec section "Billing": `balance` with its op
 * dictionary, answered by `balanceData`): reading one's own balance; credits and charges by the
 * domain's administrator (postmaster, or CanManageBalances), never by the account itself;
 * insufficient funds; references (idempotency keys); history newest first with GMT or local
 * times; several balances (readAll, list); another account's balance with the `a` right only;
 * bad input answered with clear errors.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { XmlElement } from '../src/xml/element.js';
import { formatGmt } from '../src/xml/time.js';
import { expectError, fails, ok, startTestServer, XimssClient, type TestServer } from './helpers.js';

let server: TestServer;
let domains = 0;

before(async () => {
  server = await startTestServer({ billing: { maxAmount: 100_000, maxBalance: 1_000_000, historyLimit: 50 } });
});
after(() => server.stop());

/** A domain of its own with its postmaster and a user, both logged in. */
async function domain(): Promise<{ name: string; admin: XimssClient; user: XimssClient; userAddress: string }> {
  const name = `bill${++domains}.test`;
  await server.addAccount(`postmaster@${name}`, 'secret');
  const userAddress = await server.newAccount('payer', { domain: name });
  return { name, admin: (await server.login(`postmaster@${name}`, 'secret')).client, user: (await server.login(userAddress, 'secret')).client, userAddress };
}

/** A `balance` request: the op dictionary as its body. */
function balance(params: Record<string, string>, attrs: Record<string, string> = {}): XmlElement {
  const request = new XmlElement('balance', attrs);
  for (const [key, value] of Object.entries(params)) request.add('subKey', { key }, value);
  return request;
}

type Value = string | Value[] | { [key: string]: Value };

/** The dictionary a balanceData carries (strings, arrays and dictionaries). */
function valueOf(element: XmlElement): Value {
  const children = element.elements();
  if (children.length === 0) return element.text();
  if (children[0]!.name === 'subValue') return children.map(valueOf);
  const dict: { [key: string]: Value } = {};
  for (const child of children) {
    assert.equal(child.name, 'subKey', element.toString());
    dict[child.attrs.key!] = valueOf(child);
  }
  return dict;
}

/** Sends a balance request that must succeed with exactly one balanceData; its attributes and dictionary. */
async function data(client: XimssClient, request: XmlElement): Promise<{ attrs: Record<string, string>; value: Value }> {
  const reply = await ok(client, request);
  assert.equal(reply.messages.length, 1, reply.messages.join(''));
  const message = reply.messages[0]!;
  assert.equal(message.name, 'balanceData');
  const { id, ...attrs } = message.attrs;
  assert.equal(id, reply.response.attrs.id, 'the data message carries the request id');
  return { attrs, value: valueOf(message) };
}

async function amountOf(client: XimssClient, attrs: Record<string, string> = {}, balanceName?: string): Promise<string> {
  const { value } = await data(client, balance({ op: 'read', ...(balanceName ? { balance: balanceName } : {}) }, attrs));
  return (value as Record<string, string>).amount!;
}

describe('balance', () => {
  test('an account reads its own balance: 0 in the default currency, no accountName on balanceData', async () => {
    const { user } = await domain();
    const { attrs, value } = await data(user, balance({ op: 'read' }));
    assert.deepEqual(attrs, {});
    assert.deepEqual(value, { balance: 'USD', amount: '0' });
  });

  test('the postmaster credits and charges an account; the account sees it; it cannot change its own balance', async () => {
    const { admin, user, userAddress } = await domain();
    const credited = await data(admin, balance({ op: 'credit', amount: '1500', description: 'top-up' }, { accountName: userAddress }));
    assert.deepEqual(credited.attrs, { accountName: userAddress }, 'balanceData names the account the request named');
    assert.deepEqual({ ...(credited.value as Record<string, string>), id: 'x' }, { balance: 'USD', amount: '1500', id: 'x', repeated: 'no' });
    assert.equal(await amountOf(user), '1500');

    const charged = await data(admin, balance({ op: 'charge', amount: '400' }, { accountName: userAddress }));
    assert.equal((charged.value as Record<string, string>).amount, '1100');
    assert.equal(await amountOf(user), '1100');

    await fails(user, balance({ op: 'credit', amount: '100' }), 'access denied: an account cannot change its own balance');
    await fails(user, balance({ op: 'credit', amount: '100' }, { accountName: userAddress }), 'access denied: an account cannot change its own balance');
    await fails(admin, balance({ op: 'credit', amount: '100' }), 'access denied: an account cannot change its own balance', 'not even the postmaster');
    await fails(user, balance({ op: 'charge', amount: '100' }), /^access denied/);
    assert.equal(await amountOf(user), '1100', 'refused changes change nothing');
  });

  test('a charge beyond the balance: "insufficient funds", nothing taken; exactly the balance is fine', async () => {
    const { admin, user, userAddress } = await domain();
    await data(admin, balance({ op: 'credit', amount: '300' }, { accountName: userAddress }));
    await fails(admin, balance({ op: 'charge', amount: '301' }, { accountName: userAddress }), 'insufficient funds');
    assert.equal(await amountOf(user), '300');
    await data(admin, balance({ op: 'charge', amount: '300' }, { accountName: userAddress }));
    assert.equal(await amountOf(user), '0');
    await fails(admin, balance({ op: 'charge', amount: '1' }, { accountName: userAddress }), 'insufficient funds');
  });

  test('a reference makes a credit or charge idempotent: a repeat changes nothing and says so; reused for another amount it is refused', async () => {
    const { admin, user, userAddress } = await domain();
    const first = await data(admin, balance({ op: 'credit', amount: '700', reference: 'pay-1' }, { accountName: userAddress }));
    const again = await data(admin, balance({ op: 'credit', amount: '700', reference: 'pay-1' }, { accountName: userAddress }));
    const f = first.value as Record<string, string>;
    const a = again.value as Record<string, string>;
    assert.equal(a.repeated, 'yes');
    assert.equal(a.id, f.id, 'the entry first posted');
    assert.equal(await amountOf(user), '700');
    await fails(admin, balance({ op: 'credit', amount: '701', reference: 'pay-1' }, { accountName: userAddress }), 'this reference was already used for another operation');
    await data(admin, balance({ op: 'charge', amount: '700', reference: 'use-1' }, { accountName: userAddress }));
    // The repeated charge is not refused for funds: it is the same charge.
    assert.equal(((await data(admin, balance({ op: 'charge', amount: '700', reference: 'use-1' }, { accountName: userAddress }))).value as Record<string, string>).repeated, 'yes');
    assert.equal(await amountOf(user), '0');
  });

  test('history: newest first, with descriptions, references and who posted; limit and before page it; localTime="no" gives GMT', async () => {
    const { name, admin, user, userAddress } = await domain();
    for (let i = 1; i <= 4; i++) await data(admin, balance({ op: 'credit', amount: String(i * 100), description: `credit ${i}`, reference: `h-${i}` }, { accountName: userAddress }));
    await data(admin, balance({ op: 'charge', amount: '50', description: 'a call' }, { accountName: userAddress }));
    const all = (await data(user, balance({ op: 'history' }))).value as { records: Record<string, string>[] };
    assert.deepEqual(
      all.records.map((r) => [r.amount, r.description, r.reference, r.actor, r.balance]),
      [
        ['-50', 'a call', undefined, `postmaster@${name}`, 'USD'],
        ['400', 'credit 4', 'h-4', `postmaster@${name}`, 'USD'],
        ['300', 'credit 3', 'h-3', `postmaster@${name}`, 'USD'],
        ['200', 'credit 2', 'h-2', `postmaster@${name}`, 'USD'],
        ['100', 'credit 1', 'h-1', `postmaster@${name}`, 'USD'],
      ],
    );
    const page = (await data(user, balance({ op: 'history', limit: '2' }))).value as { records: Record<string, string>[] };
    assert.deepEqual(page.records.map((r) => r.amount), ['-50', '400']);
    const next = (await data(user, balance({ op: 'history', limit: '2', before: page.records[1]!.id! }))).value as { records: Record<string, string>[] };
    assert.deepEqual(next.records.map((r) => r.amount), ['300', '200']);

    // Times: GMT with localTime="no", as the store has them.
    const [stored] = await server.services.store.billing.history((await server.services.accounts.find(userAddress))!.id, { limit: 1 });
    const gmt = (await data(user, balance({ op: 'history', limit: '1' }, { localTime: 'no' }))).value as { records: Record<string, string>[] };
    assert.equal(gmt.records[0]!.time, formatGmt(new Date(stored!.time)));
    await ok(user, '<prefsStore><TimeZone>Asia/Tokyo</TimeZone></prefsStore>');
    const local = (await data(user, balance({ op: 'history', limit: '1' }))).value as { records: Record<string, string>[] };
    assert.equal(local.records[0]!.time, formatGmt(new Date(stored!.time + 9 * 3_600_000)), 'the user\'s zone (Tokyo: GMT+9)');
  });

  test('several balances: by name; readAll and list name them all; history of one or of all ("*")', async () => {
    const { admin, user, userAddress } = await domain();
    await data(admin, balance({ op: 'credit', amount: '10' }, { accountName: userAddress }));
    await data(admin, balance({ op: 'credit', amount: '60', balance: 'minutes' }, { accountName: userAddress }));
    await data(admin, balance({ op: 'credit', amount: '5', balance: 'EUR' }, { accountName: userAddress }));
    assert.equal(await amountOf(user, {}, 'minutes'), '60');
    assert.equal(await amountOf(user, {}, 'GBP'), '0', 'a balance without entries is 0');
    assert.deepEqual((await data(user, balance({ op: 'readAll' }))).value, { EUR: '5', USD: '10', minutes: '60' });
    assert.deepEqual((await data(user, balance({ op: 'list' }))).value, { balance: ['EUR', 'USD', 'minutes'] });
    const eur = (await data(user, balance({ op: 'history', balance: 'EUR' }))).value as { records: Record<string, string>[] };
    assert.deepEqual(eur.records.map((r) => r.amount), ['5']);
    const every = (await data(user, balance({ op: 'history', balance: '*' }))).value as { records: Record<string, string>[] };
    assert.equal(every.records.length, 3);
    await fails(admin, balance({ op: 'charge', amount: '6', balance: 'EUR' }, { accountName: userAddress }), 'insufficient funds', 'each balance has its own funds');
  });

  test("another account's balance: refused without the `a` Account Access Right, readable with it; changes need CanManageBalances", async () => {
    const { name, user, userAddress } = await domain();
    const peerAddress = await server.newAccount('peer', { domain: name });
    const peer = (await server.login(peerAddress, 'secret')).client;
    await fails(peer, balance({ op: 'read' }, { accountName: userAddress }), 'access denied');
    await fails(peer, balance({ op: 'history' }, { accountName: userAddress }), 'access denied');
    await ok(user, `<accountACLUpdate><aclElem pattern="${peerAddress}" mode="add">a</aclElem></accountACLUpdate>`);
    assert.equal(await amountOf(peer, { accountName: userAddress }), '0');
    await fails(peer, balance({ op: 'credit', amount: '5' }, { accountName: userAddress }), /^access denied/, 'the `a` right does not let it change the balance');

    // A Domain Administrator with CanManageBalances may; an administrator of another domain may not.
    await server.services.accounts.setSettings((await server.services.accounts.find(peerAddress))!, { DomainAdminRights: 'CanManageBalances' });
    await data(peer, balance({ op: 'credit', amount: '5' }, { accountName: userAddress }));
    assert.equal(await amountOf(user), '5');
    const other = await domain();
    await fails(other.admin, balance({ op: 'credit', amount: '5' }, { accountName: userAddress }), /^access denied/);
    await fails(other.admin, balance({ op: 'read' }, { accountName: userAddress }), 'access denied');
    await fails(user, balance({ op: 'read' }, { accountName: `nobody@${name}` }), 'unknown account');
  });

  test('bad requests get clear errors and change nothing', async () => {
    const { admin, user, userAddress } = await domain();
    const to = { accountName: userAddress };
    const cases: [XmlElement, string | RegExp][] = [
      [new XmlElement('balance'), 'the billing operation dictionary (with its op element) is missing'],
      [balance({ balance: 'USD' }), 'the op element is missing'],
      [balance({ op: 'steal' }), 'unknown billing operation "steal" (known: read, readAll, list, history, credit, charge)'],
      [balance({ op: 'reserve', amount: '5' }), 'billing operation "reserve" is not supported (reservations are not kept)'],
      [balance({ op: 'read', colour: 'red' }), 'unknown parameter "colour" for read (known: balance)'],
      [balance({ op: 'credit' }, to), 'the amount parameter is missing'],
      [balance({ op: 'credit', amount: '0' }, to), 'bad amount: it must be greater than 0'],
      [balance({ op: 'credit', amount: '-5' }, to), /^bad amount "-5"/],
      [balance({ op: 'credit', amount: '1.50' }, to), /^bad amount "1.50": a positive whole number of minor units/],
      [balance({ op: 'credit', amount: 'ten' }, to), /^bad amount "ten"/],
      [balance({ op: 'credit', amount: '100001' }, to), 'bad amount: at most 100000 in one operation'],
      [balance({ op: 'credit', amount: '99999999999999999999' }, to), /^bad amount/],
      [balance({ op: 'credit', amount: '5', balance: 'U S D' }, to), /^bad balance name "U S D"/],
      [balance({ op: 'credit', amount: '5', description: 'x'.repeat(257) }, to), 'the description is too long (at most 256 characters)'],
      [balance({ op: 'credit', amount: '5', reference: 'r'.repeat(129) }, to), /^bad reference/],
      [balance({ op: 'history', limit: '0' }), 'bad limit: 1 to 50'],
      [balance({ op: 'history', limit: '51' }), 'bad limit: 1 to 50'],
      [balance({ op: 'history', before: 'yesterday' }), /^bad before "yesterday"/],
    ];
    for (const [request, expected] of cases) expectError(await admin.request(request), expected, request.toString());
    // A parameter that is not a string; a body that is no dictionary.
    await fails(admin, '<balance><subKey key="op"><subValue>read</subValue></subKey></balance>', 'op must be a string');
    await fails(admin, '<balance><subKey key="op">read</subKey><subKey key="balance"><subKey key="a">b</subKey></subKey></balance>', 'parameter balance must be a string');
    await fails(admin, '<balance><subValue>read</subValue></balance>', 'the billing operation dictionary (with its op element) is missing');
    await fails(admin, '<balance><subKey>read</subKey></balance>', /^bad billing request/);
    // Crediting past maxBalance (1000000 here).
    for (let i = 0; i < 10; i++) await data(admin, balance({ op: 'credit', amount: '100000' }, to));
    await fails(admin, balance({ op: 'credit', amount: '1' }, to), 'the balance would exceed its limit (1000000)');
    assert.equal(await amountOf(user), '1000000');
    assert.equal(((await data(user, balance({ op: 'history' }))).value as { records: unknown[] }).records.length, 10);
  });

  test('before login, balance is refused', async () => {
    const client = await XimssClient.connect(server.ports.ximss);
    expectError(await client.request(balance({ op: 'read' })));
    client.close();
  });
});
