/**
 * The spec's signaling examples (../shared/spec/examples 028–040) replayed on the wire. The
 * client of each example is a real session; the other party is played by other sessions
 * (the caller of an incoming call; one session per "device" tag of an outgoing one), driven
 * by what the example shows the client receiving: a callIncoming makes the peer call, a
 * callProvisioned or callConnected of tag T makes device T provision or accept (with an
 * SDP exactly when the example's message carries one), a callDisconnected makes the peer
 * hang up. Every message of the example must come, in order, with the example's SDP
 * presence and tags (ours are random: one of ours stands for each of the example's).
 *
 * `SDP:…` placeholders become real descriptions. Two liberties, both the spec text's: some
 * client requests are written with `S:` (032's callReject, 033's callRedirect, the final
 * callKill of 036–040), and each replay stops at the example's first "Alternatively" (the
 * alternatives cannot all happen in one call). 036–038 have a ringing device send an early
 * update of its own (callUpdateRequest/callUpdateSolicited with a device tag): a XIMSS
 * session cannot do that before it answers, so those steps need a SIP device, and the
 * replay of those three stops before them.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import type { XmlElement } from '../src/xml/element.js';
import { parseXml } from '../src/xml/parser.js';
import { expectOk, ok, startTestServer, type TestServer, type XimssClient } from './helpers.js';

const EXAMPLES = fileURLToPath(new URL('../../shared/spec/examples/', import.meta.url));

let server: TestServer;
before(async () => {
  server = await startTestServer();
});
after(() => server.stop());

interface Step {
  from: 'C' | 'S';
  xml: string;
}

/** Requests written with `S:` in the spec text. */
const CLIENT_OPS = new Set(['callReject', 'callRedirect', 'callKill', 'callUpdateAccept', 'callUpdateReject', 'callUpdate', 'callAccept', 'callProvision', 'callStart']);
/** Messages a ringing device cannot cause from a XIMSS session (see above). */
const EARLY_DEVICE_UPDATES = new Set(['callUpdateRequest', 'callUpdateSolicited']);

function loadSteps(file: string): Step[] {
  const steps: Step[] = [];
  for (const line of readFileSync(join(EXAMPLES, file), 'utf8').split('\n')) {
    if (line.startsWith('#')) {
      if (/Alternatively/.test(line)) break;
      continue;
    }
    const m = /^([CS]):(.*)$/.exec(line);
    if (m) steps.push({ from: m[1] as 'C' | 'S', xml: m[2]!.trim() });
    else if (line.trim() !== '' && steps.length > 0) steps[steps.length - 1]!.xml += '\n' + line;
  }
  return steps;
}

let port = 20_000;
function realSdp(): string {
  port += 2;
  return `<sdpText>v=0\r\no=- ${port} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio ${port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n</sdpText>`;
}

/** The example's element with its SDP placeholder replaced by a real description. */
function element(xml: string): { message: XmlElement; sdp: boolean } {
  const sdp = /SDP:[A-Z]/.test(xml);
  return { message: parseXml(xml.replace(/SDP:[A-Z][\w-]*(?:\([\w]+\))?/g, () => realSdp())), sdp };
}

async function account(): Promise<string> {
  return server.newAccount('ex');
}

async function bound(address: string): Promise<XimssClient> {
  const { client } = await server.login(address, 'secret');
  await ok(client, '<signalBind/>');
  return client;
}

async function replay(file: string): Promise<void> {
  const steps = loadSteps(file);
  const me = await account();
  const client = await bound(me);
  const peerAccount = await account();
  /** Our callLegs for the example's (the server's inp… legs differ from the example's). */
  const legs = new Map<string, string>();
  /** The peer sessions: the caller (incoming), or one per device tag (outgoing). */
  const devices = new Map<string, { client: XimssClient; leg?: string; provisionedSdp?: boolean }>();
  const tags = new Map<string, string>();
  let caller: { client: XimssClient; leg: string; offered: boolean } | undefined;
  const isOutgoing = steps.some((s) => s.xml.startsWith('<callStart'));
  if (isOutgoing) {
    // One bound session of the callee per device tag of the example, all ringing.
    const deviceTags = [...new Set(steps.flatMap((s) => [...s.xml.matchAll(/tag="([^"]+)"/g)].map((m) => m[1]!)))];
    for (const tag of deviceTags) devices.set(tag, { client: await bound(peerAccount) });
  }
  const leg = (exampleLeg: string): string => legs.get(exampleLeg) ?? exampleLeg;

  for (const step of steps) {
    const { message, sdp } = element(step.xml);
    const name = message.name;
    if (name === 'response') continue; // awaited with its request
    if (step.from === 'C' || CLIENT_OPS.has(name)) {
      if (name === 'callStart') message.attrs.peer = peerAccount;
      if (name === 'callRedirect') for (const to of message.elements('To')) to.children.splice(0, to.children.length, peerAccount);
      const exampleLeg = message.attrs.callLeg;
      if (exampleLeg?.startsWith('inp') && !legs.has(exampleLeg)) {
        // An incoming call the example takes for granted (028): the peer calls first.
        const from = await bound(peerAccount);
        await ok(from, `<callStart callLeg="p0" peer="${me}">${realSdp()}</callStart>`);
        legs.set(exampleLeg, (await client.takeAsync('callIncoming', () => true)).attrs.callLeg!);
      }
      if (exampleLeg) message.attrs.callLeg = leg(exampleLeg);
      delete message.attrs.id;
      expectOk(await client.request(message), `${file}: ${step.xml.slice(0, 80)}`);
      if (name === 'callStart') {
        // Every device rings; the example shows only what the caller sees.
        for (const device of devices.values()) device.leg = (await device.client.takeAsync('callIncoming', () => true)).attrs.callLeg;
      }
      continue;
    }
    if (EARLY_DEVICE_UPDATES.has(name)) return; // needs a SIP device (see above)
    const exampleLeg = message.attrs.callLeg!;
    const exampleTag = message.attrs.tag;
    const device = exampleTag === undefined ? undefined : devices.get(exampleTag);
    // What the other party does for this message to come.
    switch (name) {
      case 'callIncoming': {
        const from = await bound(peerAccount);
        await ok(from, `<callStart callLeg="p1" peer="${me}">${sdp ? realSdp() : ''}</callStart>`);
        caller = { client: from, leg: 'p1', offered: sdp };
        break;
      }
      case 'callProvisioned':
        await ok(device!.client, `<callProvision callLeg="${device!.leg}">${sdp ? realSdp() : ''}</callProvision>`);
        if (sdp) device!.provisionedSdp = true;
        break;
      case 'callConnected':
        await ok(device!.client, `<callAccept callLeg="${device!.leg}">${sdp && !device!.provisionedSdp ? realSdp() : ''}</callAccept>`);
        break;
      case 'callDisconnected':
        if (caller) await ok(caller.client, `<callKill callLeg="${caller.leg}"/>`);
        else for (const d of devices.values()) if (d.leg) await ok(d.client, `<callKill callLeg="${d.leg}"/>`);
        break;
      case 'callUpdated':
        // The outcome of the client's own request; when the client offered to a caller that
        // made no offer, the caller's answer is what comes.
        if (caller && !caller.offered && sdp) {
          await caller.client.takeAsync('callConnected', () => true);
          await ok(caller.client, `<callUpdateAccept callLeg="${caller.leg}">${realSdp()}</callUpdateAccept>`);
        }
        break;
    }
    const got = await client.takeAsync(name, (m) => (legs.has(exampleLeg) ? m.attrs.callLeg === legs.get(exampleLeg) : true));
    if (!legs.has(exampleLeg)) legs.set(exampleLeg, got.attrs.callLeg!);
    const gotSdp = got.element('sdp') !== undefined || got.element('sdpText') !== undefined;
    assert.equal(gotSdp, sdp, `${file}: ${name} ${sdp ? 'carries' : 'carries no'} SDP, as in the example`);
    if (exampleTag !== undefined) {
      assert.ok(got.attrs.tag, `${file}: ${name} has a tag`);
      const known = tags.get(exampleTag);
      if (known) assert.equal(got.attrs.tag, known, `${file}: ${name}: the tag of ${exampleTag} is the same each time`);
      else {
        assert.ok(![...tags.values()].includes(got.attrs.tag!), `${file}: a tag per device`);
        tags.set(exampleTag, got.attrs.tag!);
      }
    }
  }
}

describe('the spec\'s signaling examples, replayed', () => {
  const files = ['028-callRedirect.txt', ...Array.from({ length: 12 }, (_, i) => `${String(29 + i).padStart(3, '0')}`)];
  for (const prefix of files) {
    test(prefix, async (t) => {
      if (!existsSync(EXAMPLES)) {
        if (process.env.CI) assert.fail(`the spec examples are missing (looked in ${EXAMPLES})`);
        t.skip('the spec examples are not beside the checkout');
        return;
      }
      const file = prefix.endsWith('.txt') ? prefix : (await import('node:fs')).readdirSync(EXAMPLES).find((f) => f.startsWith(`${prefix}-`))!;
      await replay(file);
    });
  }
});
