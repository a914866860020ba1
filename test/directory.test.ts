/**
 * The Directory over XIMSS on the wire (spec section "Directory"): listDirectory with `$`,
 * RFC 2254 filters (equality, presence, substrings, and/or/not, escapes) and their errors,
 * scopes base/one/sub, field selection (and the composed `mail`), limit, paging cookies,
 * sortField/sortOrder; modifyDirectory as the Russian text and example 048 describe, with its
 * rights; changes seen at once (the store is read on every request).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { XmlElement } from '../src/xml/element.js';
import { readValue, type XimssValue } from '../src/xml/objects.js';
import { fails, ok, startTestServer, type TestServer, type XimssClient } from './helpers.js';

let server: TestServer;
let counter = 0;

before(async () => {
  server = await startTestServer();
});
after(() => server.stop());

interface Directory {
  domain: string;
  clients: Record<string, XimssClient>;
}

/** A new domain whose accounts have these real names and Public Info; everyone logged in. */
async function directoryOf(people: Record<string, { realName?: string; info?: string }>): Promise<Directory> {
  const domain = `dir${++counter}.test`;
  const clients: Record<string, XimssClient> = {};
  const everyone: Record<string, { realName?: string; info?: string }> = { postmaster: {}, ...people };
  for (const [name, person] of Object.entries(everyone)) {
    const address = `${name}@${domain}`;
    await server.addAccount(address, 'secret', person.realName);
    const { client } = await server.login(address, 'secret');
    clients[name] = client;
    if (person.info) await ok(client, `<prefsStore type="publicInfo">${person.info}</prefsStore>`);
  }
  return { domain, clients };
}

interface Found {
  dn: string;
  cookie?: string;
  attrs: { [name: string]: XimssValue };
}

function parse(messages: readonly XmlElement[]): Found[] {
  return messages.map((m) => {
    assert.equal(m.name, 'directoryData', m.toString());
    assert.ok(m.attrs.name, 'a DN');
    for (const child of m.elements()) assert.equal(child.name, 'subKey', `the body is a dictionary: ${m.toString()}`);
    const attrs = m.elements().length === 0 ? {} : (readValue(m) as { [name: string]: XimssValue });
    return { dn: m.attrs.name!, attrs, ...(m.attrs.cookie !== undefined ? { cookie: m.attrs.cookie } : {}) };
  });
}

function attrsXml(attrs: Record<string, string | undefined>): string {
  return Object.entries(attrs)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => ` ${k}="${v!.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;')}"`)
    .join('');
}

async function search(client: XimssClient, attrs: Record<string, string | undefined>, fields: string[] = []): Promise<Found[]> {
  const body = fields.map((f) => `<field>${f}</field>`).join('');
  return parse((await ok(client, `<listDirectory${attrsXml({ baseDN: '$', ...attrs })}>${body}</listDirectory>`)).messages);
}

const uids = (found: readonly Found[]): string[] => found.map((f) => f.attrs.uid as string);

const PEOPLE = {
  alice: { realName: 'Alice Smith', info: '<telephoneNumber>+1 555 0100</telephoneNumber><title>Engineer</title><l>Berlin</l>' },
  bob: { realName: 'Bob Jones', info: '<title>Manager</title><l>Paris</l>' },
  carol: { realName: 'Carol Smith-Baker', info: '<telephoneNumber>+1 555 0102</telephoneNumber><l>Berlin</l>' },
  dave: {},
};

describe('listDirectory', () => {
  let dir: Directory;
  let c: XimssClient;
  before(async () => {
    dir = await directoryOf(PEOPLE);
    c = dir.clients.alice!;
  });

  test('scope one under $: one record per account, DN uid=name,cn=domain, CommuniGate attributes, mail only when asked', async () => {
    const found = await search(c, {});
    assert.deepEqual(uids(found), ['alice', 'bob', 'carol', 'dave', 'postmaster']);
    const alice = found[0]!;
    assert.equal(alice.dn, `uid=alice,cn=${dir.domain}`);
    assert.deepEqual(alice.attrs, {
      objectClass: ['top', 'person', 'organizationalPerson', 'inetOrgPerson'],
      uid: 'alice',
      cn: 'Alice Smith',
      telephoneNumber: '+1 555 0100',
      title: 'Engineer',
      l: 'Berlin',
    });
    assert.equal(found[3]!.attrs.cn, undefined, 'no real name, no cn');
    const withMail = await search(c, {}, ['mail', 'cn']);
    assert.deepEqual(withMail[0]!.attrs, { cn: 'Alice Smith', mail: `alice@${dir.domain}` }, 'the field elements select, and mail is composed');
    assert.deepEqual(withMail[3]!.attrs, { mail: `dave@${dir.domain}` });
  });

  test('scopes: base gives the base record (filter ignored), sub the base and below; an account DN as base', async () => {
    const base = await search(c, { scope: 'base', filter: '(uid=nobody)' });
    assert.deepEqual(base.map((f) => f.dn), [`cn=${dir.domain}`]);
    assert.deepEqual(base[0]!.attrs, { objectClass: ['top', 'domain'], cn: dir.domain });
    const sub = await search(c, { scope: 'sub' });
    assert.equal(sub.length, 6);
    assert.ok(sub.some((f) => f.dn === `cn=${dir.domain}`));
    const one = await search(c, { baseDN: `uid=bob,cn=${dir.domain}`, scope: 'base' });
    assert.deepEqual(uids(one), ['bob']);
    assert.deepEqual(await search(c, { baseDN: `uid=bob,$`, scope: 'one' }), [], 'an account record has nothing below it');
    assert.deepEqual(uids(await search(c, { baseDN: `mail=carol@${dir.domain},$`, scope: 'base' })), ['carol'], 'the DN form of example 048');
    assert.deepEqual(uids(await search(c, { baseDN: `cn=${dir.domain.toUpperCase()}`, filter: '(uid=dave)' })), ['dave'], 'DNs ignore case');
  });

  test('filters: equality, presence, substrings, and/or/not, >= <= ~=, escapes; case-insensitive', async () => {
    const f = async (filter: string): Promise<string[]> => uids(await search(c, { filter }));
    assert.deepEqual(await f('(uid=bob)'), ['bob']);
    assert.deepEqual(await f('(CN=alice smith)'), ['alice'], 'names and values ignore case');
    assert.deepEqual(await f('(telephoneNumber=*)'), ['alice', 'carol']);
    assert.deepEqual(await f('(cn=*Smith*)'), ['alice', 'carol']);
    assert.deepEqual(await f('(cn=Car*Baker)'), ['carol']);
    assert.deepEqual(await f('(cn=*s)'), ['bob']);
    assert.deepEqual(await f('(cn=A*i*S*h)'), ['alice']);
    assert.deepEqual(await f('(&(l=Berlin)(title=*))'), ['alice']);
    assert.deepEqual(await f('(|(uid=bob)(uid=dave))'), ['bob', 'dave']);
    assert.deepEqual(await f('(&(objectClass=person)(!(l=Berlin)))'), ['bob', 'dave', 'postmaster']);
    assert.deepEqual(await f(`(mail=carol@${dir.domain})`), ['carol'], 'the composed mail is searchable');
    assert.deepEqual(await f('(uid>=d)'), ['dave', 'postmaster']);
    assert.deepEqual(await f('(uid<=b)'), ['alice']);
    assert.deepEqual(await f('(cn~=alicesmith)'), ['alice']);
    assert.deepEqual(await f('(cn=Carol Smith\\2dBaker)'), ['carol'], 'an escaped character');
    assert.deepEqual(await f('(cn=\\2a)'), [], 'an escaped * is a star, not a wildcard');
    assert.deepEqual(await f('uid=alice'), ['alice'], 'without the outer parentheses');
    assert.deepEqual(await f('(nosuchattr=*)'), []);
  });

  test('bad filters and attributes get clear errors', async () => {
    const bad = (filter: string, expected: RegExp): Promise<string> => fails(c, `<listDirectory baseDN="$"${attrsXml({ filter })}/>`, expected, filter);
    await bad('(uid=bob', /invalid filter: "\)" expected at the end/);
    await bad('(&)', /needs at least one filter/);
    await bad('(=bob)', /attribute name is missing/);
    await bad('(ui d=bob)', /invalid attribute name/);
    await bad('(uid)', /"=", "~=", ">=" or "<=" expected/);
    await bad('(uid=a(b)', /must be escaped/);
    await bad('(uid=a\\zz)', /backslash/);
    await bad('(uid>=a*)', /"\*" is allowed only with "="/);
    await bad('(uid=bob))', /unexpected text after the filter/);
    await bad('(' + '!('.repeat(40) + 'uid=a' + ')'.repeat(41), /nested deeper/);
    await bad('(uid=' + 'x'.repeat(5000) + ')', /longer than 4096/);
    await fails(c, '<listDirectory baseDN="$" scope="subtree"/>', /invalid scope/);
    await fails(c, '<listDirectory baseDN="$" limit="-1"/>', /limit must be a positive number/);
    await fails(c, '<listDirectory baseDN="$" sortOrder="up"/>', /invalid sortOrder/);
    await fails(c, '<listDirectory baseDN="$"><field>a b</field></listDirectory>', /invalid field name/);
    await fails(c, '<listDirectory/>', 'the baseDN attribute is missing');
    await fails(c, '<listDirectory baseDN="cn=other.test"/>', /only the directory subtree of your own domain/);
    await fails(c, '<listDirectory baseDN=""/>', /the directory root cannot be searched/);
    await fails(c, '<listDirectory baseDN="uid=nobody,$" scope="base"/>', /no such directory record/);
    await fails(c, '<listDirectory baseDN="uid=,$"/>', /invalid DN/);
  });

  test('limit, paging cookies (the last record of a page carries it), sortField (last weighs most) and sortOrder', async () => {
    assert.deepEqual(uids(await search(c, { limit: '2' })), ['alice', 'bob'], 'limit without paging');
    assert.equal((await search(c, { limit: '2' }))[1]!.cookie, undefined, 'no cookie unless asked for');
    const pages: string[][] = [];
    let cookie = '';
    for (let i = 0; i < 5; i++) {
      const page = await search(c, { limit: '2', cookie });
      pages.push(uids(page));
      for (const record of page.slice(0, -1)) assert.equal(record.cookie, undefined, 'only the last record carries the cookie');
      const next = page[page.length - 1]?.cookie;
      if (next === undefined) break;
      cookie = next;
    }
    assert.deepEqual(pages, [['alice', 'bob'], ['carol', 'dave'], ['postmaster']]);
    await fails(c, '<listDirectory baseDN="$" cookie="garbage"/>', 'invalid paging cookie');
    const first = await search(c, { limit: '2', cookie: '', filter: '(objectClass=*)' });
    await fails(c, `<listDirectory baseDN="$" cookie="${first[1]!.cookie}"/>`, 'the paging cookie belongs to another search');

    assert.deepEqual(uids(await search(c, { sortField: 'cn', filter: '(cn=*)' })), ['alice', 'bob', 'carol']);
    assert.deepEqual(uids(await search(c, { sortField: 'cn', sortOrder: 'desc', filter: '(cn=*)' })), ['carol', 'bob', 'alice']);
    // l weighs most (Berlin before Paris), then cn; records without l come last.
    assert.deepEqual(uids(await search(c, { sortField: 'cn,l' })), ['alice', 'carol', 'bob', 'dave', 'postmaster']);
    assert.deepEqual(uids(await search(c, { sortField: 'uid,l', filter: '(l=Berlin)', sortOrder: 'desc' })), ['carol', 'alice']);
  });

  test('what changes is seen at once: a new account, changed Public Info', async () => {
    const d = await directoryOf({ erin: { realName: 'Erin' } });
    const erin = d.clients.erin!;
    assert.deepEqual(uids(await search(erin, { filter: '(title=*)' })), []);
    await ok(erin, '<prefsStore type="publicInfo"><title>Chief</title></prefsStore>');
    assert.deepEqual(uids(await search(erin, { filter: '(title=Chief)' })), ['erin']);
    await server.addAccount(`frank@${d.domain}`, 'secret', 'Frank');
    assert.deepEqual(uids(await search(erin, { filter: '(cn=Frank)' })), ['frank']);
  });
});

describe('modifyDirectory', () => {
  test('example 048: an account changes its own record; sn="" removes; the derived attributes may be repeated as they are', async () => {
    const dir = await directoryOf({ user: { realName: 'User J. Smith', info: '<sn>Smith</sn>' } });
    const c = dir.clients.user!;
    await ok(
      c,
      `<modifyDirectory name="mail=user@${dir.domain},$">
        <subKey key="mail">user@${dir.domain}</subKey>
        <subKey key="cn">User J. Smith</subKey>
        <subKey key="sn"></subKey>
        <subKey key="telephoneNumber">+1 555 0199</subKey>
        <subKey key="objectclass"><subValue>top</subValue><subValue>person</subValue><subValue>organizationalPerson</subValue><subValue>inetOrgPerson</subValue></subKey>
      </modifyDirectory>`,
    );
    const [record] = await search(c, { filter: '(uid=user)' });
    assert.equal(record!.attrs.sn, undefined, 'sn removed');
    assert.equal(record!.attrs.telephoneNumber, '+1 555 0199');
    const info = (await ok(c, '<prefsRead type="publicInfo"/>')).messages[0]!;
    assert.equal(info.element('telephoneNumber')?.text(), '+1 555 0199', 'it is the Public Info');
    await ok(c, `<modifyDirectory name="uid=user,$"><subKey key="ou"><subValue>R&amp;D</subValue><subValue>Labs</subValue></subKey></modifyDirectory>`);
    assert.deepEqual((await search(c, { filter: '(ou=labs)' }))[0]!.attrs.ou, ['R&D', 'Labs'], 'multi-valued attributes');
  });

  test('rights: others need the a right (the postmaster holds it); refusals for derived attributes, renames, removals, unknown records', async () => {
    const dir = await directoryOf({ alice: { realName: 'Alice' }, bob: {} });
    const [alice, bob, postmaster] = [dir.clients.alice!, dir.clients.bob!, dir.clients.postmaster!];
    const set = (title: string): string => `<modifyDirectory name="uid=alice,$"><subKey key="title">${title}</subKey></modifyDirectory>`;
    await fails(bob, set('Intruder'), 'access denied');
    await ok(postmaster, set('By postmaster'));
    await ok(alice, '<accountACLUpdate><aclElem pattern="bob">a</aclElem></accountACLUpdate>');
    await ok(bob, set('By bob'));
    assert.equal((await search(alice, { filter: '(uid=alice)' }))[0]!.attrs.title, 'By bob');
    await ok(alice, '<accountACLUpdate><aclElem pattern="bob" mode="clear"/></accountACLUpdate>');
    await fails(bob, set('Again'), 'access denied', 'revoked');

    await fails(alice, '<modifyDirectory name="uid=alice,$"><subKey key="cn">Someone Else</subKey></modifyDirectory>', /cn attribute is the account's own/);
    await fails(alice, `<modifyDirectory name="uid=alice,$"><subKey key="mail">bob@${dir.domain}</subKey></modifyDirectory>`, /mail attribute is the account's own/);
    await fails(alice, '<modifyDirectory name="uid=alice,$"><subKey key="uid">x</subKey></modifyDirectory>', /uid attribute/);
    await fails(alice, '<modifyDirectory name="uid=alice,$" newName="uid=alicia,$"><subKey key="title">x</subKey></modifyDirectory>', /cannot be renamed/);
    await fails(alice, '<modifyDirectory name="uid=alice,$"/>', /cannot be removed/);
    await fails(alice, '<modifyDirectory name="uid=newbie,$"><subKey key="title">x</subKey></modifyDirectory>', /only records of existing accounts/);
    await fails(alice, '<modifyDirectory name="$"><subKey key="title">x</subKey></modifyDirectory>', /the domain record cannot be changed/);
    await fails(alice, '<modifyDirectory name="uid=alice,cn=other.test"><subKey key="title">x</subKey></modifyDirectory>', /only the directory subtree of your own domain/);
    await fails(alice, '<modifyDirectory name="uid=alice,$"><title>x</title></modifyDirectory>', /bad record attributes|must be a dictionary/);
    await fails(alice, '<modifyDirectory name="uid=alice,$"><subKey key="bad key">x</subKey></modifyDirectory>', /invalid attribute name/);
    await fails(alice, '<modifyDirectory><subKey key="title">x</subKey></modifyDirectory>', /name/);
  });
});
