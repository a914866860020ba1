import type { AccountService } from '../../../services/accounts.js';
import type { CallService } from '../../../services/calls/service.js';
import { CallRefused } from '../../../services/calls/service.js';
import type { ImComponent, ImService, DomainService } from '../../../services/im/service.js';
import type { ImClient } from '../../../services/im/router.js';
import { parseJid } from '../../../services/im/jid.js';
import { randomId } from '../../../services/ids.js';
import { errorText, type Logger } from '../../../log.js';
import { el, type XmlElement } from '../../../xml/element.js';
import type { PortAddress } from '../../../services/calls/router.js';
import type { Signal } from '../../../services/calls/signal.js';
import { codeOfRejectReason, NO_HEADERS, RayoCall, type RayoMedia } from './call.js';
import { InputCollector, OutputPlayer, PromptRunner, type RayoComponent } from './components.js';
import type { PromptRenderer } from '../../../media/prompts.js';
import { Recorder, type RecordingStorage } from './record.js';
import {
  buildDiscoInfo,
  buildErrorElement,
  buildEventPresence,
  buildIqError,
  buildIqResult,
  buildRef,
  CALL_SUBDOMAIN,
  componentJid,
  callJid,
  capsVer,
  classifyJid,
  commandError,
  commandPayload,
  MIXER_SUBDOMAIN,
  NS_RAYO,
  NS_RAYO_CALL,
  parseClientPresence,
  parseCommand,
  parseDiscoInfoRequest,
  parsePartyUri,
  RAYO_DISCO,
  rayoError,
  unsupportedCommand,
  xmppUri,
  type CompleteReason,
  type DialCommand,
  type EndReason,
  type RayoCommand,
  type RayoError,
  type RayoEvent,
} from './elements.js';

/** A call of this node under Rayo control: where its JID is, and who was offered it. */
interface HeldCall {
  call: RayoCall;
  domain: string;
  offeredTo: Set<string>;
  /** Its running components, by id. */
  components: Map<string, RayoComponent>;
}

/** How many calls one account may have under Rayo control at once. */
const DEFAULT_CALLS_PER_ACCOUNT = 50;

export interface RayoServiceOptions {
  /** The media end of each call (a MediaEndpoint of the gateway). */
  openMedia: (callId: string) => RayoMedia;
  /** Renders what output and prompt components play (text-to-speech, fetched WAV files). */
  renderer: PromptRenderer;
  /** Where record components store their recordings (none: record is feature-not-implemented). */
  recordings?: RecordingStorage;
  callsPerAccount?: number;
}

/**
 * Rayo (XEP-0327) on the XMPP service: third-party call control for the accounts whose
 * `RayoAllowed` setting is Yes. A client becomes a potential controlling party of its account's
 * calls with presence `<show>chat</show>` to the domain, and stops being one with `dnd` or when
 * it goes. A call for an account that has no other device (no bound XIMSS session, no registered
 * SIP phone) is offered to those clients (`<offer>` from `<id>@call.<domain>`); the first to
 * accept or answer controls it. `dial` to the domain places a call the client controls.
 *
 * Calls live on the node where they were made, with their offers sent to the clients of this
 * node; commands for a call of another node answer item-not-found (XEP-0349's forwarding is
 * not built yet). Components (output, input, prompt, record), join and mixers answer
 * feature-not-implemented until the media engine takes them.
 */
export class RayoService implements ImComponent, DomainService {
  /** The potential controlling parties of this node, by account: full JID → client. */
  private readonly available = new Map<number, Map<string, ImClient>>();
  private readonly calls = new Map<string, HeldCall>();
  private readonly perAccount = new Map<number, number>();
  private readonly callsPerAccount: number;

  constructor(
    private readonly im: ImService,
    private readonly accounts: AccountService,
    private readonly callService: CallService,
    private readonly log: Logger,
    private readonly options: RayoServiceOptions,
  ) {
    this.callsPerAccount = options.callsPerAccount ?? DEFAULT_CALLS_PER_ACCOUNT;
    const node = callService.router.node;
    callService.addFallback(async (account) => (this.available.get(account.id)?.size ? [{ kind: 'rayo', node, accountId: account.id }] : []));
    callService.onTarget(
      'rayo',
      (target, invite, replyTo) => this.offer(target.accountId, invite, replyTo),
      (target) => ({ accountId: target.accountId }),
    );
  }

  /** Hangs up every call (server shutdown). */
  close(): void {
    for (const { call } of [...this.calls.values()]) call.hangup();
  }

  /** Calls under Rayo control on this node. */
  get size(): number {
    return this.calls.size;
  }

  // --- the XMPP side ---

  async serves(domain: string): Promise<boolean> {
    const dot = domain.indexOf('.');
    if (dot < 0) return false;
    const sub = domain.slice(0, dot);
    return (sub === CALL_SUBDOMAIN || sub === MIXER_SUBDOMAIN) && (await this.im.isLocalDomain(domain.slice(dot + 1)));
  }

  /** Presence to the domain (availability), and Rayo iqs to it (dial, disco is the server's). */
  claims(stanza: XmlElement): boolean {
    if (stanza.name === 'presence') return true;
    if (stanza.name !== 'iq') return false;
    const payload = stanza.elements()[0];
    return payload !== undefined && payload.attrs.xmlns === NS_RAYO;
  }

  async handle(stanza: XmlElement, origin: ImClient): Promise<void> {
    try {
      if (stanza.name === 'presence') return await this.presence(stanza, origin);
      if (stanza.name === 'iq') return await this.iq(stanza, origin);
      if (stanza.name === 'message' && stanza.attrs.type !== 'error') {
        origin.deliver(errorOf(stanza, rayoError('feature-not-implemented', 'messages to calls are not forwarded yet', 'cancel')));
      }
    } catch (err) {
      this.log.error({ event: 'rayo.failed', error: errorText(err) }, 'a Rayo request failed');
      if (stanza.name === 'iq' && (stanza.attrs.type === 'set' || stanza.attrs.type === 'get')) {
        origin.deliver(errorOf(stanza, rayoError('internal-server-error', 'the request failed on the server')));
      }
    }
  }

  private async presence(stanza: XmlElement, client: ImClient): Promise<void> {
    const to = parseJid(stanza.attrs.to!);
    if (to.local) return; // presence to a call or mixer: nothing to do
    const state = parseClientPresence(stanza);
    if (!state) return;
    const accountId = client.account.id;
    if (state.available && (await this.allowed(client))) {
      let clients = this.available.get(accountId);
      if (!clients) this.available.set(accountId, (clients = new Map()));
      if (!clients.has(client.jid)) this.log.info({ event: 'rayo.client_available', jid: client.jid }, 'a Rayo client is available');
      clients.set(client.jid, client);
      return;
    }
    const clients = this.available.get(accountId);
    if (clients?.delete(client.jid)) {
      this.log.info({ event: 'rayo.client_unavailable', jid: client.jid }, 'a Rayo client is no longer available');
      if (clients.size === 0) this.available.delete(accountId);
    }
    if (stanza.attrs.type === 'unavailable') {
      // The client is gone: the calls it controls end (the XEP leaves this to the server).
      for (const { call } of [...this.calls.values()]) if (call.controller === client.jid) call.hangup();
    }
  }

  private async iq(iq: XmlElement, client: ImClient): Promise<void> {
    const type = iq.attrs.type;
    if (type === 'result' || type === 'error') return;
    const domain = parseJid(iq.attrs.to!).domain;
    const serviceDomain = domain.startsWith(`${CALL_SUBDOMAIN}.`) || domain.startsWith(`${MIXER_SUBDOMAIN}.`) ? domain.slice(domain.indexOf('.') + 1) : domain;
    const fail = (error: RayoError, payload?: XmlElement): void => client.deliver(buildIqError(replyAddress(iq, client), error, payload));
    const payload = iq.elements()[0];
    const to = parseJid(iq.attrs.to!);
    // disco#info of the call service itself (call.<domain>, XEP examples 091–092), of a call or a mixer.
    if (type === 'get' && parseDiscoInfoRequest(iq)) {
      const held = to.local ? this.calls.get(to.local) : undefined;
      if (to.resource || (to.local && !held && domain.startsWith(`${CALL_SUBDOMAIN}.`))) return fail(rayoError('item-not-found', 'no such call, mixer or component'));
      return client.deliver(buildIqResult(replyAddress(iq, client), buildDiscoInfo(RAYO_DISCO.service)));
    }
    const entity = classifyJid(iq.attrs.to!, serviceDomain);
    if (!entity) return fail(rayoError('item-not-found', 'no such call, mixer or component'));
    if (type !== 'set') return fail(rayoError('service-unavailable', 'Rayo commands come in iq type set'));
    const checked = commandPayload(iq);
    if (!checked.ok) return fail(checked.error, payload);
    const parsed = parseCommand(checked.value);
    if (!parsed.ok) return fail(parsed.error, checked.value);
    const command = parsed.value;
    if (!(await this.allowed(client))) return fail(rayoError('forbidden', 'this account may not use Rayo (RayoAllowed is No)'), checked.value);
    switch (entity.kind) {
      case 'service': {
        const wrong = commandError('service', command);
        if (wrong) return fail(wrong, checked.value);
        return this.dial(iq, client, command as DialCommand, serviceDomain);
      }
      case 'call': {
        const wrong = commandError('call', command);
        if (wrong) return fail(wrong, checked.value);
        const held = this.calls.get(entity.callId);
        if (!held || held.call.accountId !== client.account.id) return fail(rayoError('item-not-found', 'no such call'), checked.value);
        return this.callCommand(iq, client, held, command, checked.value);
      }
      case 'mixer':
        return fail(unsupportedCommand('mixers are not available yet'), checked.value);
      case 'component': {
        const held = entity.parent.kind === 'call' ? this.calls.get(entity.parent.callId) : undefined;
        const component = held && held.call.accountId === client.account.id ? held.components.get(entity.componentId) : undefined;
        if (!held || !component) return fail(rayoError('item-not-found', 'no such component'), checked.value);
        if (held.call.controller !== client.jid) return fail(rayoError('conflict', 'another client controls this call'), checked.value);
        const wrong = commandError({ component: component.kind }, command);
        if (wrong) return fail(wrong, checked.value);
        const refused = component.command(command as Parameters<RayoComponent['command']>[0]);
        if (refused) return fail(refused, checked.value);
        return client.deliver(buildIqResult(replyAddress(iq, client)));
      }
    }
  }

  private async callCommand(iq: XmlElement, client: ImClient, held: HeldCall, command: RayoCommand, payload: XmlElement): Promise<void> {
    const { call } = held;
    const fail = (error: RayoError): void => client.deliver(buildIqError(replyAddress(iq, client), error, payload));
    const ok = (): void => client.deliver(buildIqResult(replyAddress(iq, client)));
    if (call.ended) return fail(rayoError('item-not-found', 'the call is over'));
    if (call.controller !== undefined && call.controller !== client.jid) return fail(rayoError('conflict', 'another client controls this call'));
    if (call.controller === undefined && !held.offeredTo.has(client.jid)) return fail(rayoError('item-not-found', 'no such call'));
    const unanswered = call.state === 'offered' || call.state === 'accepted';
    switch (command.kind) {
      case 'accept':
        if (!unanswered) return fail(rayoError('unexpected-request', 'the call is not waiting to be accepted'));
        this.takeControl(held, client.jid);
        call.accept(client.jid);
        return ok();
      case 'answer':
        if (!unanswered) return fail(rayoError('unexpected-request', 'the call is not waiting to be answered'));
        this.takeControl(held, client.jid);
        try {
          await call.answer(client.jid);
        } catch (err) {
          this.log.warn({ event: 'rayo.answer_failed', call: call.id, error: errorText(err) }, 'a Rayo call could not be answered');
          call.reject(488, 'the media could not be answered');
          return fail(rayoError('bad-request', `the call's media could not be answered: ${errorText(err)}`));
        }
        return ok();
      case 'reject':
        if (!unanswered) return fail(rayoError('unexpected-request', 'only a call not answered yet can be rejected'));
        this.takeControl(held, client.jid);
        call.reject(codeOfRejectReason(command.reason), command.reason);
        return ok();
      case 'redirect': {
        if (!unanswered) return fail(rayoError('unexpected-request', 'only a call not answered yet can be redirected'));
        const target = addressOfUri(command.to);
        if ('condition' in target) return fail(target);
        this.takeControl(held, client.jid);
        call.redirect(target.address);
        return ok();
      }
      case 'hangup':
        this.takeControl(held, client.jid);
        ok();
        call.hangup();
        return;
      case 'input':
      case 'output':
      case 'prompt': {
        if (!call.answeredMedia) return fail(rayoError('unexpected-request', 'the call has no media yet: answer it first'));
        const id = randomId(10).toLowerCase();
        const completed = (component: RayoComponent, reason: CompleteReason): void => this.completed(held, component, reason);
        const renderer = this.options.renderer;
        const started =
          command.kind === 'input'
            ? InputCollector.start(id, command, call, completed)
            : command.kind === 'output'
              ? await OutputPlayer.start(id, command, call, renderer, completed)
              : await PromptRunner.start(id, command, call, renderer, completed, (component) => this.componentEvent(held, component, { kind: 'input-timers-started' }));
        if ('condition' in started) return fail(started);
        if (call.ended) {
          started.hangup();
          return fail(rayoError('item-not-found', 'the call ended'));
        }
        held.components.set(id, started);
        client.deliver(buildIqResult(replyAddress(iq, client), buildRef({ uri: xmppUri(componentJid(callJid(call.id, held.domain), id)) })));
        this.log.info({ event: 'rayo.component_started', call: call.id, component: id, kind: command.kind }, 'a Rayo component started');
        return;
      }
      case 'record': {
        if (!call.answeredMedia) return fail(rayoError('unexpected-request', 'the call has no media yet: answer it first'));
        const storage = this.options.recordings;
        if (!storage) return fail(unsupportedCommand('recordings have no storage on this server'));
        const id = randomId(10).toLowerCase();
        const started = await Recorder.start(id, call.id, call.accountId, command, call, storage, (component, reason) => this.completed(held, component, reason));
        if ('condition' in started) return fail(started);
        if (call.ended) {
          started.hangup();
          return fail(rayoError('item-not-found', 'the call ended'));
        }
        held.components.set(id, started);
        client.deliver(buildIqResult(replyAddress(iq, client), buildRef({ uri: xmppUri(componentJid(callJid(call.id, held.domain), id)) })));
        this.log.info({ event: 'rayo.component_started', call: call.id, component: id, kind: 'record' }, 'a Rayo component started');
        return;
      }
      default:
        return fail(unsupportedCommand(`${command.kind} is not available yet`));
    }
  }

  /** The first to accept, answer or reject controls the call; the other clients offered it are told it ended. */
  private takeControl(held: HeldCall, jid: string): void {
    if (held.call.controller !== undefined) return;
    held.call.controller = jid;
    for (const other of held.offeredTo) {
      if (other !== jid) this.sendEvent(held, other, { kind: 'end', reason: 'hangup-command', headers: NO_HEADERS });
    }
    held.offeredTo.clear();
  }

  private async dial(iq: XmlElement, client: ImClient, dial: DialCommand, domain: string): Promise<void> {
    const fail = (error: RayoError): void => client.deliver(buildIqError(replyAddress(iq, client), error));
    if (dial.joins.length > 0) return fail(unsupportedCommand('join in dial is not available yet'));
    const target = addressOfUri(dial.to);
    if ('condition' in target) return fail(target);
    if (dial.from !== undefined) {
      const from = parsePartyUri(dial.from, 'from');
      if ('condition' in from) return fail(from);
    }
    const accountId = client.account.id;
    if ((this.perAccount.get(accountId) ?? 0) >= this.callsPerAccount) return fail(rayoError('resource-constraint', `an account may have ${this.callsPerAccount} Rayo calls at once`));
    const id = randomId(12).toLowerCase();
    const own = `${client.account.name}@${client.account.domain}`;
    const held = this.hold(id, accountId, domain, { address: dial.from ?? `sip:${own}` }, { address: dial.to }, undefined);
    held.call.controller = client.jid;
    let sdp: string;
    try {
      sdp = await held.call.dialOffer();
    } catch (err) {
      held.call.hangup();
      return fail(rayoError('resource-constraint', `no media for the call: ${errorText(err)}`));
    }
    let placed: { address: PortAddress };
    try {
      placed = this.callService.place({ from: { address: own }, to: target.address, sdp, caller: held.call.address, accountId });
    } catch (err) {
      held.call.hangup();
      if (err instanceof CallRefused) return fail(rayoError('resource-constraint', err.message));
      throw err;
    }
    held.call.dialed(placed.address);
    client.deliver(buildIqResult(replyAddress(iq, client), buildRef({ uri: xmppUri(callJid(id, domain)) })));
    this.log.info({ event: 'rayo.dial', call: id, jid: client.jid, to: dial.to }, 'a Rayo client placed a call');
    if (dial.timeout > 0) {
      setTimeout(() => held.call.timeout(), dial.timeout).unref();
    }
  }

  // --- the call engine's side ---

  /** A call for an account with Rayo clients: held here, offered to each of them. */
  private offer(accountId: number, invite: Extract<Signal, { kind: 'invite' }>, replyTo: PortAddress): RayoCall | undefined {
    const clients = this.available.get(accountId);
    if (!clients || clients.size === 0) return undefined;
    const domain = [...clients.values()][0]!.account.domain;
    const id = randomId(12).toLowerCase();
    const held = this.hold(id, accountId, domain, invite.from, invite.to, { peer: replyTo, sdp: invite.sdp });
    const from = uriOf(invite.from.address);
    const to = uriOf(invite.to.address);
    for (const jid of clients.keys()) {
      held.offeredTo.add(jid);
      this.sendEvent(held, jid, { kind: 'offer', to, from, headers: NO_HEADERS }, true);
    }
    this.log.info({ event: 'rayo.offer', call: id, account: accountId, clients: clients.size }, 'a call was offered to Rayo clients');
    return held.call;
  }

  private hold(id: string, accountId: number, domain: string, from: { address: string }, to: { address: string }, incoming: { peer: PortAddress; sdp: string | undefined } | undefined): HeldCall {
    const offeredTo = new Set<string>();
    let held: HeldCall | undefined;
    const call = new RayoCall(this.callService.router, id, accountId, from, to, () => this.options.openMedia(id), {
      ringing: (c) => c.controller && this.sendEvent(held!, c.controller, { kind: 'ringing', headers: NO_HEADERS }),
      answered: (c) => c.controller && this.sendEvent(held!, c.controller, { kind: 'answered', headers: NO_HEADERS }),
      ended: (_c, reason, code) => this.ended(held!, reason, code),
    }, incoming);
    held = { call, domain, offeredTo, components: new Map() };
    this.calls.set(id, held);
    this.perAccount.set(accountId, (this.perAccount.get(accountId) ?? 0) + 1);
    return held;
  }

  /** A component completed: its `complete` goes to the call's controller. */
  private completed(held: HeldCall, component: RayoComponent, reason: CompleteReason): void {
    held.components.delete(component.id);
    const recording = component instanceof Recorder ? component.recording : undefined;
    this.componentEvent(held, component, { kind: 'complete', reason, ...(recording && { recording }) });
  }

  /** An event of a component, as presence from it to the call's controller. */
  private componentEvent(held: HeldCall, component: RayoComponent, event: RayoEvent): void {
    const controller = held.call.controller;
    if (!controller) return;
    const from = componentJid(callJid(held.call.id, held.domain), component.id);
    this.deliverTo(held, controller, buildEventPresence({ from, to: controller }, event, { stamp: new Date() }));
  }

  private ended(held: HeldCall, reason: EndReason, code?: number): void {
    const { call } = held;
    // Its components complete first (reason hangup), then the call ends.
    for (const component of [...held.components.values()]) component.hangup();
    this.calls.delete(call.id);
    const count = (this.perAccount.get(call.accountId) ?? 1) - 1;
    if (count > 0) this.perAccount.set(call.accountId, count);
    else this.perAccount.delete(call.accountId);
    const told = call.controller !== undefined ? [call.controller] : [...held.offeredTo];
    const event: RayoEvent = { kind: 'end', reason, ...(code !== undefined && { platformCode: String(code) }), headers: NO_HEADERS };
    for (const jid of told) this.sendEvent(held, jid, event);
    this.log.info({ event: 'rayo.call_ended', call: call.id, reason, code }, 'a Rayo call ended');
  }

  /** An event of a call, as presence from the call to a client of this node. */
  private sendEvent(held: HeldCall, jid: string, event: RayoEvent, withCaps = false): void {
    const from = callJid(held.call.id, held.domain);
    const caps = withCaps ? { node: NS_RAYO_CALL, ver: capsVer(RAYO_DISCO.service) } : undefined;
    this.deliverTo(held, jid, buildEventPresence({ from, to: jid }, event, { ...(caps && { caps }), stamp: new Date() }));
  }

  /** A stanza for a client of this node (gone clients get nothing). */
  private deliverTo(held: HeldCall, jid: string, stanza: XmlElement): void {
    const client = this.available.get(held.call.accountId)?.get(jid) ?? this.im.router.resource(held.call.accountId, parseJid(jid).resource)?.client;
    client?.deliver(stanza);
  }

  private async allowed(client: ImClient): Promise<boolean> {
    const account = await this.im.accountOf(`${client.account.name}@${client.account.domain}`);
    if (!account) return false;
    const settings = await this.accounts.effectiveSettings(account);
    return settings.RayoAllowed === 'Yes';
  }
}

/** Where a call goes, from a Rayo URI: a local or remote address the call engine resolves. */
function addressOfUri(uri: string): { address: string } | RayoError {
  const party = parsePartyUri(uri, 'to');
  if ('condition' in party) return party;
  switch (party.scheme) {
    case 'sip':
    case 'sips':
      return { address: party.uri };
    case 'tel':
      return { address: uri.slice(uri.indexOf(':') + 1).split(';')[0]! };
    case 'xmpp':
      return { address: party.jid.bare };
  }
}

/** An address as the URI an offer shows (sip: for addresses, tel: for numbers). */
function uriOf(address: string): string {
  if (/^(sips?|tel|xmpp):/i.test(address)) return address;
  if (/^\+?[0-9][0-9().\- ]*$/.test(address)) return `tel:${address.replace(/[().\- ]/g, '')}`;
  return `sip:${address}`;
}

function replyAddress(iq: XmlElement, client: ImClient): { from: string; to: string; id: string } {
  return { from: iq.attrs.to!, to: client.jid, id: iq.attrs.id ?? '' };
}

/** A stanza error answering a message or presence (RFC 6120 8.3). */
function errorOf(stanza: XmlElement, error: RayoError): XmlElement {
  return el(stanza.name, { from: stanza.attrs.to, to: stanza.attrs.from, type: 'error', id: stanza.attrs.id }, buildErrorElement(error));
}
