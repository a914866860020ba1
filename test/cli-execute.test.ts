/**
 * cliExecute (spec "Service Operations", issue 17): CommuniGate CLI commands over XIMSS, with
 * the rights of the sender (server administrators from cli.administrators, a domain's
 * postmaster for its domain, any account for reading its own data), the text and the XML
 * presentation of results, and the CLI's errors.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { el } from '../src/xml/element.js';
import { readValue } from '../src/xml/objects.js';
import { parseXml } from '../src/xml/parser.js';
import { capturingLogger, fails, ok, startTestServer, type TestServer, type XimssClient } from './helpers.js';

let server: TestServer;
let root: XimssClient;
let postmaster: XimssClient;
const logged = capturingLogger('info');

before(async () => {
  // chief@other.test is a server administrator in the postmaster's domain; future@other.test is one not made yet.
  server = await startTestServer({ cli: { administrators: ['root@example.test', 'chief@other.test', 'future@other.test'] } }, { log: logged.log });
  await server.addAccount('root@example.test', 'rootpw');
  await server.addAccount('postmaster@other.test', 'pmpw');
  root = (await server.login('root@example.test', 'rootpw')).client;
  postmaster = (await server.login('postmaster@other.test', 'pmpw')).client;
});
after(async () => {
  await server?.stop();
});

/** cliExecute with `command` as its text body. */
function cli(command: string, report?: string): ReturnType<typeof el> {
  return el('cliExecute', report === undefined ? undefined : { report }, command);
}

/** Runs a command that must succeed; its cliResult text ('' without one). */
async function run(client: XimssClient, command: string): Promise<string | undefined> {
  const { messages } = await ok(client, cli(command));
  assert.ok(messages.length <= 1, 'at most one cliResult');
  if (messages.length === 0) return undefined;
  assert.equal(messages[0]!.name, 'cliResult');
  return messages[0]!.text();
}

describe('cliExecute: the spec example', () => {
  test('GETACCOUNTALIASES in the text and the XML presentation', async () => {
    const address = await server.newAccount('aliased');
    const name = address.split('@')[0]!;
    await run(root, `SETACCOUNTALIASES ${address} (${name}-a,${name}-b)`);
    assert.equal(await run(root, `GETACCOUNTALIASES ${address}`), `(${name}-a,${name}-b)`);
    const { messages } = await ok(root, cli(`GETACCOUNTALIASES ${address}`, 'xml'));
    assert.equal(messages.length, 1);
    const result = messages[0]!;
    assert.equal(result.name, 'cliResult');
    assert.deepEqual(
      result.elements().map((e) => [e.name, e.text()]),
      [
        ['subValue', `${name}-a`],
        ['subValue', `${name}-b`],
      ],
    );
    // The aliases are real: mail and logins reach the account by them.
    assert.equal((await server.services.accounts.find(`${name}-a@example.test`))?.name, name);
  });
});

describe('cliExecute: the spec example replayed', () => {
  const EXAMPLE = new URL('../../shared/spec/examples/007-cliExecute.txt', import.meta.url);

  test('examples/007-cliExecute.txt: each request as written, each answer as shown', async (t) => {
    if (!existsSync(EXAMPLE)) {
      // CI runs with ../shared beside the checkout (as test/conformance.test.ts requires).
      if (process.env.CI) assert.fail(`${EXAMPLE} is missing`);
      t.skip('../shared/spec is not there (a fresh clone)');
      return;
    }
    await server.addAccount('user@domain.com', 'example-pw');
    await server.services.accounts.setAliases((await server.services.accounts.find('user@domain.com'))!, ['alias1', 'alias2']);
    // The example's closing tags are typos (<cliExecute/> for </cliExecute>, </strings> for </cliResult>).
    const lines = readFileSync(EXAMPLE, 'utf8')
      .split('\n')
      .filter((line) => /^[CS]:/.test(line))
      .map((line) => ({ from: line[0]!, xml: line.slice(2).replace('<cliExecute/>', '</cliExecute>').replace('</strings>', '</cliResult>') }));
    let turns = 0;
    for (let i = 0; i < lines.length; i++) {
      if (lines[i]!.from !== 'C') continue;
      turns++;
      const request = parseXml(lines[i]!.xml);
      const expected = [];
      for (let j = i + 1; j < lines.length && lines[j]!.from === 'S'; j++) expected.push(parseXml(lines[j]!.xml));
      const reply = await root.request(request);
      const got = [...reply.messages, reply.response];
      assert.equal(got.length, expected.length, `${lines[i]!.xml}: ${got.join('')}`);
      for (let k = 0; k < got.length; k++) assert.equal(got[k]!.toString(), expected[k]!.toString(), lines[i]!.xml);
    }
    assert.equal(turns, 2);
  });
});

describe('cliExecute: accounts', () => {
  test('CREATEACCOUNT with settings, then the account logs in; LISTACCOUNTS; DELETEACCOUNT', async () => {
    assert.equal(await run(root, 'CREATEACCOUNT newbie@example.test {Password="n3w pass";RealName="New Bie";MaxAccountSize=10M;}'), undefined);
    const { client } = await server.login('newbie@example.test', 'n3w pass');
    await ok(client, '<noop/>');
    assert.equal(await run(root, 'GETACCOUNTSETTINGS newbie@example.test'), '{MaxAccountSize=10M;RealName="New Bie";}');
    const listed = readValue((await ok(root, cli('LISTACCOUNTS example.test', 'xml'))).messages[0]!);
    assert.equal((listed as Record<string, string>).newbie, 'macnt');
    await fails(root, cli('CREATEACCOUNT newbie@example.test {Password=x1234567;}'), /exists/);
    await run(root, 'DELETEACCOUNT newbie@example.test');
    assert.equal(await server.services.accounts.find('newbie@example.test'), undefined);
    await fails(root, cli('DELETEACCOUNT newbie@example.test'), 'unknown account');
  });

  test('CREATEACCOUNT refuses without a password and with a bad setting, creating nothing', async () => {
    await fails(root, cli('CREATEACCOUNT nopass@example.test'), /Password setting is required/);
    await fails(root, cli('CREATEACCOUNT badset@example.test {Password=abcdefgh;MaxAccountSize=lots;}'), /bad value for MaxAccountSize/);
    assert.equal(await server.services.accounts.find('badset@example.test'), undefined);
    await fails(root, cli('CREATEACCOUNT x@nowhere.test {Password=abcdefgh;}'), 'unknown domain nowhere.test');
  });

  test('UPDATEACCOUNTSETTINGS and GETACCOUNTEFFECTIVESETTINGS; default removes a setting', async () => {
    const address = await server.newAccount('settings');
    await run(root, `UPDATEACCOUNTSETTINGS ${address} {PWDAllowed=No;MaxWebFiles=7;}`);
    const effective = readValue((await ok(root, cli(`GETACCOUNTEFFECTIVESETTINGS ${address}`, 'xml'))).messages[0]!) as Record<string, string>;
    assert.equal(effective.PWDAllowed, 'No');
    assert.equal(effective.MaxWebFiles, '7');
    assert.equal(effective.RulesAllowed !== undefined, true, 'defaults are there too');
    await run(root, `UPDATEACCOUNTSETTINGS ${address} {MaxWebFiles=default;}`);
    assert.equal(await run(root, `GETACCOUNTSETTINGS ${address}`), '{PWDAllowed=No;}');
    await fails(root, cli(`UPDATEACCOUNTSETTINGS ${address} {NoSuchKey=1;}`), /unknown setting NoSuchKey/);
  });

  test('SETACCOUNTPASSWORD changes the password (and the old one stops working)', async () => {
    const address = await server.newAccount('passwd');
    await run(root, `SETACCOUNTPASSWORD ${address} PASSWORD "brand new"`);
    const { client } = await server.login(address, 'brand new');
    await ok(client, '<noop/>');
    await assert.rejects(server.login(address, 'secret'));
    await fails(root, cli(`SETACCOUNTPASSWORD ${address} "brand new"`), /needs the keyword PASSWORD/);
    // The password never reaches the log.
    assert.ok(!JSON.stringify(logged.events('cli.execute')).includes('brand new'));
    assert.ok(logged.events('cli.execute').some((r) => r.command === 'SETACCOUNTPASSWORD' && r.account === 'root@example.test'));
  });

  test('GETACCOUNTINFO: all, one KEY, a list of keys; numbers and dates in their CLI forms', async () => {
    const address = await server.newAccount('info');
    const all = await run(root, `GETACCOUNTINFO ${address}`);
    assert.match(all!, /Created=#T\d\d-\d\d-\d{4}_\d\d:\d\d:\d\d;/);
    assert.match(all!, /StorageUsed=#\d+;/);
    assert.match((await run(root, `GETACCOUNTINFO ${address} Key StorageUsed`))!, /^#\d+$/);
    assert.equal(await run(root, `GETACCOUNTINFO ${address} Key NoSuchKey`), undefined);
    const some = readValue((await ok(root, cli(`GETACCOUNTINFO ${address} (Created,storageused)`, 'xml'))).messages[0]!) as Record<string, string>;
    assert.deepEqual(Object.keys(some), ['Created', 'StorageUsed']);
    assert.match(some.Created!, /^\d{8}T\d{6}$/);
  });

  test('RENAMEACCOUNT says it is not supported', async () => {
    const address = await server.newAccount('rename');
    await fails(root, cli(`RENAMEACCOUNT ${address} into other@example.test`), /RENAMEACCOUNT is not supported/);
  });
});

describe('cliExecute: preferences and mailboxes', () => {
  test('UPDATEACCOUNTPREFS, GETACCOUNTPREFS, GETACCOUNTEFFECTIVEPREFS', async () => {
    const address = await server.newAccount('prefs');
    await run(root, `UPDATEACCOUNTPREFS ${address} {TimeZone=Europe/Berlin;}`);
    // A string that is not a plain word comes back quoted.
    assert.equal(await run(root, `GETACCOUNTPREFS ${address}`), '{TimeZone="Europe/Berlin";}');
    const effective = readValue((await ok(root, cli(`GETACCOUNTEFFECTIVEPREFS ${address}`, 'xml'))).messages[0]!) as Record<string, string>;
    assert.equal(effective.TimeZone, 'Europe/Berlin');
    await run(root, `UPDATEACCOUNTPREFS ${address} {TimeZone=default;}`);
    assert.equal(await run(root, `GETACCOUNTPREFS ${address}`), '{}');
    // The session of the account sees the change.
    const { client } = await server.login(address, 'secret');
    await run(root, `UPDATEACCOUNTPREFS ${address} {Language=German;}`);
    const prefs = (await ok(client, '<prefsRead><name>Language</name></prefsRead>')).messages[0]!;
    assert.equal(prefs.elements('Language')[0]?.text(), 'German');
  });

  test('GETACCOUNTMAILRULES: the rules the account wrote, in the CLI form', async () => {
    const address = await server.newAccount('rules');
    const { client } = await server.login(address, 'secret');
    const rule = el('ruleSet', { type: 'mailIn', name: 'Junk', priority: '7' });
    rule.add('condition', { opCode: 'Subject', operator: 'is' }, '*sale*');
    rule.add('action', { opCode: 'Store in' }, 'Junk');
    await ok(client, rule);
    assert.equal(await run(root, `GETACCOUNTMAILRULES ${address}`), '((#7,Junk,((Subject,is,"*sale*")),(("Store in",Junk))))');
    assert.equal(await run(client, `GETACCOUNTMAILRULES ${address}`), '((#7,Junk,((Subject,is,"*sale*")),(("Store in",Junk))))', 'its own');
    assert.equal(await run(root, `GETACCOUNTSIGNALRULES ${address}`), '()');
  });

  test('BALANCE: credit, charge, read, history; the account reads its own and changes nothing', async () => {
    const address = await server.newAccount('balance');
    assert.match((await run(root, `BALANCE ${address} {op=credit;amount=500;description="top up";}`))!, /^\{balance=USD;amount=#500;id=#\d+;repeated=no;\}$/);
    await run(root, `BALANCE ${address} {op=charge;amount=120;}`);
    assert.equal(await run(root, `BALANCE ${address} {op=read;}`), '{balance=USD;amount=#380;}');
    await fails(root, cli(`BALANCE ${address} {op=charge;amount=1000;}`), /insufficient funds/);
    const history = readValue((await ok(root, cli(`BALANCE ${address} {op=history;}`, 'xml'))).messages[0]!) as { records: Record<string, string>[] };
    assert.deepEqual(
      history.records.map((r) => [r.amount, r.description]),
      [
        ['-120', ''],
        ['500', 'top up'],
      ],
    );
    const { client } = await server.login(address, 'secret');
    assert.equal(await run(client, `BALANCE ${address} {op=readAll;}`), '{USD=#380;}');
    await fails(client, cli(`BALANCE ${address} {op=credit;amount=5;}`), /access denied/);
    await fails(root, cli(`BALANCE ${address} {op=reserve;}`), /unknown billing operation "reserve"/);
    await fails(root, cli(`BALANCE ${address} {op=read;amount=1;}`), /unknown parameter "amount" for read/);
  });

  test('CREATEMAILBOX, LISTMAILBOXES (with FILTER), RENAMEMAILBOX, DELETEMAILBOX', async () => {
    const address = await server.newAccount('boxes');
    await run(root, `CREATEMAILBOX ${address} Projects`);
    const list = readValue((await ok(root, cli(`LISTMAILBOXES ${address}`, 'xml'))).messages[0]!) as Record<string, Record<string, string>>;
    assert.deepEqual(Object.keys(list).sort(), ['INBOX', 'Projects']);
    assert.equal(list.INBOX!.Messages, '0');
    assert.match((await run(root, `LISTMAILBOXES ${address} FILTER Pro*`))!, /^\{Projects=\{Messages=#0;Unseen=#0;Size=#0;\};\}$/);
    await run(root, `RENAMEMAILBOX ${address} Projects into Archive`);
    assert.deepEqual(Object.keys(readValue((await ok(root, cli(`LISTMAILBOXES ${address}`, 'xml'))).messages[0]!) as object).sort(), ['Archive', 'INBOX']);
    await run(root, `DELETEMAILBOX ${address} Archive`);
    await fails(root, cli(`DELETEMAILBOX ${address} Archive`));
  });
});

describe('cliExecute: domains and the server', () => {
  test('CREATEDOMAIN with settings, LISTDOMAINS, GETDOMAINSETTINGS, UPDATEDOMAINSETTINGS, DELETEDOMAIN', async () => {
    await run(root, 'CREATEDOMAIN fresh.test {SignupAllowed=Yes;}');
    const domains = readValue((await ok(root, cli('LISTDOMAINS', 'xml'))).messages[0]!) as string[];
    assert.ok(domains.includes('fresh.test') && domains.includes('example.test'));
    assert.match((await run(root, 'GETDOMAINSETTINGS fresh.test'))!, /SignupAllowed=Yes;/);
    await run(root, 'UPDATEDOMAINSETTINGS fresh.test {SignupAllowed=No;}');
    assert.match((await run(root, 'GETDOMAINSETTINGS fresh.test'))!, /SignupAllowed=No;/);
    await fails(root, cli('CREATEDOMAIN fresh.test'), /already exists/);
    await run(root, 'DELETEDOMAIN fresh.test');
    await fails(root, cli('GETDOMAINSETTINGS fresh.test'), 'unknown domain fresh.test');
  });

  test('account defaults and default preferences of a domain', async () => {
    await run(root, 'UPDATEACCOUNTDEFAULTS other.test {MaxWebFiles=42;}');
    assert.equal(await run(root, 'GETACCOUNTDEFAULTS other.test'), '{MaxWebFiles=42;}');
    const address = await server.newAccount('defaulted', { domain: 'other.test' });
    const effective = readValue((await ok(root, cli(`GETACCOUNTEFFECTIVESETTINGS ${address}`, 'xml'))).messages[0]!) as Record<string, string>;
    assert.equal(effective.MaxWebFiles, '42');
    await fails(root, cli('UPDATEACCOUNTDEFAULTS other.test {SignupAllowed=Yes;}'), /not an account setting/);
    await run(postmaster, 'UPDATEACCOUNTDEFAULTPREFS other.test {Language=French;}');
    assert.equal(await run(postmaster, 'GETACCOUNTDEFAULTPREFS'), '{Language=French;}');
  });

  test('MAINDOMAINNAME, GETCURRENTTIME, GETSYSTEMINFO, GETSERVERINFO, NOOP', async () => {
    assert.equal(await run(root, 'MainDomainName'), 'example.test');
    assert.match((await run(root, 'GETCURRENTTIME'))!, /^#T\d\d-\d\d-\d{4}_\d\d:\d\d:\d\d$/);
    assert.match((await run(root, 'GETSYSTEMINFO serverVersion'))!, /\d/);
    await fails(root, cli('GETSYSTEMINFO nothing'), /unknown system information/);
    assert.match((await run(root, 'GETSERVERINFO'))!, /mainDomainName=example.test;/);
    assert.equal(await run(root, 'NOOP'), undefined);
  });
});

describe('cliExecute: rights', () => {
  test('a domain administrator runs account commands in its own domain only', async () => {
    const inOther = await server.newAccount('pmtarget', { domain: 'other.test' });
    const inExample = await server.newAccount('foreign');
    await run(postmaster, `SETACCOUNTALIASES ${inOther} (pm-alias)`);
    assert.equal(await run(postmaster, `GETACCOUNTALIASES ${inOther.split('@')[0]}`), '(pm-alias)', 'a bare name is in its own domain');
    assert.match((await run(postmaster, 'LISTACCOUNTS'))!, /postmaster=macnt;/);
    await fails(postmaster, cli(`GETACCOUNTALIASES ${inExample}`), 'access denied');
    await fails(postmaster, cli('LISTACCOUNTS example.test'), 'access denied');
    await fails(postmaster, cli('LISTDOMAINS'), 'access denied');
    await fails(postmaster, cli('CREATEDOMAIN pm.test'), 'access denied');
    await fails(postmaster, cli('CREATEACCOUNT x@example.test {Password=abcdefgh;}'), 'access denied');
    // Unknown accounts in another domain are not told apart from existing ones.
    await fails(postmaster, cli('GETACCOUNTSETTINGS nobody@example.test'), 'access denied');
    await fails(postmaster, cli('GETACCOUNTSETTINGS nobody@other.test'), 'unknown account');
  });

  test('a domain administrator cannot take over a server administrator of its domain, nor create one', async () => {
    await server.addAccount('chief@other.test', 'chiefpw');
    for (const command of ['SETACCOUNTPASSWORD chief PASSWORD taken1234', 'UPDATEACCOUNTSETTINGS chief {RealName=x;}', 'DELETEACCOUNT chief@other.test', 'SETACCOUNTALIASES chief (c2)', 'GETACCOUNTSETTINGS chief']) {
      await fails(postmaster, cli(command), 'access denied');
    }
    await fails(postmaster, cli('CREATEACCOUNT future {Password=abcdefgh;}'), 'access denied');
    await fails(postmaster, cli('CREATEACCOUNT FUTURE@other.test {Password=abcdefgh;}'), 'access denied');
    (await server.login('chief@other.test', 'chiefpw')).client.close();
    // A server administrator still may.
    await run(root, 'SETACCOUNTPASSWORD chief@other.test PASSWORD chiefpw2');
    (await server.login('chief@other.test', 'chiefpw2')).client.close();
  });

  test('an ordinary account reads its own data only, and administers nothing', async () => {
    const address = await server.newAccount('plain');
    const other = await server.newAccount('neighbour');
    const { client } = await server.login(address, 'secret');
    assert.equal(await run(client, `GETACCOUNTALIASES ${address}`), '()');
    assert.equal(await run(client, `GETACCOUNTSETTINGS ${address}`), '{}');
    assert.match((await run(client, `LISTMAILBOXES ${address}`))!, /INBOX=/);
    await fails(client, cli(`GETACCOUNTSETTINGS ${other}`), 'access denied');
    await fails(client, cli(`SETACCOUNTALIASES ${address} (mine)`), 'access denied');
    await fails(client, cli(`UPDATEACCOUNTSETTINGS ${address} {MaxAccountSize=unlimited;}`), 'access denied');
    await fails(client, cli('LISTACCOUNTS'), 'access denied');
    await fails(client, cli('GETSYSTEMINFO serverVersion'), 'access denied');
  });
});

describe('cliExecute: errors', () => {
  test('unknown command, bad syntax, missing and extra arguments, missing objects', async () => {
    await fails(root, cli('FROBNICATE x'), 'unknown command FROBNICATE');
    await fails(root, cli(''), /CLI syntax error: the command is missing/);
    await fails(root, cli('GETACCOUNTALIASES "unterminated'), /CLI syntax error: unterminated string/);
    await fails(root, cli('SETACCOUNTALIASES root@example.test (a,b'), /CLI syntax error/);
    await fails(root, cli('(a,b)'), /CLI syntax error: a command name expected/);
    await fails(root, cli('GETACCOUNTALIASES'), /CLI syntax error: GETACCOUNTALIASES needs an account name/);
    await fails(root, cli('GETACCOUNTALIASES root@example.test extra'), /unexpected argument 2/);
    await fails(root, cli('SETACCOUNTALIASES root@example.test notAnArray'), /must be an array of strings/);
    await fails(root, cli('GETACCOUNTALIASES nobody@example.test'), 'unknown account');
    await fails(root, cli('GETDOMAINSETTINGS nowhere.test'), 'unknown domain nowhere.test');
    await fails(root, cli('DELETEACCOUNT root@example.test'), /cannot delete itself/);
    // Any report but "xml" is the text presentation (the spec).
    const other = await ok(root, el('cliExecute', { report: 'html' }, 'MAINDOMAINNAME'));
    assert.equal(other.messages[0]?.text(), 'example.test');
    await fails(root, '<cliExecute><x/></cliExecute>', /must be text/);
    // The server still answers.
    assert.equal(await run(root, 'MAINDOMAINNAME'), 'example.test');
    assert.ok(logged.events('cli.execute').some((r) => r.command === 'FROBNICATE' && r.ok === false));
  });
});
