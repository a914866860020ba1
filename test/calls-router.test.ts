/**
 * The call router's retired ports (src/services/calls/router.ts `retire`) and what an ended
 * call does with late signals through them (src/services/calls/call.ts): a side that ended
 * keeps its address for RETIRED_PORT_MS, answered by a stand-in (or by nothing), then the
 * address is released and answered `gone`. Node's mock timers stand in for the 32 s.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, mock, test } from 'node:test';
import type { EventBus } from '../src/bus/bus.js';
import { silentLogger } from '../src/log.js';
import { Call, type CallHooks } from '../src/services/calls/call.js';
import { CallRouter, RETIRED_PORT_MS, type Port, type PortAddress } from '../src/services/calls/router.js';
import type { Signal } from '../src/services/calls/signal.js';
import type { Store } from '../src/store/store.js';

const NODE = 'n1';

/** A router of one node: no other node is ever addressed here, so neither bus nor store is used. */
function localRouter(): CallRouter {
  const bus = { on: () => () => {}, publish: () => {} } as unknown as EventBus;
  return new CallRouter({} as Store, bus, NODE, silentLogger);
}

/** A port that keeps what it hears. */
function recorder(router: CallRouter): { address: PortAddress; heard: { signal: Signal; from: PortAddress }[] } {
  const heard: { signal: Signal; from: PortAddress }[] = [];
  const port: Port = { receive: (signal, from) => heard.push({ signal, from }) };
  return { address: router.open(port), heard };
}

/** Lets the router's hand-overs (microtasks) run. */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('call router: retired ports', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 }));
  afterEach(() => mock.timers.reset());

  test('a retired port is answered by its stand-in, then released and answered gone', async () => {
    const router = localRouter();
    const side = recorder(router);
    const sender = recorder(router);
    const standIn: Signal[] = [];
    router.retire(side.address, { receive: (signal) => standIn.push(signal) });
    router.send(side.address, { kind: 'trying' }, sender.address);
    await settle();
    assert.deepEqual(standIn, [{ kind: 'trying' }]);
    assert.deepEqual(side.heard, [], 'the side that ended hears nothing more');
    assert.equal(router.size, 2);

    mock.timers.tick(RETIRED_PORT_MS - 1);
    router.send(side.address, { kind: 'trying' }, sender.address);
    await settle();
    assert.equal(standIn.length, 2, 'still there just before its time');

    mock.timers.tick(1);
    assert.equal(router.size, 1, 'released');
    router.send(side.address, { kind: 'trying' }, sender.address);
    await settle();
    assert.equal(standIn.length, 2);
    assert.deepEqual(
      sender.heard.map((h) => h.signal),
      [{ kind: 'gone' }],
      'a released address is answered gone',
    );
    router.close();
  });

  test('retired without a stand-in: late signals are dropped, not answered', async () => {
    const router = localRouter();
    const side = recorder(router);
    const sender = recorder(router);
    router.retire(side.address);
    router.send(side.address, { kind: 'bye' }, sender.address);
    await settle();
    assert.deepEqual(side.heard, []);
    assert.deepEqual(sender.heard, []);
    router.close();
  });

  test('ports retired at different times are released in turn, each after its own wait', async () => {
    const router = localRouter();
    const first = recorder(router);
    const second = recorder(router);
    router.retire(first.address);
    mock.timers.tick(10_000);
    router.retire(second.address);
    assert.equal(router.size, 2);
    mock.timers.tick(RETIRED_PORT_MS - 10_000);
    assert.equal(router.size, 1, 'the first went at its time');
    mock.timers.tick(10_000);
    assert.equal(router.size, 0, 'the second at its own');
    router.close();
  });
});

describe('an ended call answers late signals through its stand-ins', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 }));
  afterEach(() => mock.timers.reset());

  test('a device that answers after the caller cancelled is hung up; the caller hears gone; later both are gone', async () => {
    const router = localRouter();
    const caller = recorder(router);
    let leg: ReturnType<typeof recorder> | undefined;
    let branch: PortAddress | undefined;
    // The device's leg: a port of its own; the call's port for it is where the invite says to reply.
    router.onTarget('ximss', (_target, _invite, replyTo) => {
      leg = recorder(router);
      branch = replyTo;
      return { receive: () => {} };
    });
    const hooks: CallHooks = {
      resolve: () => Promise.resolve({ targets: [] }),
      ended: () => {},
      ringTimeoutMs: 120_000,
      maxRedirects: 5,
      maxBranches: 10,
    };
    const invite: Extract<Signal, { kind: 'invite' }> = { kind: 'invite', callId: 'c1', from: { address: 'alice@example.test' }, to: { address: 'bob@example.test' } };
    const call = new Call(router, hooks, 'c1', invite.from, invite.to, caller.address, invite);
    call.start([{ kind: 'ximss', node: NODE, accountId: 1, resource: 'r1' }]);
    await settle();
    assert.ok(leg && branch, 'the device was rung');

    // The device rings; the caller cancels: the device's branch is cancelled and the call is over.
    router.send(branch!, { kind: 'progress', tag: 't1' }, leg!.address);
    await settle();
    router.send(call.address, { kind: 'cancel', reason: 'changed my mind' }, caller.address);
    await settle();
    assert.equal(call.state, 'ended');
    assert.equal(leg!.heard.at(-1)!.signal.kind, 'cancel');

    // Its answer crossed the cancel: hung up.
    router.send(branch!, { kind: 'answer', tag: 't1', sdp: undefined, offer: false }, leg!.address);
    await settle();
    assert.deepEqual(leg!.heard.at(-1)!.signal, { kind: 'bye', reason: 'the call is over' });
    // The caller's late signal: the call is gone.
    router.send(call.address, { kind: 'bye' }, caller.address);
    await settle();
    assert.deepEqual(caller.heard.at(-1)!.signal, { kind: 'gone' });

    // Once the ports are released, the router itself answers gone.
    mock.timers.tick(RETIRED_PORT_MS);
    const heardBefore = leg!.heard.length;
    router.send(branch!, { kind: 'answer', tag: 't1', sdp: undefined, offer: false }, leg!.address);
    await settle();
    assert.equal(leg!.heard.length, heardBefore + 1);
    assert.deepEqual(leg!.heard.at(-1)!.signal, { kind: 'gone' });
    router.close();
  });
});
