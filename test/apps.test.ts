/**
 * Real-time applications (spec "Real-Time Application Management", the Russian text's runScript
 * and callHelper; src/services/apps/): XIMSS sessions start tasks, exchange events with them,
 * meet them through meetings, run scripts and helpers; calls routed to an application start a
 * task that answers, plays, collects keys and records. The test application is
 * test/fixtures/apps/echo.ts; the shipped ones (voicemail, conference) have their own cases.
 * Every exchange is over a real XIMSS connection; calls carry RTP to UDP sockets of the test.
 */
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { decodeUlaw, encodeUlaw } from '../src/media/g711.js';
import { writeRtpHeader } from '../src/media/rtp.js';
import { readWav } from '../src/media/wav.js';
import type { XmlElement } from '../src/xml/element.js';
import { readValue } from '../src/xml/objects.js';
import { eventually, ok, fails, startTestServer, storedMessages, type TestServer, type XimssClient } from './helpers.js';

const APPS = fileURLToPath(new URL('./fixtures/apps/', import.meta.url));

let server: TestServer;

before(async () => {
  server = await startTestServer({
    ports: { ximss: 0, http: 0, smtp: 0, xmpp: 0, sip: 0 },
    apps: { directory: APPS, tasksPerAccount: 6 },
    calls: {
      callsPerAccount: 3,
      applicationRoutes: [
        { address: 'ivr-*@example.test', account: 'pbx@example.test', program: 'echo' },
        { address: 'conf-*@example.test', account: 'pbx@example.test', program: 'conference' },
      ],
    },
  });
  await server.services.accounts.create({ address: 'pbx@example.test', password: 'secret', createDomain: true }).catch(() => {});
});
after(() => server.stop());

async function user(name: string): Promise<{ address: string; client: XimssClient; urlID: string }> {
  const address = await server.newAccount(name);
  const { client, urlID } = await server.login(address, 'secret');
  return { address, client, urlID };
}

const event = (client: XimssClient, name: string, timeoutMs = 10_000): Promise<XmlElement> => client.takeAsync('taskEvent', (m) => m.attrs.eventName === name, timeoutMs);

describe('tasks and events', () => {
  it('taskStart runs an entry, whose events reach the session with a taskRef; taskSendEvent reaches the task; taskClose forgets the ref', async () => {
    const { client } = await user('tasks1');
    const started = await ok(client, '<taskStart programName="echo"><param>first</param><param>second</param></taskStart>');
    const ref = started.messages[0]!.attrs.taskRef!;
    assert.equal(started.messages[0]!.name, 'taskCreated');
    assert.ok(ref);
    const hello = await event(client, 'started');
    assert.equal(hello.attrs.taskRef, ref, 'the task is known by the ref taskStart gave');
    assert.deepEqual(readValue(hello), ['first', 'second']);
    // A dictionary goes there and comes back.
    await ok(client, `<taskSendEvent taskRef="${ref}" eventName="ping"><subKey key="n">1</subKey><subKey key="list"><subValue>a</subValue><subValue>b &amp; c</subValue></subKey></taskSendEvent>`);
    const pong = await event(client, 'ping');
    assert.equal(pong.attrs.taskRef, ref);
    assert.deepEqual(readValue(pong), { n: '1', list: ['a', 'b & c'] });
    // Text, and nothing.
    await ok(client, `<taskSendEvent taskRef="${ref}" eventName="text">hello there</taskSendEvent>`);
    assert.equal((await event(client, 'text')).text(), 'hello there');
    await ok(client, `<taskSendEvent taskRef="${ref}" eventName="empty"/>`);
    assert.equal((await event(client, 'empty')).children.length, 0);
    // taskClose: the ref is gone; the task heard again gets a new one.
    await ok(client, `<taskClose taskRef="${ref}"/>`);
    await fails(client, `<taskSendEvent taskRef="${ref}" eventName="x"/>`, 'unknown taskRef');
    await fails(client, `<taskClose taskRef="${ref}"/>`, 'unknown taskRef');
  });

  it('a task that has ended is not found; a broken entry ends its task; unknown programs and entries are refused', async () => {
    const { client } = await user('tasks2');
    const ref = (await ok(client, '<taskStart programName="echo"/>')).messages[0]!.attrs.taskRef!;
    await event(client, 'started');
    await ok(client, `<taskSendEvent taskRef="${ref}" eventName="stop"/>`);
    await eventually(async () => (await client.request(`<taskSendEvent taskRef="${ref}" eventName="x"/>`)).response.attrs.errorText === 'task not found', 'the ended task is not found');
    await ok(client, '<taskStart programName="echo" entryName="broken"/>');
    await fails(client, '<taskStart programName="nope"/>', 'unknown application: nope');
    await fails(client, '<taskStart programName="echo" entryName="nope"/>', 'the application echo has no entry nope');
    await fails(client, '<taskStart programName="echo" entryName="toString"/>', /no entry toString/);
    await fails(client, '<taskStart/>', /programName/);
    await fails(client, '<taskSendEvent taskRef="1" eventName=""/>', /eventName/);
  });

  it('an account runs at most apps.tasksPerAccount tasks at once; /metrics counts the running tasks', async () => {
    const { client } = await user('tasks3');
    const running = async (): Promise<number> => {
      const text = await (await fetch(`http://127.0.0.1:${server.ports.http}/metrics`)).text();
      return Number(/^ximssd_app_tasks (\d+)$/m.exec(text)?.[1] ?? NaN);
    };
    const refs: string[] = [];
    for (let i = 0; i < 6; i++) refs.push((await ok(client, '<taskStart programName="echo"/>')).messages[0]!.attrs.taskRef!);
    // Tasks of other tests may run or end meanwhile: at least these six run.
    assert.ok((await running()) >= 6);
    await fails(client, '<taskStart programName="echo"/>', 'an account may run 6 tasks at once');
    for (const ref of refs) await ok(client, `<taskSendEvent taskRef="${ref}" eventName="stop"/>`);
    await eventually(async () => (await client.request('<taskStart programName="echo"/>')).response.attrs.errorText === undefined, 'room for a task again');
  });

  it('an event parameter larger than the limit is refused, the task goes on', async () => {
    const { client } = await user('tasks4');
    const ref = (await ok(client, '<taskStart programName="echo"/>')).messages[0]!.attrs.taskRef!;
    await fails(client, `<taskSendEvent taskRef="${ref}" eventName="big">${'x'.repeat(70_000)}</taskSendEvent>`, /at most 65536 bytes/);
    await ok(client, `<taskSendEvent taskRef="${ref}" eventName="small">y</taskSendEvent>`);
    assert.equal((await event(client, 'small')).text(), 'y');
    await ok(client, `<taskSendEvent taskRef="${ref}" eventName="stop"/>`);
  });
});

describe('meetings', () => {
  it('create, find (parameter, expires), the exact errors; activation by a session and by a task; deactivate, clear, remove', async () => {
    const { address, client } = await user('meet1');
    await fails(client, '<taskFindMeeting meetingName="room"/>', 'meeting not found');
    await ok(client, '<taskCreateMeeting meetingName="room">the parameter</taskCreateMeeting>');
    await fails(client, '<taskCreateMeeting meetingName="room"/>', 'meeting already exists');
    const found = (await ok(client, '<taskFindMeeting meetingName="room"/>')).messages[0]!;
    assert.equal(found.name, 'taskMeeting');
    assert.equal(found.attrs.meetingSet, '');
    assert.equal(found.attrs.meetingName, 'room');
    assert.equal(found.attrs.taskRef, undefined, 'nobody activated it');
    assert.match(found.attrs.expires ?? '', /^\d{8}T\d{6}Z?$/);
    assert.equal(found.text(), 'the parameter');
    // Sets are separate: the same name in another set is another meeting.
    await fails(client, '<taskFindMeeting meetingSet="other" meetingName="room"/>', 'meeting not found');
    await ok(client, '<taskCreateMeeting meetingSet="other" meetingName="room"><subKey key="a">b</subKey></taskCreateMeeting>');
    assert.deepEqual(readValue((await ok(client, '<taskFindMeeting meetingSet="other" meetingName="room"/>')).messages[0]!), { a: 'b' });

    // The session activates it; a second session of the account cannot, nor deactivate it.
    await ok(client, '<taskActivateMeeting meetingName="room"/>');
    await fails(client, '<taskActivateMeeting meetingName="room"/>', 'meeting is already activated');
    const { client: second } = await server.login(address, 'secret');
    await fails(second, '<taskActivateMeeting meetingName="room"/>', 'meeting is already activated');
    await fails(second, '<taskDeactivateMeeting meetingName="room"/>', 'meeting is not activated by this task');
    // The second session finds the first through the meeting, and its event arrives there.
    const ref = (await ok(second, '<taskFindMeeting meetingName="room"/>')).messages[0]!.attrs.taskRef!;
    assert.ok(ref);
    await ok(second, `<taskSendEvent taskRef="${ref}" eventName="hello">from the second session</taskSendEvent>`);
    const hello = await event(client, 'hello');
    assert.equal(hello.text(), 'from the second session');
    assert.ok(hello.attrs.taskRef, 'the sender is known');
    await ok(client, '<taskDeactivateMeeting meetingName="room"/>');
    assert.equal((await ok(second, '<taskFindMeeting meetingName="room"/>')).messages[0]!.attrs.taskRef, undefined);
    // Clear takes anyone's activation; remove, and it is gone.
    await ok(client, '<taskActivateMeeting meetingName="room"/>');
    await ok(second, '<taskClearMeeting meetingName="room"/>');
    await ok(second, '<taskActivateMeeting meetingName="room"/>');
    // The session that holds it ends: the meeting is free.
    second.close();
    await eventually(async () => (await client.request('<taskFindMeeting meetingName="room"/>')).messages[0]?.attrs.taskRef === undefined, 'the meeting freed');
    await ok(client, '<taskRemoveMeeting meetingName="room"/>');
    await fails(client, '<taskRemoveMeeting meetingName="room"/>', 'meeting not found');
    await fails(client, '<taskActivateMeeting meetingName="room"/>', 'meeting not found');
    await fails(client, '<taskFindMeeting/>', /meetingName/);
    await fails(client, '<taskCreateMeeting meetingName="a&#9;b"/>', /control characters/);
  });

  it('a task activates a meeting; a session finds it there and its events reach the task; the task ends and the meeting is free', async () => {
    const { client } = await user('meet2');
    await ok(client, '<taskCreateMeeting meetingSet="echo" meetingName="desk"/>');
    const ref = (await ok(client, '<taskStart programName="echo"/>')).messages[0]!.attrs.taskRef!;
    await ok(client, `<taskSendEvent taskRef="${ref}" eventName="activate">desk</taskSendEvent>`);
    assert.equal((await event(client, 'activated')).text(), 'desk');
    const found = (await ok(client, '<taskFindMeeting meetingSet="echo" meetingName="desk"/>')).messages[0]!;
    assert.equal(found.attrs.taskRef, ref, 'the task that activated it, by the ref the session already has');
    await ok(client, `<taskSendEvent taskRef="${ref}" eventName="activate">desk</taskSendEvent>`);
    assert.equal((await event(client, 'error')).text(), 'meeting is already activated');
    await ok(client, `<taskSendEvent taskRef="${ref}" eventName="stop"/>`);
    await eventually(async () => (await client.request('<taskFindMeeting meetingSet="echo" meetingName="desk"/>')).messages[0]?.attrs.taskRef === undefined, 'the meeting freed when its task ended');
  });

  it('an account has its own meetings: another account does not find them', async () => {
    const { client } = await user('meet3');
    const { client: other } = await user('meet4');
    await ok(client, '<taskCreateMeeting meetingName="mine"/>');
    await fails(other, '<taskFindMeeting meetingName="mine"/>', 'meeting not found');
  });
});

describe('scripts and helpers', () => {
  it('runScript runs a script entry with the parameter object; callHelper calls a helper by name', async () => {
    const { address, client } = await user('script1');
    const result = await ok(client, '<runScript fileName="echo.scgp"><subKey key="q">what</subKey></runScript>');
    assert.equal(result.messages[0]!.name, 'scriptResult');
    assert.deepEqual(readValue(result.messages[0]!), { account: address, echo: { q: 'what' } });
    await fails(client, '<runScript fileName="nope"/>', 'unknown script: nope');
    await fails(client, '<runScript fileName="echo" name="nope"/>', 'the script echo has no entry nope');
    const reply = await ok(client, '<callHelper name="upper" mode="any">shout</callHelper>');
    assert.equal(reply.messages[0]!.name, 'helperReply');
    assert.equal(reply.messages[0]!.attrs.name, 'upper');
    assert.equal(reply.messages[0]!.text(), 'SHOUT');
    assert.equal((await ok(client, '<callHelper name="silent"/>')).messages.length, 0, 'no result, no helperReply');
    await fails(client, '<callHelper name="failing"/>', 'the helper failing failed: the helper failed');
    await fails(client, '<callHelper name="nope"/>', 'unknown helper: nope');
    // The conference application's script lists the account's rooms.
    await ok(client, '<taskCreateMeeting meetingSet="conference" meetingName="12"/>');
    assert.deepEqual(readValue((await ok(client, '<runScript fileName="conference" name="rooms"/>')).messages[0]!), [{ name: '12', active: 'no' }]);
  });
});

// --- calls ---

function sdpText(rtpPort: number): string {
  return ['v=0', `o=- ${rtpPort} 1 IN IP4 127.0.0.1`, 's=-', 'c=IN IP4 127.0.0.1', 't=0 0', `m=audio ${rtpPort} RTP/AVP 0 101`, 'a=rtpmap:0 PCMU/8000', 'a=rtpmap:101 telephone-event/8000', 'a=sendrecv', ''].join('\r\n');
}

/** A caller's RTP socket: counts loud PCMU frames it receives. */
async function rtpSocket(): Promise<{ socket: Socket; port: number; loud: () => number; close: () => void }> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  let loud = 0;
  socket.on('message', (packet) => {
    if (packet.length < 12 + 160 || (packet[1]! & 0x7f) !== 0) return;
    const pcm = decodeUlaw(new Uint8Array(packet.subarray(12, 12 + 160)));
    let energy = 0;
    for (const v of pcm) energy += v * v;
    if (energy / pcm.length > 200 * 200) loud++;
  });
  return { socket, port: socket.address().port, loud: () => loud, close: () => socket.close() };
}

/** The media port of the server's end, from the answer a callConnected carries (the XML form of SDP). */
function answerPort(connected: XmlElement): number {
  const ip = connected.element('sdp')?.element('media')?.attrs.ip ?? '';
  const port = Number(ip.slice(ip.lastIndexOf(':') + 1));
  assert.ok(port > 0, connected.toString());
  return port;
}

/** Sends `ms` of a loud 440 Hz tone (speech to the voice activity detector), paced, then `silenceMs` of silence. */
async function speak(socket: Socket, port: number, ms: number, silenceMs = 0, ssrc = 0x77): Promise<void> {
  const k = (2 * Math.PI * 440) / 8000;
  const frames = (ms + silenceMs) / 20;
  for (let n = 0; n < frames; n++) {
    const pcm = new Int16Array(160);
    if (n < ms / 20) for (let i = 0; i < 160; i++) pcm[i] = Math.round(9000 * Math.sin(k * (n * 160 + i)));
    const packet = Buffer.alloc(12 + 160);
    writeRtpHeader(packet, { payloadType: 0, sequence: n + 1, timestamp: (n + 1) * 160, ssrc });
    packet.set(encodeUlaw(pcm), 12);
    await new Promise<void>((resolve) => socket.send(packet, port, '127.0.0.1', () => resolve()));
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function bound(name: string): Promise<{ address: string; client: XimssClient; urlID: string }> {
  const u = await user(name);
  await ok(u.client, '<signalBind/>');
  return u;
}

describe('calls to applications', () => {
  it('a routed address starts the program\'s call entry: it answers, plays a prompt, collects the keys typed, records', async () => {
    const watcher = await server.login('pbx@example.test', 'secret');
    await watcher.client.request('<taskCreateMeeting meetingSet="ivr" meetingName="watch"/>');
    await ok(watcher.client, '<taskActivateMeeting meetingSet="ivr" meetingName="watch"/>');
    const caller = await bound('ivrcaller');
    const rtp = await rtpSocket();
    try {
      await ok(caller.client, `<callStart callLeg="i1" peer="ivr-7@example.test"><sdpText>${sdpText(rtp.port)}</sdpText></callStart>`);
      const connected = await caller.client.takeAsync('callConnected', (m) => m.attrs.callLeg === 'i1', 15_000);
      answerPort(connected);
      // The prompt is heard; a key interrupts it (barge-in), and the rest are collected.
      await eventually(() => rtp.loud() > 10, 'the prompt is heard', 15_000);
      for (const key of ['4', '7', '1', '1']) await ok(caller.client, `<callSendDTMF callLeg="i1">${key}</callSendDTMF>`);
      const digits = readValue(await event(watcher.client, 'digits', 15_000)) as Record<string, string>;
      assert.equal(digits.digits, '4711');
      assert.equal(digits.played, 'interrupted');
      assert.equal(digits.from, caller.address);
      assert.equal(digits.to, 'ivr-7@example.test');
      const recorded = readValue(await event(watcher.client, 'recorded', 15_000)) as Record<string, string>;
      assert.equal(recorded.reason, 'max');
      // Two seconds of 8 kHz 16-bit audio and the header.
      assert.ok(Number(recorded.bytes) >= 2 * 16000 && Number(recorded.bytes) < 2 * 16000 + 200, recorded.bytes);
      await caller.client.takeAsync('callDisconnected', (m) => m.attrs.callLeg === 'i1', 15_000);
    } finally {
      rtp.close();
    }
  });

  it('voicemail: a Signal Rule sends the call to #voicemail; what the caller says arrives in INBOX as a mail with the WAV, readable by its MIME URL', async () => {
    const owner = await user('vmowner');
    await server.services.accounts.setSettings((await server.services.accounts.find(owner.address))!, { SignalRulesAllowed: 'Any' });
    await ok(owner.client, '<ruleSet type="signalIn" name="voicemail" priority="5" stage="Immediately"><action opCode="Redirect to">#voicemail</action></ruleSet>');
    const caller = await bound('vmcaller');
    const rtp = await rtpSocket();
    try {
      await ok(caller.client, `<callStart callLeg="v1" peer="${owner.address}"><sdpText>${sdpText(rtp.port)}</sdpText></callStart>`);
      const connected = await caller.client.takeAsync('callConnected', (m) => m.attrs.callLeg === 'v1', 15_000);
      const port = answerPort(connected);
      await eventually(() => rtp.loud() > 10, 'the greeting is heard', 15_000);
      // A key skips the rest of the greeting; after the beep, a second and a half of "speech", then # ends it.
      await ok(caller.client, '<callSendDTMF callLeg="v1">1</callSendDTMF>');
      await new Promise((resolve) => setTimeout(resolve, 600));
      await speak(rtp.socket, port, 1500, 200);
      await ok(caller.client, '<callSendDTMF callLeg="v1">#</callSendDTMF>');
      await caller.client.takeAsync('callDisconnected', (m) => m.attrs.callLeg === 'v1', 20_000);
      const [message] = await eventually(async () => {
        const stored = await storedMessages(server, owner.address, 'INBOX');
        return stored.length > 0 ? stored : undefined;
      }, 'the voice message in INBOX', 10_000);
      const raw = message!.raw.toString('latin1');
      assert.match(raw, /^Subject: Voice message from /m);
      assert.match(raw, new RegExp(`^From: .*${caller.address.replace(/[.]/g, '\\.')}`, 'm'));
      assert.match(raw, /Content-Type: audio\/wav/i);
      // Through the spec's MIME URL, as a client plays it.
      await ok(owner.client, '<folderOpen folder="in" mailbox="INBOX"><field>UID</field></folderOpen>');
      const read = await ok(owner.client, `<folderRead folder="in" UID="${message!.uid}"/>`);
      const parts = read.messages[0]!.element('EMail')!.element('MIME')!.elements('MIME');
      const wavPart = parts.find((p) => p.attrs.type === 'audio');
      assert.ok(wavPart, 'an audio part');
      const response = await fetch(`http://127.0.0.1:${server.ports.http}/Session/${owner.urlID}/MIME/in/${message!.uid}-${wavPart.attrs.partID}-B.wav`);
      assert.equal(response.status, 200);
      const audio = readWav(new Uint8Array(await response.arrayBuffer()));
      assert.equal(audio.sampleRate, 8000);
      const seconds = audio.samples.length / 8000;
      assert.ok(seconds >= 1 && seconds < 6, `the recording lasts ${seconds} s`);
    } finally {
      rtp.close();
    }
  });
});

describe('calls placed by tasks', () => {
  it('dial: a call not answered in time fails, calls beyond the account\'s limit are refused, the server goes on', async () => {
    const { client } = await user('dialer');
    const callee = await bound('dialee');
    await ok(client, `<taskStart programName="echo" entryName="dial"><param>${callee.address}</param><param>4</param></taskStart>`);
    // Three ring (and are not answered in time); the fourth is over calls.callsPerAccount (3).
    const report = readValue(await event(client, 'dialed', 20_000)) as string[];
    assert.equal(report.length, 4);
    assert.equal(report.filter((r) => /not answered \(timeout\)/.test(r)).length, 3, report.join(' | '));
    assert.equal(report.filter((r) => r === 'an account may have 3 calls at once').length, 1, report.join(' | '));
    for (let i = 0; i < 3; i++) await callee.client.takeAsync('callIncoming', () => true, 10_000);
    // A dial to nobody fails with the refusal's code.
    await ok(client, '<taskStart programName="echo" entryName="dial"><param>nobody-at-all@example.test</param></taskStart>');
    assert.match((readValue(await event(client, 'dialed', 20_000)) as string[])[0]!, /not answered \(error 404\)/);
    await ok(client, '<noop/>');
  });
});

describe('the conference application', () => {
  it('callers of conf-<room> join the room; a subscribed XIMSS client sees them join, speak and leave, mutes and kicks', async () => {
    const pbx = await server.login('pbx@example.test', 'secret');
    await ok(pbx.client, '<taskCreateMeeting meetingSet="conference" meetingName="4711"/>');
    const callers = await Promise.all(['confa', 'confb', 'confc'].map((n) => bound(n)));
    const sockets = await Promise.all(callers.map(() => rtpSocket()));
    try {
      await ok(callers[0]!.client, `<callStart callLeg="k" peer="conf-4711@example.test"><sdpText>${sdpText(sockets[0]!.port)}</sdpText></callStart>`);
      const first = await callers[0]!.client.takeAsync('callConnected', (m) => m.attrs.callLeg === 'k', 15_000);
      // The first call started the room task, which holds the meeting.
      const room = await eventually(async () => (await pbx.client.request('<taskFindMeeting meetingSet="conference" meetingName="4711"/>')).messages[0]?.attrs.taskRef, 'the room task', 10_000);
      await ok(pbx.client, `<taskSendEvent taskRef="${room}" eventName="subscribe"/>`);
      const list = readValue(await event(pbx.client, 'participants')) as Record<string, string>[];
      await eventually(async () => {
        if (list.length === 1) return true;
        await ok(pbx.client, `<taskSendEvent taskRef="${room}" eventName="list"/>`);
        list.splice(0, list.length, ...(readValue(await event(pbx.client, 'participants')) as Record<string, string>[]));
        return list.length === 1;
      }, 'the first caller in the room');
      assert.equal(list[0]!.from, callers[0]!.address);
      const ports = [answerPort(first)];
      for (const i of [1, 2]) {
        await ok(callers[i]!.client, `<callStart callLeg="k" peer="conf-4711@example.test"><sdpText>${sdpText(sockets[i]!.port)}</sdpText></callStart>`);
        ports.push(answerPort(await callers[i]!.client.takeAsync('callConnected', (m) => m.attrs.callLeg === 'k', 15_000)));
        const joined = readValue(await event(pbx.client, 'joined')) as Record<string, string>;
        if (joined.from !== callers[i]!.address) assert.equal((readValue(await event(pbx.client, 'joined')) as Record<string, string>).from, callers[i]!.address);
      }
      // The first caller speaks: the others hear it, and the subscriber is told.
      const heardBefore = [sockets[1]!.loud(), sockets[2]!.loud()];
      await speak(sockets[0]!.socket, ports[0]!, 1200, 600);
      const speaking = readValue(await event(pbx.client, 'speaking')) as Record<string, string>;
      assert.equal(speaking.from, callers[0]!.address);
      assert.ok(sockets[1]!.loud() > heardBefore[0]! + 20 && sockets[2]!.loud() > heardBefore[1]! + 20, 'the others hear the first caller');
      // Kick the third caller: its call ends, the subscriber is told.
      await ok(pbx.client, `<taskSendEvent taskRef="${room}" eventName="list"/>`);
      const everyone = readValue(await event(pbx.client, 'participants')) as Record<string, string>[];
      assert.equal(everyone.length, 3);
      const third = everyone.find((p) => p.from === callers[2]!.address)!;
      await ok(pbx.client, `<taskSendEvent taskRef="${room}" eventName="kick">${third.id}</taskSendEvent>`);
      await callers[2]!.client.takeAsync('callDisconnected', (m) => m.attrs.callLeg === 'k', 10_000);
      assert.equal((readValue(await event(pbx.client, 'left')) as Record<string, string>).from, callers[2]!.address);
      // runScript: the room is active.
      assert.deepEqual(readValue((await ok(pbx.client, '<runScript fileName="conference" name="rooms"/>')).messages[0]!), [{ name: '4711', active: 'yes' }]);
      // A caller of a room that does not exist hears so and is hung up.
      await ok(pbx.client, `<taskSendEvent taskRef="${room}" eventName="close"/>`);
      for (const i of [0, 1]) await callers[i]!.client.takeAsync('callDisconnected', (m) => m.attrs.callLeg === 'k', 10_000);
      await event(pbx.client, 'closed');
    } finally {
      for (const s of sockets) s.close();
    }
  });

  it('a caller who names no room is asked for its number and types it', async () => {
    const pbx = await server.login('pbx@example.test', 'secret');
    await ok(pbx.client, '<taskCreateMeeting meetingSet="conference" meetingName="99"/>');
    const caller = await bound('confd');
    const rtp = await rtpSocket();
    try {
      await ok(caller.client, `<callStart callLeg="q" peer="conf-@example.test"><sdpText>${sdpText(rtp.port)}</sdpText></callStart>`);
      await caller.client.takeAsync('callConnected', (m) => m.attrs.callLeg === 'q', 15_000);
      await eventually(() => rtp.loud() > 5, 'the question is heard', 15_000);
      for (const key of ['9', '9', '#']) await ok(caller.client, `<callSendDTMF callLeg="q">${key}</callSendDTMF>`);
      const room = await eventually(async () => (await pbx.client.request('<taskFindMeeting meetingSet="conference" meetingName="99"/>')).messages[0]?.attrs.taskRef, 'the room task of 99', 15_000);
      await ok(pbx.client, `<taskSendEvent taskRef="${room}" eventName="subscribe"/>`);
      const list = readValue(await event(pbx.client, 'participants')) as Record<string, string>[];
      assert.equal(list.length, 1);
      assert.equal(list[0]!.from, caller.address);
      await ok(caller.client, '<callKill callLeg="q"/>');
      assert.equal((readValue(await event(pbx.client, 'left')) as Record<string, string>).from, caller.address);
    } finally {
      rtp.close();
    }
  });
});


