/**
 * Account Access Rights over XIMSS on the wire (spec section "Account Management"):
 * accountRightsGet, accountACLList, accountACLUpdate (aclElem add/sub/clear/replace,
 * `anyone`, `-` revocations), who may change an ACL, the rights enforced on another
 * account's datasets (grants and revocations), verifyIdentity, the log event and bus topic
 * of a change; and the TimeZone preference's CommuniGate zone names mapped to IANA zones.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { capturingLogger, deliverRaw, fails, ok, rfc822, startTestServer, type TestServer, type XimssClient } from './helpers.js';

let server: TestServer;
const capture = capturingLogger('info');
let counter = 0;

before(async () => {
  server = await startTestServer({}, { log: capture.log });
});
after(() => server.stop());

interface User {
  name: string;
  address: string;
  client: XimssClient;
}

/** A new domain with its postmaster and a few users, all logged in. */
async function domainWith(...names: string[]): Promise<{ domain: string; users: Record<string, User>; postmaster: User }> {
  const domain = `rights${++counter}.test`;
  const users: Record<string, User> = {};
  for (const name of ['postmaster', ...names]) {
    const address = `${name}@${domain}`;
    await server.addAccount(address, 'secret');
    const { client } = await server.login(address, 'secret');
    users[name] = { name, address, client };
  }
  return { domain, users, postmaster: users.postmaster! };
}

async function rightsOf(client: XimssClient, userName?: string): Promise<string> {
  const reply = await ok(client, userName === undefined ? '<accountRightsGet/>' : `<accountRightsGet userName="${userName}"/>`);
  assert.equal(reply.messages.length, 1);
  const message = reply.messages[0]!;
  assert.equal(message.name, 'accountRights');
  assert.equal(message.attrs.userName, userName, 'userName is repeated when it was given');
  return message.text();
}

async function aclOf(client: XimssClient, userName?: string): Promise<[string, string][]> {
  const reply = await ok(client, userName === undefined ? '<accountACLList/>' : `<accountACLList userName="${userName}"/>`);
  assert.equal(reply.messages.length, 1);
  const message = reply.messages[0]!;
  assert.equal(message.name, 'accountACL');
  assert.equal(message.attrs.userName, userName);
  return message.elements().map((e) => {
    assert.equal(e.name, 'aclElem');
    return [e.attrs.pattern!, e.text()];
  });
}

function update(elems: string, userName?: string): string {
  return `<accountACLUpdate${userName === undefined ? '' : ` userName="${userName}"`}>${elems}</accountACLUpdate>`;
}

describe('accountRightsGet, accountACLList, accountACLUpdate', () => {
  test('the owner holds every right; others none until granted; unknown accounts are errors', async () => {
    const { domain, users } = await domainWith('alice', 'bob');
    const alice = users.alice!.client;
    assert.equal(await rightsOf(alice), 'rwsa');
    assert.equal(await rightsOf(alice, 'alice'), 'rwsa', 'by own name');
    assert.equal(await rightsOf(alice, 'bob'), '', 'no rights over bob');
    assert.equal(await rightsOf(alice, `bob@${domain}`), '', 'by full address');
    await fails(alice, '<accountRightsGet userName="nobody"/>', 'unknown account');
    await fails(alice, '<accountACLList userName="nobody"/>', 'unknown account');
    assert.deepEqual(await aclOf(alice), []);
  });

  test('aclElem modes: replace, add, sub, clear; an entry left empty goes; patterns lower-cased; letters in their order', async () => {
    const { users } = await domainWith('alice', 'bob');
    const alice = users.alice!.client;
    await ok(alice, update('<aclElem pattern="Bob">wr</aclElem><aclElem pattern="anyone">r</aclElem>'));
    assert.deepEqual(await aclOf(alice), [['anyone', 'r'], ['bob', 'rw']]);
    await ok(alice, update('<aclElem pattern="bob" mode="add">as</aclElem>'));
    assert.deepEqual(await aclOf(alice), [['anyone', 'r'], ['bob', 'rwsa']]);
    await ok(alice, update('<aclElem pattern="bob" mode="sub">ws</aclElem>'));
    assert.deepEqual(await aclOf(alice), [['anyone', 'r'], ['bob', 'ra']]);
    await ok(alice, update('<aclElem pattern="anyone" mode="sub">r</aclElem>'));
    assert.deepEqual(await aclOf(alice), [['bob', 'ra']]);
    await ok(alice, update('<aclElem pattern="bob" mode="clear"/><aclElem pattern="-carol">s</aclElem>'));
    assert.deepEqual(await aclOf(alice), [['-carol', 's']]);
    await ok(alice, update('<aclElem pattern="-carol"></aclElem>'));
    assert.deepEqual(await aclOf(alice), [], 'replacing with no letters removes the entry');
  });

  test('bad input: unknown letters, bad patterns, modes, no elements, other elements — nothing changed', async () => {
    const { users } = await domainWith('alice');
    const alice = users.alice!.client;
    await ok(alice, update('<aclElem pattern="bob">r</aclElem>'));
    await fails(alice, update('<aclElem pattern="bob">rx</aclElem>'), /unknown account access right.*"x"/);
    await fails(alice, update('<aclElem pattern="">r</aclElem>'), /empty pattern/);
    await fails(alice, update('<aclElem pattern="a b">r</aclElem>'), /invalid ACL pattern/);
    await fails(alice, update('<aclElem pattern="bob" mode="merge">r</aclElem>'), /unknown aclElem mode/);
    await fails(alice, update(''), 'no aclElem elements');
    await fails(alice, update('<foo/>'), /unexpected <foo>/);
    await fails(alice, update('<aclElem pattern="carol">w</aclElem><aclElem pattern="dave">z</aclElem>'), /unknown account access right/);
    assert.deepEqual(await aclOf(alice), [['bob', 'r']], 'a refused update changes nothing, not even its good elements');
    const many = Array.from({ length: 101 }, (_, i) => `<aclElem pattern="u${i}">r</aclElem>`).join('');
    await fails(alice, update(many), /too many aclElem elements/);
  });

  test('only holders of the a right (and the postmaster) read or change an ACL; an a grant lets another administer it', async () => {
    const { users, postmaster } = await domainWith('alice', 'bob', 'carol');
    const [alice, bob, carol] = [users.alice!.client, users.bob!.client, users.carol!.client];
    await fails(bob, '<accountACLList userName="alice"/>', 'access denied');
    await fails(bob, update('<aclElem pattern="bob">rwsa</aclElem>', 'alice'), 'access denied');
    assert.deepEqual(await aclOf(alice), [], 'the refused self-grant changed nothing');

    assert.equal(await rightsOf(postmaster.client, 'alice'), 'rwsa', "the domain's postmaster holds every right");
    await ok(postmaster.client, update('<aclElem pattern="bob">a</aclElem>', 'alice'));
    assert.equal(await rightsOf(bob, 'alice'), 'a');
    assert.deepEqual(await aclOf(bob, 'alice'), [['bob', 'a']]);
    await ok(bob, update('<aclElem pattern="carol">r</aclElem>', 'alice'));
    assert.equal(await rightsOf(carol, 'alice'), 'r');
    await fails(carol, '<accountACLList userName="alice"/>', 'access denied', 'r is not a');
    // Revoked: bob loses it at once (every check reads the ACL as stored).
    await ok(alice, update('<aclElem pattern="bob" mode="clear"/>'));
    await fails(bob, '<accountACLList userName="alice"/>', 'access denied');
  });

  test('the postmaster of another domain holds nothing here; anyone@domain and name@domain patterns', async () => {
    const { domain, users } = await domainWith('alice', 'bob');
    const other = await domainWith('zed');
    assert.equal(await rightsOf(other.postmaster.client, `alice@${domain}`), '');
    await fails(other.postmaster.client, `<accountACLList userName="alice@${domain}"/>`, 'access denied');
    await ok(users.alice!.client, update(`<aclElem pattern="anyone@${other.domain}">r</aclElem><aclElem pattern="bob@${domain}">s</aclElem>`));
    assert.equal(await rightsOf(other.users.zed!.client, `alice@${domain}`), 'r');
    assert.equal(await rightsOf(users.bob!.client, 'alice'), 's');
  });

  test('a change is logged (account.acl_changed, never letters) and published as accountChanged', async () => {
    const { domain, users } = await domainWith('alice');
    const heard: number[] = [];
    const stop = server.services.bus.on('accountChanged', ({ accountId }) => heard.push(accountId));
    try {
      await ok(users.alice!.client, update('<aclElem pattern="bob">r</aclElem>'));
    } finally {
      stop();
    }
    const alice = (await server.services.accounts.find(`alice@${domain}`))!;
    assert.ok(heard.includes(alice.id), 'accountChanged for the account');
    const logged = capture.events('account.acl_changed').filter((r) => r.account === `alice@${domain}`);
    assert.equal(logged.length, 1);
    assert.deepEqual(logged[0]!.patterns, ['bob']);
    assert.equal(logged[0]!.by, `alice@${domain}`);
  });
});

describe('rights enforced on another account’s datasets', () => {
  test('r reads, w changes; revocation takes effect at once; anyone and -name entries', async () => {
    const { users } = await domainWith('alice', 'bob', 'carol');
    const [alice, bob, carol] = [users.alice!.client, users.bob!.client, users.carol!.client];
    await ok(alice, '<datasetAddAddress dataset="Private">friend@example.org</datasetAddAddress>');
    const read = '<datasetList dataset="~alice/Private"/>';
    const write = '<datasetSet dataset="~alice/Private"><datasetData name="x"><note>1</note></datasetData></datasetSet>';
    await fails(bob, read, 'access denied');
    await fails(bob, '<datasetListSubsets dataset="~alice"/>', 'access denied');

    await ok(alice, update('<aclElem pattern="bob">r</aclElem>'));
    const listed = await ok(bob, read);
    assert.deepEqual(listed.messages.map((m) => m.attrs.name), ['friend@example.org']);
    assert.deepEqual((await ok(bob, '<datasetListSubsets dataset="~alice"/>')).messages.map((m) => m.attrs.dataset), ['~alice/Private']);
    await fails(bob, write, 'access denied', 'r does not write');
    await fails(bob, '<datasetCreate dataset="~alice/New"/>', 'access denied');
    await fails(bob, '<datasetRemove dataset="~alice/Private"/>', 'access denied');

    await ok(alice, update('<aclElem pattern="bob" mode="add">w</aclElem>'));
    await ok(bob, write);
    await ok(bob, '<datasetCreate dataset="~alice/FromBob"/>');
    await ok(bob, '<datasetDelete dataset="~alice/Private" name="x"/>');

    await ok(alice, update('<aclElem pattern="bob" mode="sub">rw</aclElem>'));
    await fails(bob, read, 'access denied', 'revoked');
    await fails(bob, write, 'access denied', 'revoked');

    await ok(alice, update('<aclElem pattern="anyone">r</aclElem>'));
    await ok(carol, read);
    await ok(alice, update('<aclElem pattern="-carol">r</aclElem>'));
    await fails(carol, read, 'access denied', 'a -name entry revokes what anyone grants');
    await ok(bob, read, 'anyone still holds r');
  });

  test("the domain's postmaster reads and changes its accounts' datasets", async () => {
    const { users, postmaster } = await domainWith('alice');
    await ok(users.alice!.client, '<datasetCreate dataset="Book"/>');
    await ok(postmaster.client, '<datasetSet dataset="~alice/Book"><datasetData name="p"><email>p@example.org</email></datasetData></datasetSet>');
    assert.equal((await ok(postmaster.client, '<datasetList dataset="~alice/Book"/>')).messages.length, 1);
  });
});

describe('verifyIdentity', () => {
  test('own address and aliases yes; other accounts only with the s right; foreign and bad addresses no', async () => {
    const { domain, users } = await domainWith('alice', 'bob');
    const alice = users.alice!.client;
    const aliceRecord = (await server.services.accounts.find(`alice@${domain}`))!;
    await server.services.accounts.setAliases(aliceRecord, ['ally']);
    await ok(alice, `<verifyIdentity>alice@${domain}</verifyIdentity>`);
    await ok(alice, `<verifyIdentity name="Alice A.">Alice@${domain.toUpperCase()}</verifyIdentity>`, 'case-insensitive');
    await ok(alice, `<verifyIdentity>"Alice" &lt;alice@${domain}&gt;</verifyIdentity>`, 'with a real name in the body');
    await ok(alice, `<verifyIdentity>ally@${domain}</verifyIdentity>`, 'an alias');
    await fails(alice, `<verifyIdentity>bob@${domain}</verifyIdentity>`, 'this account may not use this address in From');
    await fails(alice, '<verifyIdentity>someone@elsewhere.example</verifyIdentity>', 'this account may not use this address in From');
    await fails(alice, '<verifyIdentity>not an address</verifyIdentity>', /invalid E-mail address/);
    await fails(alice, '<verifyIdentity/>', 'the E-mail address is missing');
    await fails(alice, `<verifyIdentity name="a&#10;b">alice@${domain}</verifyIdentity>`, /invalid real name/);

    await ok(users.bob!.client, update('<aclElem pattern="alice">s</aclElem>'));
    await ok(alice, `<verifyIdentity>bob@${domain}</verifyIdentity>`, 'delegated by the s right');
    await ok(users.bob!.client, update('<aclElem pattern="alice" mode="clear"/>'));
    await fails(alice, `<verifyIdentity>bob@${domain}</verifyIdentity>`, 'this account may not use this address in From');
  });
});

describe('TimeZone: CommuniGate zone names', () => {
  /** The wall-clock time of `gmt` (YYYYMMDDTHHMMSS) in an IANA zone, in the same form. */
  function localOf(gmt: string, zone: string): string {
    const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})$/.exec(gmt)!;
    const date = new Date(Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!));
    const parts = new Intl.DateTimeFormat('en-US', { timeZone: zone, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' }).formatToParts(date);
    const get = (type: string): string => parts.find((p) => p.type === type)!.value;
    return `${get('year')}${get('month')}${get('day')}T${get('hour')}${get('minute')}${get('second')}`;
  }

  test('NorthAmerica/Pacific is accepted and readTime gives Pacific time; a fixed-offset name its offset; bad names refused', async () => {
    const { users } = await domainWith('tz');
    const c = users.tz!.client;
    await ok(c, '<prefsStore><TimeZone>NorthAmerica/Pacific</TimeZone></prefsStore>');
    let time = (await ok(c, '<readTime/>')).messages[0]!;
    assert.equal(time.attrs.localTime, localOf(time.attrs.gmtTime!, 'America/Los_Angeles'));
    await ok(c, '<prefsStore><TimeZone>(-0500) Haiti/Peru</TimeZone></prefsStore>');
    time = (await ok(c, '<readTime/>')).messages[0]!;
    assert.equal(time.attrs.localTime, localOf(time.attrs.gmtTime!, 'Etc/GMT+5'));
    await ok(c, '<prefsStore><TimeZone>Russia/Novosibirsk</TimeZone></prefsStore>');
    time = (await ok(c, '<readTime/>')).messages[0]!;
    assert.equal(time.attrs.localTime, localOf(time.attrs.gmtTime!, 'Asia/Novosibirsk'));
    await ok(c, '<prefsStore><TimeZone>Europe/Berlin</TimeZone></prefsStore>', 'IANA names too');
    await fails(c, '<prefsStore><TimeZone>NorthAmerica/Nowhere</TimeZone></prefsStore>', /TimeZone: must be HostOS/);
    await fails(c, '<prefsStore><TimeZone>+01:00</TimeZone></prefsStore>', /TimeZone: must be HostOS/);
    const prefs = (await ok(c, '<prefsRead><name>TimeZone</name></prefsRead>')).messages[0]!;
    assert.equal(prefs.elements('TimeZone')[0]!.text(), 'Europe/Berlin', 'the refused values changed nothing');
  });

  test('a message read in NorthAmerica/Pacific shows its date in Pacific time', async () => {
    const { domain, users } = await domainWith('tzmail');
    const c = users.tzmail!.client;
    await ok(c, '<prefsStore><TimeZone>NorthAmerica/Pacific</TimeZone></prefsStore>');
    const raw = rfc822([['From', 'a@example.org'], ['To', `tzmail@${domain}`], ['Subject', 'tz'], ['Date', 'Thu, 30 Aug 2007 18:43:18 +0000']], 'hi');
    const [uid] = await deliverRaw(server, `tzmail@${domain}`, 'INBOX', [raw]);
    await ok(c, '<folderOpen folder="INBOX" mailbox="INBOX"><field>UID</field></folderOpen>');
    const read = (await ok(c, `<folderRead folder="INBOX" UID="${uid}"/>`)).messages[0]!;
    const date = read.element('EMail')?.element('Date');
    assert.ok(date, read.toString());
    assert.equal(date.text(), '20070830T184318Z');
    assert.equal(date.attrs.localTime, '20070830T114318', 'PDT, seven hours behind GMT in August');
    await ok(c, '<prefsStore><TimeZone>Europe/Central</TimeZone></prefsStore>');
    const again = (await ok(c, `<folderRead folder="INBOX" UID="${uid}"/>`)).messages[0]!;
    assert.equal(again.element('EMail')?.element('Date')?.attrs.localTime, '20070830T204318', 'CEST, two hours ahead');
  });

  test('listKnownValues lists HostOS, the CommuniGate names and IANA names as tzid', async () => {
    const { users } = await domainWith('kv');
    const known = (await ok(users.kv!.client, '<listKnownValues/>')).messages[0]!;
    const zones = known.elements('tzid').map((e) => e.attrs.name);
    for (const name of ['HostOS', 'NorthAmerica/Pacific', 'Europe/Central', '(+0100) Algeria/Congo', 'GMT (+0000)', 'Europe/Moscow', 'America/New_York']) {
      assert.ok(zones.includes(name), `${name} is listed`);
    }
    assert.equal(new Set(zones).size, zones.length, 'each name once');
    assert.ok(known.elements('charset').length > 0, 'the other known values stay');
  });
});
