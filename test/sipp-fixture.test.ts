/**
 * A smoke test of the SIPp fixture (test/fixtures/sipp.ts) and the bench's scenarios, with
 * no server in between: the SIPp client of bench/sip/uac.xml calls the SIPp server of
 * bench/sip/uas.xml directly on loopback, and the numbers parsed from SIPp's statistics
 * must be those of the calls placed. The Digest answers of register.xml and uac.xml, checked
 * by SIPp servers (written here) with SIPp's verifyauth; a refused call's status line. Also the
 * parsers on their own: the statistics CSV (made up here in SIPp's layout) and the error
 * file's unexpected messages. SIPp is installed when missing; without it the SIPp runs are
 * skipped with the reason.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ensureSipp, parseSippStats, runSipp, startSipp, unexpectedMessages, writeScenario } from './fixtures/sipp.js';
import { freePort } from '../bench/lib/proc.js';
import { registerCallee } from '../bench/lib/sip-servers.js';

const SCENARIOS = fileURLToPath(new URL('../bench/sip/', import.meta.url));
const availability = await ensureSipp();
const skip = availability.available ? false : availability.reason;

describe('SIPp fixture', () => {
  it('parses the last row of a statistics file, by column name', () => {
    const header = 'StartTime;CurrentTime;ElapsedTime(C);CallRate(C);TotalCallCreated;CurrentCall;SuccessfulCall(C);FailedCall(C);FailedTimeoutOnRecv(C);FailedUnexpectedMessage(C);Retransmissions(C);ResponseTime1(C);';
    const start = 'd\tt\t1000.000000';
    const csv = [
      header,
      `${start};d\tt\t1000.900000;00:00:00;9.5;10;4;6;0;0;0;0;00:00:00:002000;`,
      `${start};d\tt\t1001.950000;00:00:01;9.75;20;4;13;3;2;1;5;00:00:00:003500;`,
      `${start};d\tt\t1002.250000;00:00:02;9.75;20;0;17;3;2;1;5;00:00:00:003500;`,
      '',
    ].join('\n');
    const stats = parseSippStats(csv);
    assert.equal(stats.created, 20);
    assert.equal(stats.successful, 17);
    assert.equal(stats.failed, 3);
    assert.deepEqual(stats.failedBy, { FailedTimeoutOnRecv: 2, FailedUnexpectedMessage: 1 });
    assert.equal(stats.retransmissions, 5);
    assert.equal(stats.elapsedSeconds, 2);
    assert.equal(stats.responseTime1Ms, 3.5);
    assert.ok(Math.abs(stats.placingSeconds - 1.95) < 1e-6, `placing ${stats.placingSeconds}`);
    assert.throws(() => parseSippStats(header), /no data row/);
  });

  it('counts the unexpected messages of aborted calls, not those of dead calls', () => {
    const log = [
      "t: Aborting call on unexpected message for Call-Id '1@h': while expecting '200' (index 5), received 'SIP/2.0 501 Not Implemented\r\nVia: x\r\n'",
      "t: Aborting call on unexpected message for Call-Id '2@h': while expecting '200' (index 5), received 'SIP/2.0 501 Not Implemented\r\n'",
      "t: Aborting call on unexpected message for Call-Id '3@h': while expecting 'ACK' (index 3), received 'BYE sip:b@127.0.0.1:5062 SIP/2.0\r\n'",
      "t: Dead call 4@h (aborted at index 14), received 'SIP/2.0 481 Call Does Not Exist\r\n'",
    ].join('');
    assert.deepEqual(unexpectedMessages(log), ['501 Not Implemented × 2', 'BYE request']);
  });

  it('runs a SIPp client against a SIPp server and reads the calls back', { skip, timeout: 60_000 }, async () => {
    const port = await freePort();
    const uas = await startSipp({ scenario: join(SCENARIOS, 'uas.xml'), port, args: ['-mp', String(await freePort())] });
    try {
      await new Promise((resolve) => setTimeout(resolve, 300));
      const calls = 20;
      const result = await runSipp({
        scenario: join(SCENARIOS, 'uac.xml'),
        remote: `127.0.0.1:${port}`,
        keys: { domain: 'example.test' },
        args: ['-s', 'bench', '-r', '20', '-m', String(calls), '-d', '100', '-recv_timeout', '5000', '-mp', String(await freePort())],
        timeoutMs: 30_000,
      });
      assert.equal(result.exitCode, 0, result.output);
      assert.ok(result.stats);
      assert.equal(result.stats.created, calls);
      assert.equal(result.stats.successful, calls);
      assert.equal(result.stats.failed, 0);
      assert.deepEqual(result.unexpected, []);
      assert.ok(result.stats.responseTime1Ms !== undefined && result.stats.responseTime1Ms < 1000);
    } finally {
      const server = await uas.stop(500);
      assert.ok((server.stats?.created ?? 0) >= 20, 'the server saw the calls');
    }
  });

  it('says what a peer that refuses the call answered', { skip, timeout: 60_000 }, async () => {
    // A one-message server that answers every INVITE with 486 Busy Here.
    const busy = writeScenario(
      'busy',
      `<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="busy">
  <recv request="INVITE"/>
  <send>
    <![CDATA[

      SIP/2.0 486 Busy Here
      [last_Via:]
      [last_From:]
      [last_To:];tag=busy[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <recv request="ACK"/>
</scenario>
`,
    );
    const port = await freePort();
    const uas = await startSipp({ scenario: busy, port });
    try {
      await new Promise((resolve) => setTimeout(resolve, 300));
      const result = await runSipp({
        scenario: join(SCENARIOS, 'uac.xml'),
        remote: `127.0.0.1:${port}`,
        keys: { domain: 'example.test' },
        args: ['-s', 'bench', '-r', '10', '-m', '2', '-recv_timeout', '3000', '-mp', String(await freePort())],
        timeoutMs: 30_000,
      });
      assert.equal(result.stats?.failed, 2);
      assert.deepEqual(result.unexpected, ['486 Busy Here × 2']);
    } finally {
      await uas.stop(500);
    }
  });

  it('answers a Digest challenge to the REGISTER, checked by a SIPp server', { skip, timeout: 60_000 }, async () => {
    // The server challenges, then checks the answer with SIPp's verifyauth (MD5, the only
    // algorithm SIPp has) and answers 200 only when it holds; a wrong password gets 403.
    const challenging = writeScenario(
      'challenging',
      `<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="challenging">
  <recv request="REGISTER"/>
  <send><![CDATA[

      SIP/2.0 401 Unauthorized
      [last_Via:]
      [last_From:]
      [last_To:];tag=reg[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      WWW-Authenticate: Digest realm="example.test", nonce="n[call_number]r", algorithm=MD5
      Content-Length: 0

    ]]></send>
  <recv request="REGISTER">
    <action><verifyauth assign_to="good" username="bench" password="secret-1"/></action>
  </recv>
  <nop test="good" next="registered"/>
  <send next="end"><![CDATA[

      SIP/2.0 403 Forbidden
      [last_Via:]
      [last_From:]
      [last_To:];tag=reg[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]></send>
  <label id="registered"/>
  <send next="end"><![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=reg[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]></send>
  <label id="end"/>
</scenario>
`,
    );
    const port = await freePort();
    const registrar = await startSipp({ scenario: challenging, port });
    try {
      await new Promise((resolve) => setTimeout(resolve, 300));
      const register = (password: string) =>
        runSipp({
          scenario: join(SCENARIOS, 'register.xml'),
          remote: `127.0.0.1:${port}`,
          keys: { domain: 'example.test', user: 'bench', contact_port: 5999 },
          args: ['-m', '1', '-au', 'bench', '-ap', password, '-recv_timeout', '3000'],
          timeoutMs: 20_000,
        });
      const good = await register('secret-1');
      assert.equal(good.stats?.successful, 1, good.output);
      const bad = await register('wrong');
      assert.equal(bad.stats?.failed, 1);
      assert.deepEqual(bad.unexpected, ['403 Forbidden']);
    } finally {
      await registrar.stop(500);
    }
  });

  it('answers a 401 to the INVITE with an authenticated INVITE (the call then goes on)', { skip, timeout: 60_000 }, async () => {
    // As above, for the INVITE (verifyauth reads Authorization, so a 401 rather than a proxy's
    // 407: uac.xml answers both the same way).
    const inviteAuth = writeScenario(
      'invite-auth',
      `<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="invite-auth">
  <recv request="INVITE"/>
  <send><![CDATA[

      SIP/2.0 401 Unauthorized
      [last_Via:]
      [last_From:]
      [last_To:];tag=p[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      WWW-Authenticate: Digest realm="example.test", nonce="n[call_number]i", algorithm=MD5
      Content-Length: 0

    ]]></send>
  <recv request="ACK"/>
  <recv request="INVITE">
    <action><verifyauth assign_to="good" username="bench" password="secret-1"/></action>
  </recv>
  <nop test="good" next="answer"/>
  <send next="end"><![CDATA[

      SIP/2.0 403 Forbidden
      [last_Via:]
      [last_From:]
      [last_To:];tag=p[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]></send>
  <label id="answer"/>
  <send retrans="500"><![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=p[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:bench@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=bench 1 1 IN IP4 [local_ip]
      s=-
      c=IN IP4 [local_ip]
      t=0 0
      m=audio 9 RTP/AVP 0

    ]]></send>
  <recv request="ACK"/>
  <recv request="BYE"/>
  <send><![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]></send>
  <label id="end"/>
</scenario>
`,
    );
    const port = await freePort();
    const server = await startSipp({ scenario: inviteAuth, port });
    try {
      await new Promise((resolve) => setTimeout(resolve, 300));
      const result = await runSipp({
        scenario: join(SCENARIOS, 'uac.xml'),
        remote: `127.0.0.1:${port}`,
        keys: { domain: 'example.test' },
        args: ['-s', 'bench', '-au', 'bench', '-ap', 'secret-1', '-m', '1', '-d', '100', '-recv_timeout', '3000', '-mp', String(await freePort())],
        timeoutMs: 20_000,
      });
      assert.equal(result.stats?.successful, 1, result.output);
      const answered = await server.stop(1000);
      assert.equal(answered.stats?.successful, 1);
    } finally {
      await server.stop(500);
    }
  });

  it('says why SIPp cannot register with a server that offers SHA-256 Digest first', { skip, timeout: 60_000 }, async () => {
    // RFC 8760's order (ximssd's default): SHA-256, then MD5. SIPp 3.6 takes the first and knows only MD5.
    const twoChallenges = writeScenario(
      'two-challenges',
      `<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="two-challenges">
  <recv request="REGISTER"/>
  <send><![CDATA[

      SIP/2.0 401 Unauthorized
      [last_Via:]
      [last_From:]
      [last_To:];tag=reg[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      WWW-Authenticate: Digest realm="example.test", nonce="s[call_number]", algorithm=SHA-256, qop="auth"
      WWW-Authenticate: Digest realm="example.test", nonce="m[call_number]", algorithm=MD5, qop="auth"
      Content-Length: 0

    ]]></send>
</scenario>
`,
    );
    const port = await freePort();
    const registrar = await startSipp({ scenario: twoChallenges, port });
    try {
      await new Promise((resolve) => setTimeout(resolve, 300));
      const why = await registerCallee({ name: 'ximssd', pid: registrar.pid, port, stop: async () => {} }, 5999);
      assert.match(why ?? '', /^SIPp cannot answer ximssd's Digest challenge to REGISTER: .*MD5/);
    } finally {
      await registrar.stop(500);
    }
  });
});
