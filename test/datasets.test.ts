/**
 * Account datasets over XIMSS on the wire (spec section "Datasets"): datasetCreate/Remove,
 * datasetAddAddress, datasetList with its filters, datasetListSubsets, datasetSet,
 * datasetDelete; `~account` names and their access rule; bad input; the limits; the
 * service calls other code uses (addAddress, hasAddress); persistence across a restart.
 */
import assert from 'node:assert/strict';
import { silentLogger } from '../src/log.js';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { startServer, type RunningServer } from '../src/server.js';
import { DatasetService } from '../src/services/datasets.js';
import { ServiceError } from '../src/services/errors.js';
import { openStore } from '../src/store/open.js';
import type { AccountRecord } from '../src/store/store.js';
import { XmlElement } from '../src/xml/element.js';
import { fails, loggedInClient, ok, startTestServer, type TestServer, type XimssClient } from './helpers.js';

let server: TestServer;
let counter = 0;

before(async () => {
  server = await startTestServer();
});
after(() => server.stop());

interface User {
  address: string;
  client: XimssClient;
  account(): Promise<AccountRecord>;
}

async function newUser(): Promise<User> {
  return login(await server.newAccount('ds'));
}

/** Creates the account (when missing) and logs in. */
async function login(address: string): Promise<User> {
  if (!(await server.services.accounts.find(address))) await server.addAccount(address, 'secret');
  const { client } = await server.login(address, 'secret');
  return { address, client, account: async () => (await server.services.accounts.find(address))! };
}

function req(name: string, attrs: Record<string, string | undefined> = {}, ...body: (XmlElement | string)[]): XmlElement {
  return new XmlElement(name, attrs, body);
}

/** datasetList as [name, {attr: value}] pairs, checking the message shape on the way. */
async function list(client: XimssClient, dataset: string, filter: Record<string, string> = {}): Promise<[string, Record<string, string>][]> {
  const reply = await ok(client, req('datasetList', { dataset, ...filter }));
  return reply.messages.map((m) => {
    assert.equal(m.name, 'datasetData', m.toString());
    assert.ok(m.attrs.name, `datasetData has a name: ${m.toString()}`);
    const attrs: Record<string, string> = {};
    for (const child of m.children) {
      assert.ok(typeof child !== 'string', `no loose text in datasetData: ${m.toString()}`);
      assert.equal(child.elements().length, 0, `attribute values are text: ${m.toString()}`);
      attrs[child.name] = child.text();
    }
    return [m.attrs.name!, attrs];
  });
}

async function subsets(client: XimssClient, dataset: string): Promise<string[]> {
  const reply = await ok(client, req('datasetListSubsets', { dataset }));
  return reply.messages.map((m) => {
    assert.equal(m.name, 'datasetSubset', m.toString());
    assert.equal(m.children.length, 0, 'datasetSubset has no body');
    return m.attrs.dataset!;
  });
}

function setRequest(dataset: string, name: string | undefined, attrs: Record<string, string | null>): XmlElement {
  const data = new XmlElement('datasetData', { name });
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null) data.add(key).add('null');
    else data.add(key, undefined, value);
  }
  return req('datasetSet', { dataset }, data);
}

describe('datasets: create, remove, subsets', () => {
  test('datasets nest by "/"; listSubsets lists direct children, sorted; remove takes the subtree', async () => {
    const { client } = await newUser();
    assert.deepEqual(await subsets(client, ''), [], 'a new account has no datasets');
    for (const name of ['Contacts', 'Contacts/Work', 'Contacts/Home', 'Contacts/Work/Team', 'Archive']) {
      await ok(client, req('datasetCreate', { dataset: name }));
    }
    await fails(client, req('datasetCreate', { dataset: 'Contacts' }), 'dataset already exists');
    await fails(client, req('datasetCreate', { dataset: 'Contacts/Work' }), 'dataset already exists');
    assert.deepEqual(await subsets(client, ''), ['Archive', 'Contacts']);
    assert.deepEqual(await subsets(client, 'Contacts'), ['Contacts/Home', 'Contacts/Work']);
    assert.deepEqual(await subsets(client, 'Contacts/Work'), ['Contacts/Work/Team']);
    assert.deepEqual(await subsets(client, 'Contacts/Work/Team'), []);
    // A name that only shares a prefix is no child.
    await ok(client, req('datasetCreate', { dataset: 'Contacts2' }));
    await ok(client, req('datasetCreate', { dataset: 'Contacts-x' }));
    assert.deepEqual(await subsets(client, 'Contacts'), ['Contacts/Home', 'Contacts/Work']);

    // Missing parents are created implicitly.
    await ok(client, req('datasetCreate', { dataset: 'A/B/C' }));
    assert.deepEqual(await subsets(client, ''), ['A', 'Archive', 'Contacts', 'Contacts-x', 'Contacts2']);
    assert.deepEqual(await subsets(client, 'A'), ['A/B']);
    assert.deepEqual(await list(client, 'A/B'), []);

    await ok(client, req('datasetAddAddress', { dataset: 'Contacts/Work/Team' }, 'team@example.org'));
    await ok(client, req('datasetRemove', { dataset: 'Contacts/Work' }));
    assert.deepEqual(await subsets(client, 'Contacts'), ['Contacts/Home']);
    await fails(client, req('datasetList', { dataset: 'Contacts/Work/Team' }), 'dataset not found');
    await fails(client, req('datasetListSubsets', { dataset: 'Contacts/Work' }), 'dataset not found');
    // Re-created, it is empty: the entries went with it.
    await ok(client, req('datasetCreate', { dataset: 'Contacts/Work/Team' }));
    assert.deepEqual(await list(client, 'Contacts/Work/Team'), []);

    await fails(client, req('datasetRemove', { dataset: 'Nope' }), 'dataset not found');
    await ok(client, req('datasetRemove', { dataset: 'Nope', ifExists: 'yes' }));
    await fails(client, req('datasetRemove', { dataset: 'Nope', ifExists: 'no' }), 'dataset not found');
    await ok(client, req('datasetRemove', { dataset: 'Contacts-x', ifExists: 'yes' }));
    assert.deepEqual(await subsets(client, ''), ['A', 'Archive', 'Contacts', 'Contacts2']);
  });

  test('operations on a missing dataset answer "dataset not found"', async () => {
    const { client } = await newUser();
    await fails(client, req('datasetList', { dataset: 'Missing' }), 'dataset not found');
    await fails(client, req('datasetListSubsets', { dataset: 'Missing' }), 'dataset not found');
    await fails(client, setRequest('Missing', 'x', { a: '1' }), 'dataset not found');
    await fails(client, req('datasetDelete', { dataset: 'Missing', name: 'x' }), 'dataset not found');
    assert.deepEqual(await subsets(client, ''), [], 'nothing was created on the way');
  });

  test('dataset names are checked; bad requests never end the session', async () => {
    const { client } = await newUser();
    const badNames = ['A//B', '/A', 'A/', 'A/ /B', ' A', 'A ', 'x\ty', 'x\ny', '~', '~/A', 'a'.repeat(256)];
    for (const dataset of badNames) {
      await fails(client, req('datasetCreate', { dataset }), /^invalid dataset name/);
      await fails(client, req('datasetList', { dataset }), /invalid dataset name|unknown account/);
    }
    await ok(client, req('datasetCreate', { dataset: 'a'.repeat(255) }));
    await ok(client, req('datasetCreate', { dataset: 'Ünïcødé/日本語 名前/😀' }));
    assert.deepEqual(await subsets(client, 'Ünïcødé/日本語 名前'), ['Ünïcødé/日本語 名前/😀']);

    await fails(client, req('datasetCreate'), 'the dataset attribute is missing');
    await fails(client, req('datasetCreate', { dataset: '' }), 'the dataset attribute is missing');
    await fails(client, req('datasetRemove'), 'the dataset attribute is missing');
    await fails(client, req('datasetList'), 'the dataset attribute is missing');
    await fails(client, req('datasetListSubsets'), 'the dataset attribute is missing');
    await fails(client, req('datasetAddAddress', {}, 'a@b.c'), 'the dataset attribute is missing');
    await fails(client, req('datasetAddAddress', { dataset: 'X' }), 'the E-mail address is missing');
    await fails(client, req('datasetDelete', { dataset: 'X' }), 'the name attribute is missing');
    await fails(client, req('datasetSet', { dataset: 'X' }), 'the datasetData element is missing');
    await fails(client, req('datasetSet'), 'the dataset attribute is missing');
    // Raw XML a client might get wrong.
    await fails(client, '<datasetList id="r1" dataset="X" mode="beg"/>', /mode attribute needs the filterField/);
    await fails(client, '<datasetSet id="r2" dataset="X"><datasetData name="a"><x><y>1</y></x></datasetData></datasetSet>', /must be text/);

    const noop = await ok(client, req('noop'));
    assert.equal(noop.response.attrs.errorText, undefined);
    assert.equal(client.closed, false, 'the session survived');
  });
});

describe('datasets: addresses', () => {
  test('datasetAddAddress creates the dataset, stores email and realName, and replaces the same address in any case', async () => {
    const { client } = await newUser();
    await ok(client, req('datasetAddAddress', { dataset: 'Friends', realName: 'Alice A' }, 'Alice@Example.COM'));
    assert.deepEqual(await subsets(client, ''), ['Friends'], 'the dataset was created');
    assert.deepEqual(await list(client, 'Friends'), [['alice@example.com', { email: 'Alice@Example.COM', realName: 'Alice A' }]]);

    // The same address in another case: still one entry, refreshed (no realName now).
    await ok(client, req('datasetAddAddress', { dataset: 'Friends' }, '  alice@EXAMPLE.com '));
    assert.deepEqual(await list(client, 'Friends'), [['alice@example.com', { email: 'alice@EXAMPLE.com' }]]);

    // `Name <address>` gives the real name; the realName attribute wins over it.
    await ok(client, req('datasetAddAddress', { dataset: 'Friends' }, '"Bob B." <bob@example.org>'));
    await ok(client, req('datasetAddAddress', { dataset: 'Friends', realName: 'Carol' }, 'Caroline <carol@example.org>'));
    // Escaping on the wire: markup in a real name arrives as text.
    await ok(client, req('datasetAddAddress', { dataset: 'Friends', realName: 'Tom & "Jerry" <x>' }, 'tom@example.org'));
    assert.deepEqual(await list(client, 'Friends'), [
      ['alice@example.com', { email: 'alice@EXAMPLE.com' }],
      ['bob@example.org', { email: 'bob@example.org', realName: 'Bob B.' }],
      ['carol@example.org', { email: 'carol@example.org', realName: 'Carol' }],
      ['tom@example.org', { email: 'tom@example.org', realName: 'Tom & "Jerry" <x>' }],
    ]);
    const raw = client.raw.find((text) => text.includes('tom@example.org') && text.startsWith('<datasetData'));
    assert.ok(raw?.includes('<realName>Tom &amp; "Jerry" &lt;x&gt;</realName>'), raw);
  });

  test('a syntactically bad address is refused and stores nothing', async () => {
    const { client } = await newUser();
    for (const bad of ['not-an-address', 'a@', '@b.c', 'a b@c.d', 'a@b..c', 'a@-b.c', 'a@@b.c', '<>', 'x'.repeat(65) + '@b.c', `a@${'b'.repeat(64)}.c`, `a@${('b'.repeat(60) + '.').repeat(5)}c`]) {
      await fails(client, req('datasetAddAddress', { dataset: 'Bad' }, bad), /^invalid E-mail address/);
    }
    assert.deepEqual(await subsets(client, ''), [], 'no dataset was created for a refused address');
    await ok(client, req('datasetAddAddress', { dataset: 'Good' }, '"quoted local"@example.org'));
    await ok(client, req('datasetAddAddress', { dataset: 'Good' }, 'user+tag@[192.0.2.1]'));
    assert.deepEqual((await list(client, 'Good')).map(([name]) => name), ['"quoted local"@example.org', 'user+tag@[192.0.2.1]']);
  });

  test('addAddress and hasAddress, as Mail Rules and messageSubmit call them', async () => {
    const user = await newUser();
    const account = await user.account();
    const datasets = server.services.datasets;
    assert.equal(await datasets.hasAddress(account, 'RepliedAddresses', 'x@example.org'), false, 'no dataset yet');
    await datasets.addAddress(account, 'RepliedAddresses', 'Someone@Example.ORG', 'Some One');
    assert.equal(await datasets.hasAddress(account, 'RepliedAddresses', 'someone@example.org'), true);
    assert.equal(await datasets.hasAddress(account, 'RepliedAddresses', 'SOMEONE@EXAMPLE.ORG'), true);
    assert.equal(await datasets.hasAddress(account, 'RepliedAddresses', 'Some One <someone@example.org>'), true);
    assert.equal(await datasets.hasAddress(account, 'RepliedAddresses', 'someone@example.net'), false);
    assert.equal(await datasets.hasAddress(account, 'Other', 'someone@example.org'), false);
    assert.equal(await datasets.hasAddress(account, 'bad//name', 'someone@example.org'), false, 'a bad name is no error here');
    assert.equal(await datasets.hasAddress(account, '~nobody/RepliedAddresses', 'someone@example.org'), false);
    await assert.rejects(datasets.addAddress(account, 'RepliedAddresses', 'nonsense'), ServiceError);

    // An entry made by datasetSet (any name) counts by its email attribute, and addAddress of
    // the same address replaces it rather than adding a duplicate.
    await ok(user.client, setRequest('RepliedAddresses', undefined, { email: 'Dup@Example.org', note: 'from a client' }));
    assert.equal(await datasets.hasAddress(account, 'RepliedAddresses', 'dup@example.ORG'), true);
    assert.equal((await list(user.client, 'RepliedAddresses')).length, 2);
    await datasets.addAddress(account, 'RepliedAddresses', 'DUP@example.org');
    assert.deepEqual(await list(user.client, 'RepliedAddresses'), [
      ['dup@example.org', { email: 'DUP@example.org' }],
      ['someone@example.org', { email: 'Someone@Example.ORG', realName: 'Some One' }],
    ]);
  });
});

describe('datasets: entries', () => {
  test('datasetSet creates, merges, empties and removes attributes; datasetDelete removes entries', async () => {
    const { client } = await newUser();
    await ok(client, req('datasetCreate', { dataset: 'Book' }));
    await ok(client, setRequest('Book', 'e1', { email: 'e1@example.org', city: 'Paris' }));
    assert.deepEqual(await list(client, 'Book'), [['e1', { email: 'e1@example.org', city: 'Paris' }]]);
    // Merge: city changes, phone is added, email stays; an empty body is an empty string.
    await ok(client, setRequest('Book', 'e1', { city: 'Lyon', phone: '+33 1', notes: '' }));
    assert.deepEqual(await list(client, 'Book'), [['e1', { email: 'e1@example.org', city: 'Lyon', phone: '+33 1', notes: '' }]]);
    // <attr><null/></attr> removes the attribute.
    await ok(client, setRequest('Book', 'e1', { phone: null, nonexistent: null }));
    assert.deepEqual(await list(client, 'Book'), [['e1', { email: 'e1@example.org', city: 'Lyon', notes: '' }]]);
    // Markup and non-ASCII in values survive the round trip.
    await ok(client, setRequest('Book', 'e 2 & <b>', { note: '<a href="x">&amp;</a> ünï 😀' }));
    // No name: a new entry with a random name, every time.
    await ok(client, setRequest('Book', undefined, { email: 'r1@example.org' }));
    await ok(client, setRequest('Book', undefined, { email: 'r2@example.org' }));
    const entries = await list(client, 'Book');
    assert.equal(entries.length, 4);
    assert.deepEqual(entries.find(([name]) => name === 'e 2 & <b>')?.[1], { note: '<a href="x">&amp;</a> ünï 😀' });
    const random = entries.filter(([name]) => name !== 'e1' && name !== 'e 2 & <b>');
    assert.deepEqual(random.map(([, attrs]) => attrs.email).sort(), ['r1@example.org', 'r2@example.org']);
    assert.notEqual(random[0]![0], random[1]![0]);
    assert.deepEqual(entries.map(([name]) => name), entries.map(([name]) => name).sort(), 'entries come sorted by name');

    await ok(client, req('datasetDelete', { dataset: 'Book', name: 'e1' }));
    await fails(client, req('datasetDelete', { dataset: 'Book', name: 'e1' }), 'entry not found');
    assert.deepEqual((await list(client, 'Book')).map(([name]) => name).includes('e1'), false);
    await ok(client, req('datasetDelete', { dataset: 'Book', name: 'e 2 & <b>' }));
    assert.equal((await list(client, 'Book')).length, 2);
  });

  test('datasetSet refuses malformed bodies and changes nothing then', async () => {
    const { client } = await newUser();
    await ok(client, req('datasetCreate', { dataset: 'S' }));
    await ok(client, setRequest('S', 'k', { a: '1' }));
    const two = req('datasetSet', { dataset: 'S' }, new XmlElement('datasetData', { name: 'k' }), new XmlElement('datasetData', { name: 'j' }));
    await fails(client, two, 'exactly one datasetData element is expected');
    await fails(client, '<datasetSet id="m1" dataset="S"><datasetData name="k"><a>2</a><a>3</a></datasetData></datasetSet>', /given twice/);
    await fails(client, '<datasetSet id="m2" dataset="S"><datasetData name="k"><a><subValue>2</subValue></a></datasetData></datasetSet>', /must be text/);
    await fails(client, '<datasetSet id="m3" dataset="S"><datasetData name="k"><x:y>2</x:y></datasetData></datasetSet>', /^invalid attribute name/);
    await fails(client, setRequest('S', 'x\ty', { a: '1' }), /^invalid entry name/);
    await fails(client, setRequest('S', 'n'.repeat(256), { a: '1' }), /^invalid entry name/);
    const many: Record<string, string> = {};
    for (let i = 0; i < 65; i++) many[`a${i}`] = String(i);
    await fails(client, setRequest('S', 'k', many), /too many attributes/);
    await fails(client, setRequest('S', 'big', { blob: 'x'.repeat(20_000) }), /too large/);
    assert.deepEqual(await list(client, 'S'), [['k', { a: '1' }]], 'nothing changed');
    await ok(client, req('noop'));
  });

  test('datasetList filters: eq (default), beg, end, contains, case-insensitively', async () => {
    const { client } = await newUser();
    await ok(client, req('datasetCreate', { dataset: 'F' }));
    await ok(client, setRequest('F', 'a', { city: 'Paris', email: 'ann@one.example' }));
    await ok(client, setRequest('F', 'b', { city: 'paris', email: 'bob@two.example' }));
    await ok(client, setRequest('F', 'c', { city: 'Parisville', email: 'cat@one.example' }));
    await ok(client, setRequest('F', 'd', { city: 'Old Paris', email: 'dan@three.example' }));
    await ok(client, setRequest('F', 'e', { email: 'eve@one.example' }));
    const names = async (filter: Record<string, string>): Promise<string[]> => (await list(client, 'F', filter)).map(([name]) => name);

    assert.deepEqual(await names({}), ['a', 'b', 'c', 'd', 'e']);
    assert.deepEqual(await names({ filterField: 'city', filter: 'PARIS' }), ['a', 'b']);
    assert.deepEqual(await names({ filterField: 'city', filter: 'paris', mode: 'eq' }), ['a', 'b']);
    assert.deepEqual(await names({ filterField: 'city', filter: 'pAr', mode: 'beg' }), ['a', 'b', 'c']);
    assert.deepEqual(await names({ filterField: 'city', filter: 'ParIS', mode: 'end' }), ['a', 'b', 'd']);
    assert.deepEqual(await names({ filterField: 'city', filter: 'ISV', mode: 'contains' }), ['c']);
    assert.deepEqual(await names({ filterField: 'email', filter: '@ONE.example', mode: 'end' }), ['a', 'c', 'e']);
    assert.deepEqual(await names({ filterField: 'city', filter: '', mode: 'beg' }), ['a', 'b', 'c', 'd'], 'entries without the attribute never match');
    assert.deepEqual(await names({ filterField: 'zip', filter: '', mode: 'contains' }), []);
    // The filtered messages carry every attribute of the entry.
    assert.deepEqual(await list(client, 'F', { filterField: 'city', filter: 'old paris' }), [['d', { city: 'Old Paris', email: 'dan@three.example' }]]);

    await fails(client, req('datasetList', { dataset: 'F', mode: 'eq' }), /mode attribute needs the filterField/);
    await fails(client, req('datasetList', { dataset: 'F', filter: 'x' }), /filter attribute needs the filterField/);
    await fails(client, req('datasetList', { dataset: 'F', filterField: 'city' }), 'the filter attribute is missing');
    await fails(client, req('datasetList', { dataset: 'F', filterField: 'city', filter: 'x', mode: 'regex' }), /^invalid mode/);
  });
});

describe('datasets: other accounts', () => {
  test('~account names: yourself always, the domain postmaster yes, others "access denied", unknown "unknown account"', async () => {
    const domain = `ds${++counter}.test`;
    const alice = await login(`alice@${domain}`);
    const bob = await login(`bob@${domain}`);
    const admin = await login(`postmaster@${domain}`);
    const outsider = await login(`postmaster@other-${domain}`);

    await ok(bob.client, req('datasetAddAddress', { dataset: 'Private' }, 'secret@example.org'));

    // Another user of the same domain: no access, whichever way the name is spelled.
    for (const name of ['~bob/Private', `~bob@${domain}/Private`, `~BOB@${domain.toUpperCase()}/Private`]) {
      await fails(alice.client, req('datasetList', { dataset: name }), 'access denied');
    }
    await fails(alice.client, req('datasetCreate', { dataset: '~bob/Mine' }), 'access denied');
    await fails(alice.client, req('datasetRemove', { dataset: '~bob/Private' }), 'access denied');
    await fails(alice.client, req('datasetAddAddress', { dataset: '~bob/Private' }, 'x@example.org'), 'access denied');
    await fails(alice.client, setRequest('~bob/Private', 'x', { a: '1' }), 'access denied');
    await fails(alice.client, req('datasetDelete', { dataset: '~bob/Private', name: 'secret@example.org' }), 'access denied');
    await fails(alice.client, req('datasetListSubsets', { dataset: '~bob' }), 'access denied');
    await fails(alice.client, req('datasetListSubsets', { dataset: '~bob/' }), 'access denied');
    await fails(alice.client, req('datasetList', { dataset: '~nobody/Private' }), 'unknown account');
    await fails(alice.client, req('datasetList', { dataset: `~bob@nowhere.test/Private` }), 'unknown account');
    // The postmaster of another domain is nobody's administrator here.
    await fails(outsider.client, req('datasetList', { dataset: `~bob@${domain}/Private` }), 'access denied');

    // Yourself, spelled as another account.
    await ok(alice.client, req('datasetCreate', { dataset: '~alice/Own' }));
    await ok(alice.client, req('datasetAddAddress', { dataset: `~alice@${domain}/Own` }, 'me@example.org'));
    assert.deepEqual((await list(alice.client, 'Own')).map(([name]) => name), ['me@example.org']);

    // The domain administrator reads and writes the account's datasets.
    assert.deepEqual(await list(admin.client, '~bob/Private'), [['secret@example.org', { email: 'secret@example.org' }]]);
    await ok(admin.client, req('datasetCreate', { dataset: `~bob@${domain}/Shared/Team` }));
    await ok(admin.client, setRequest('~bob/Shared/Team', 'lead', { email: 'lead@example.org' }));
    assert.deepEqual(await subsets(admin.client, '~bob'), ['~bob/Private', '~bob/Shared']);
    assert.deepEqual(await subsets(admin.client, `~bob@${domain}/Shared`), [`~bob@${domain}/Shared/Team`]);
    await ok(admin.client, req('datasetDelete', { dataset: '~bob/Private', name: 'secret@example.org' }));
    // ... and it lands in bob's account, not the administrator's.
    assert.deepEqual(await subsets(bob.client, ''), ['Private', 'Shared']);
    assert.deepEqual(await list(bob.client, 'Shared/Team'), [['lead', { email: 'lead@example.org' }]]);
    assert.deepEqual(await list(bob.client, 'Private'), []);
    assert.deepEqual(await subsets(admin.client, ''), []);
    await ok(admin.client, req('datasetRemove', { dataset: '~bob/Shared' }));
    assert.deepEqual(await subsets(bob.client, ''), ['Private']);
  });
});

describe('datasets: limits and storage', () => {
  test('limits are enforced atomically (a refused write changes nothing)', async () => {
    const user = await newUser();
    const account = await user.account();
    const small = new DatasetService(server.services.store, server.services.accounts, {
      maxDatasets: 3,
      maxEntries: 2,
      maxAttributes: 3,
      maxEntryBytes: 200,
    });
    await small.create(account, 'L');
    await small.create(account, 'L/M');
    await assert.rejects(small.create(account, 'N/O'), /too many datasets/, 'two more would make four');
    assert.deepEqual(await small.listSubsets(account, ''), ['L'], 'N was not left behind');
    await small.create(account, 'N');
    await assert.rejects(small.create(account, 'P'), /too many datasets/);

    await small.addAddress(account, 'L', 'one@example.org');
    await small.addAddress(account, 'L', 'two@example.org');
    await assert.rejects(small.addAddress(account, 'L', 'three@example.org'), /the dataset is full/);
    await small.addAddress(account, 'L', 'TWO@example.org', 'Refreshing is no new entry');
    await assert.rejects(small.set(account, 'L', undefined, { a: 'x' }), /the dataset is full/);
    await small.set(account, 'L', 'one@example.org', { a: '1', b: '2' });
    await assert.rejects(small.set(account, 'L', 'one@example.org', { c: '3' }), /too many attributes/, 'merged, four attributes');
    await assert.rejects(small.set(account, 'L', 'one@example.org', { a: 'y'.repeat(200) }), /too large/);
    assert.deepEqual(
      (await small.list(account, 'L')).map((e) => [e.name, { ...e.attrs }]),
      [
        ['one@example.org', { email: 'one@example.org', a: '1', b: '2' }],
        ['two@example.org', { email: 'TWO@example.org', realName: 'Refreshing is no new entry' }],
      ],
    );
  });

  test('attributes named __proto__ or constructor are plain data', async () => {
    const { client } = await newUser();
    await ok(client, req('datasetCreate', { dataset: 'P' }));
    await ok(client, '<datasetSet id="p1" dataset="P"><datasetData name="x"><__proto__>proto</__proto__><constructor>c</constructor></datasetData></datasetSet>');
    await ok(client, '<datasetSet id="p2" dataset="P"><datasetData name="x"><__proto__>again</__proto__></datasetData></datasetSet>');
    const reply = await ok(client, req('datasetList', { dataset: 'P' }));
    assert.equal(reply.messages.length, 1);
    assert.deepEqual(
      reply.messages[0]!.elements().map((e) => [e.name, e.text()]),
      [['__proto__', 'again'], ['constructor', 'c']],
    );
  });

  test('acknowledged writes are committed, and datasets outlive a restart; they go with their account', async () => {
    const first = await startTestServer({ defaultDomain: 'persist.test' });
    const { config, dataDir } = first;
    let running: RunningServer = first;
    let client: XimssClient | undefined;
    try {
      await running.services.accounts.create({ address: 'keeper@persist.test', password: 'secret' });
      client = await loggedInClient(running.ports.ximss, 'keeper@persist.test', 'secret');
      await ok(client, req('datasetCreate', { dataset: 'Book/Sub' }));
      await ok(client, req('datasetAddAddress', { dataset: 'Book', realName: 'Kept' }, 'Kept@Example.org'));
      await ok(client, setRequest('Book/Sub', 'entry', { note: 'still here', gone: 'x' }));
      await ok(client, setRequest('Book/Sub', 'entry', { gone: null }));

      // Another connection to the same file sees the acknowledged data at once.
      const account = (await running.services.accounts.find('keeper@persist.test'))!;
      const other = await openStore(config.store || undefined, dataDir);
      try {
        assert.deepEqual(
          (await other.datasets.listEntries(account.id, 'Book/Sub')).map((e) => [e.name, { ...e.attrs }]),
          [['entry', { note: 'still here' }]],
        );
      } finally {
        await other.close();
      }

      client.close();
      await running.close();
      running = await startServer(config, { log: silentLogger });
      client = await loggedInClient(running.ports.ximss, 'keeper@persist.test', 'secret');
      assert.deepEqual(await subsets(client, ''), ['Book']);
      assert.deepEqual(await subsets(client, 'Book'), ['Book/Sub']);
      assert.deepEqual(await list(client, 'Book'), [['kept@example.org', { email: 'Kept@Example.org', realName: 'Kept' }]]);
      assert.deepEqual(await list(client, 'Book/Sub'), [['entry', { note: 'still here' }]]);
      const again = (await running.services.accounts.find('keeper@persist.test'))!;
      assert.equal(await running.services.datasets.hasAddress(again, 'Book', 'KEPT@example.org'), true);

      client.close();
      client = undefined;
      await running.services.accounts.remove(again);
      assert.equal(await running.services.store.datasets.exists(again.id, 'Book'), false);
      assert.deepEqual(await running.services.store.datasets.findByEmail(again.id, 'Book', 'kept@example.org'), []);
    } finally {
      client?.close();
      await running.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
