/**
 * SIPp (Debian's sip-tester) against the server, with the benchmark's scenarios
 * (bench/sip/*.xml): a SIPp server registers to an account with Digest authentication, then a
 * SIPp client places calls to it through the server (INVITE, 100/180/200, ACK, a short hold,
 * BYE), from another domain and from one of ours (the INVITE answered 407 and sent again with
 * credentials). Every call must set up and tear down, and the server must end with no call
 * left. Skipped only when SIPp cannot be installed, with the reason.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { ensureSipp, runSipp, startSipp, writeScenario, type SippProcess } from './fixtures/sipp.js';
import { eventually, freePort, freeSipPort, startTestServer, type TestServer } from './helpers.js';

const SCENARIOS = fileURLToPath(new URL('../bench/sip/', import.meta.url));
const availability = await ensureSipp();
const skip = availability.available ? false : availability.reason;

describe('SIPp registers and calls through the server', { skip }, () => {
  let server: TestServer;
  let uas: SippProcess;
  let sipPort: number;
  let callee: string;
  const domain = 'example.test';

  before(async () => {
    sipPort = await freeSipPort();
    server = await startTestServer({ ports: { sip: sipPort } });
    callee = await server.newAccount('sipp', { password: 'sipp-secret' });
    const uasPort = await freePort();
    uas = await startSipp({ scenario: join(SCENARIOS, 'uas.xml'), port: uasPort, args: ['-mp', String(await freePort())] });
    await sleep(300);
    const registered = await runSipp({
      scenario: join(SCENARIOS, 'register.xml'),
      remote: `127.0.0.1:${sipPort}`,
      keys: { domain, user: callee.split('@')[0]!, contact_port: uasPort },
      args: ['-m', '1', '-au', callee.split('@')[0]!, '-ap', 'sipp-secret', '-auth_uri', domain, '-recv_timeout', '5000'],
      timeoutMs: 20_000,
    });
    assert.equal(registered.stats?.successful, 1, `REGISTER: ${registered.unexpected.join('; ')} ${registered.output.slice(-500)}`);
  });

  after(async () => {
    await uas?.stop();
    await server?.stop();
  });

  test('the registration is in the store, with the SIPp server as its Contact', async () => {
    const account = await server.services.accounts.find(callee);
    const bindings = await server.services.store.registrations.list(account!.id, Date.now());
    assert.equal(bindings.length, 1);
    assert.match(bindings[0]!.contact, /@127\.0\.0\.1:\d+/);
  });

  test('calls from another domain: every one sets up and tears down', async () => {
    const result = await runSipp({
      scenario: join(SCENARIOS, 'uac.xml'),
      remote: `127.0.0.1:${sipPort}`,
      keys: { domain },
      args: ['-s', callee.split('@')[0]!, '-r', '10', '-m', '20', '-d', '200', '-recv_timeout', '5000', '-mp', String(await freePort())],
      timeoutMs: 60_000,
    });
    assert.equal(result.stats?.successful, 20, `${JSON.stringify(result.stats)} ${result.unexpected.join('; ')}`);
    assert.equal(result.stats?.failed, 0);
    await eventually(() => server.services.calls.active === 0, 'no call left on the server');
  });

  test('calls from one of our users: the INVITE is challenged (407) and sent again with credentials', async () => {
    const caller = await server.newAccount('sippcaller', { password: 'caller-secret' });
    const user = caller.split('@')[0]!;
    // The benchmark's caller, as a user of our domain.
    const scenario = readFileSync(join(SCENARIOS, 'uac.xml'), 'utf8').replaceAll('caller@caller.invalid', `${user}@[domain]`);
    const result = await runSipp({
      scenario: writeScenario('uac-local', scenario),
      remote: `127.0.0.1:${sipPort}`,
      keys: { domain },
      args: ['-s', callee.split('@')[0]!, '-au', user, '-ap', 'caller-secret', '-auth_uri', callee, '-r', '5', '-m', '5', '-d', '200', '-recv_timeout', '5000', '-mp', String(await freePort())],
      timeoutMs: 60_000,
    });
    assert.equal(result.stats?.successful, 5, `${JSON.stringify(result.stats)} ${result.unexpected.join('; ')} ${result.output.slice(-800)}`);
    await eventually(() => server.services.calls.active === 0, 'no call left on the server');
  });
});
