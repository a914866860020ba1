import type { BusEvents, EventBus } from '../../../bus/bus.js';
import type { AccountIdentity, Store } from '../../../store/store.js';
import { fitsRelay, keepForRelay, keptForRelay } from '../../../bus/kept.js';
import { parseStanza } from '../../../services/im/stanzas.js';
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
import { extensionHeaders, type Signal } from '../../../services/calls/signal.js';
import { MediaParty, type PartyMedia } from '../../../services/calls/media-party.js';
import { InputCollector, OutputPlayer, PromptRunner, type RayoComponent } from './components.js';
import { CallMix } from '../../../media/call-mix.js';
import type { PromptRenderer } from '../../../media/prompts.js';
import type { AudioSource } from '../../../media/endpoint.js';
import { SessionLimitError } from '../../../media/ports.js';
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
  mixerJid,
  NS_RAYO_MIXER,
  parseCallUri,
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
  type JoinCommand,
  type JoinTarget,
  type EndReason,
  type Header,
  type RayoCommand,
  type RayoError,
  type RayoEvent,
} from './elements.js';

/**
 * Who sends a Rayo command: a client of this node, or one of another node whose command was
 * forwarded here (XEP-0349), answered through the IM router wherever it is.
 */
type RayoParty = Pick<ImClient, 'account' | 'jid' | 'resource' | 'deliver'>;

/** A client of another node, whose command for a call of this node was forwarded here. */
class ForwardedParty implements RayoParty {
  constructor(
    readonly account: AccountIdentity,
    readonly jid: string,
    readonly resource: string,
    readonly deliver: (stanza: XmlElement) => void,
  ) {}
}

/** The longest body of a message to a call (as an INFO body: README Limits). */
const MESSAGE_BODY_BYTES = 16 * 1024;


/** The node a call id names (`<random>~<node>`), undefined for another id. */
function nodeOfCall(callId: string): string | undefined {
  const at = callId.lastIndexOf('~');
  return at > 0 && at < callId.length - 1 ? callId.slice(at + 1) : undefined;
}

/** A call of this node under Rayo control: where its JID is, and who was offered it. */
interface HeldCall {
  call: MediaParty;
  domain: string;
  offeredTo: Set<string>;
  /** Its running components, by id. */
  components: Map<string, RayoComponent>;
  /** Its dial's timeout, until it is answered or ends. */
  dialTimer?: NodeJS.Timeout | undefined;
  /** The join its dial asked for, made when it is answered. */
  pendingJoin?: JoinCommand | undefined;
  /** Its join: to another call (a private mix of the two) or to a mixer. */
  join: { mix: CallMix; target: JoinTarget; other?: HeldCall } | undefined;
}

/** A Rayo mixer (`<name>@mixer.<domain>`): the calls joined to it, and the components playing into it. */
interface HeldMixer {
  name: string;
  domain: string;
  accountId: number;
  mix: CallMix;
  members: Set<HeldCall>;
  /** Components on the mixer, with the client that started each (it gets their events). */
  components: Map<string, { component: RayoComponent; starter: string }>;
}

/** How many components run on one call (or mixer) at once. */
const COMPONENTS_PER_CALL = 16;

/** How many calls one account may have under Rayo control at once (config calls.rayoCallsPerAccount). */
const DEFAULT_CALLS_PER_ACCOUNT = 100;

export interface RayoServiceOptions {
  /** Where availability is told to the other nodes, and whether a node is alive (a cluster). */
  bus: EventBus;
  store: Store;
  /** The media end of each call (a MediaEndpoint of the gateway). */
  openMedia: (callId: string) => PartyMedia;
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
 * not built yet). Components (input, output, prompt: components.ts) run on answered calls and
 * on mixers (output); joins mix calls with each other or in a named mixer (src/media/call-mix.ts).
 */
export class RayoService implements ImComponent, DomainService {
  /** The potential controlling parties of this node, by account: full JID → client. */
  private readonly available = new Map<number, Map<string, ImClient>>();
  private readonly calls = new Map<string, HeldCall>();
  private readonly perAccount = new Map<number, number>();
  /**
   * Mixers by account and name (names are case-insensitive, as JID local parts are): each
   * account has its own mixers — another account's are not there for it, not even by name
   * (XEP-0327's security zones).
   */
  private readonly mixers = new Map<string, HeldMixer>();
  private readonly callsPerAccount: number;
  private readonly node: string;
  /** The potential controlling parties on other nodes, by account: full JID → node. */
  private readonly elsewhere = new Map<number, Map<string, string>>();
  private readonly unsubscribe: (() => void)[];

  constructor(
    private readonly im: ImService,
    private readonly accounts: AccountService,
    private readonly callService: CallService,
    private readonly log: Logger,
    private readonly options: RayoServiceOptions,
  ) {
    this.callsPerAccount = options.callsPerAccount ?? DEFAULT_CALLS_PER_ACCOUNT;
    this.node = callService.router.node;
    callService.addApplications(async (account) => {
      const node = await this.nodeFor(account.id);
      return node ? [{ kind: 'rayo', node, accountId: account.id }] : [];
    });
    this.unsubscribe = [
      options.bus.on('rayoClient', (event, remote) => remote && event.node !== this.node && this.heard(event)),
      options.bus.on('rayoCommand', (event, remote) => {
        if (remote && event.node === this.node) void this.forwarded(event).catch((err: unknown) => this.log.error({ event: 'rayo.failed', error: errorText(err) }, 'a forwarded Rayo command failed'));
      }),
      // Events may have been missed: forget what other nodes said, and ask them again.
      options.bus.on('resync', () => {
        this.elsewhere.clear();
        options.bus.publish('rayoClient', { node: this.node, ask: true });
      }),
    ];
    // A node that starts learns the clients the others already have.
    options.bus.publish('rayoClient', { node: this.node, ask: true });
    callService.onTarget(
      'rayo',
      (target, invite, replyTo) => this.offer(target.accountId, invite, replyTo),
      (target) => ({ accountId: target.accountId }),
    );
  }

  /** A call's id names the node that holds it (`<random>~<node>`): a command for it from a client of another node is forwarded there. */
  private newCallId(): string {
    return `${randomId(12).toLowerCase()}~${this.node}`;
  }

  /** Hangs up every call (server shutdown). */
  close(): void {
    for (const off of this.unsubscribe) off();
    for (const [accountId, clients] of this.available) for (const jid of clients.keys()) this.tell(accountId, jid, false);
    for (const { call } of [...this.calls.values()]) call.hangup();
    for (const mixer of this.mixers.values()) mixer.mix.close();
    this.mixers.clear();
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
    // Availability only: subscriptions and probes to the server's JID stay the IM service's.
    if (stanza.name === 'presence') return stanza.attrs.type === undefined || stanza.attrs.type === 'unavailable';
    if (stanza.name !== 'iq') return false;
    const payload = stanza.elements()[0];
    return payload !== undefined && payload.attrs.xmlns === NS_RAYO;
  }

  async handle(stanza: XmlElement, origin: ImClient): Promise<void> {
    try {
      if (stanza.name === 'presence') return await this.presence(stanza, origin);
      if (stanza.name === 'iq') return await this.command(stanza, origin);
      if (stanza.name === 'message' && stanza.attrs.type !== 'error') return await this.message(stanza, origin);
    } catch (err) {
      this.log.error({ event: 'rayo.failed', error: errorText(err) }, 'a Rayo request failed');
      if (stanza.name === 'iq' && (stanza.attrs.type === 'set' || stanza.attrs.type === 'get')) {
        origin.deliver(errorOf(stanza, rayoError('internal-server-error', 'the request failed on the server')));
      }
    }
  }

  /**
   * A message to a call from its controlling party (XEP example 090): its body goes to the other
   * party within the call, as a SIP MESSAGE in the call's dialog (a XIMSS party gets callInfo).
   */
  private async message(stanza: XmlElement, client: RayoParty): Promise<void> {
    const fail = (error: RayoError): void => client.deliver(errorOf(stanza, error));
    const to = parseJid(stanza.attrs.to!);
    const domain = to.domain.startsWith(`${CALL_SUBDOMAIN}.`) ? to.domain.slice(CALL_SUBDOMAIN.length + 1) : undefined;
    if (!to.local || to.resource || domain !== client.account.domain) return fail(rayoError('feature-not-implemented', 'messages go to a call (<id>@call.<domain>)', 'cancel'));
    const held = this.calls.get(to.local);
    if (!held) {
      const holder = nodeOfCall(to.local);
      if (holder !== undefined && holder !== this.node && this.isLocal(client)) return this.forward(holder, stanza, client);
      return fail(rayoError('item-not-found', 'no such call'));
    }
    if (held.call.accountId !== client.account.id) return fail(rayoError('item-not-found', 'no such call'));
    if (held.call.controller !== client.jid) return fail(rayoError('conflict', 'another client controls this call'));
    if (held.call.state !== 'answered') return fail(rayoError('unexpected-request', 'the call is not answered'));
    const body = stanza.element('body')?.text() ?? '';
    if (body === '') return fail(rayoError('bad-request', 'the message has no body'));
    if (Buffer.byteLength(body) > MESSAGE_BODY_BYTES) return fail(rayoError('policy-violation', `a message to a call takes at most ${MESSAGE_BODY_BYTES} bytes`));
    held.call.message(body);
  }

  /** An iq to the Rayo service, a call, a mixer or a component, from a client here or (forwarded) of another node. */
  private async command(iq: XmlElement, client: RayoParty): Promise<void> {
    try {
      await this.iq(iq, client);
    } catch (err) {
      this.log.error({ event: 'rayo.failed', error: errorText(err) }, 'a Rayo request failed');
      if (iq.attrs.type === 'set' || iq.attrs.type === 'get') client.deliver(errorOf(iq, rayoError('internal-server-error', 'the request failed on the server')));
    }
  }

  /**
   * XEP-0349: a command for a call another node holds goes there (bus topic `rayoCommand`), and
   * that node answers the client through the IM router. A node that is not alive: item-not-found.
   */
  private async forward(node: string, iq: XmlElement, client: RayoParty): Promise<void> {
    const record = await this.options.store.cluster.node(node);
    if (!record || record.aliveUntil < Date.now()) {
      client.deliver(buildIqError(replyAddress(iq, client), rayoError('item-not-found', 'no such call (its node is gone)'), iq.elements()[0]));
      return;
    }
    const event = { node, accountId: client.account.id, name: client.account.name, domain: client.account.domain, jid: client.jid, resource: client.resource };
    const xml = iq.toString();
    if (fitsRelay(xml)) return this.options.bus.publish('rayoCommand', { ...event, xml });
    this.options.bus.publish('rayoCommand', { ...event, key: await keepForRelay(this.options.store.shared, 'rayo-command', xml) });
  }

  /** A command another node forwarded for a call of this one: run as if its client were here. */
  private async forwarded(event: BusEvents['rayoCommand']): Promise<void> {
    const xml = event.xml ?? (event.key !== undefined ? await keptForRelay(this.options.store.shared, 'rayo-command', event.key) : undefined);
    const stanza = xml === undefined ? undefined : parseStanza(xml);
    if (!stanza || (stanza.name !== 'iq' && stanza.name !== 'message')) return;
    const { accountId, resource } = event;
    const party = new ForwardedParty({ id: accountId, name: event.name, domain: event.domain }, event.jid, resource, (reply) => this.im.router.sendToResource(accountId, resource, reply));
    if (stanza.name === 'message') await this.message(stanza, party);
    else await this.command(stanza, party);
  }

  private async presence(stanza: XmlElement, client: ImClient): Promise<void> {
    const to = parseJid(stanza.attrs.to!);
    // Presence to a call, a mixer or their services says nothing: availability goes to the domain itself.
    if (to.local || (await this.serves(to.domain))) return;
    const state = parseClientPresence(stanza);
    if (!state) return;
    const accountId = client.account.id;
    // The client may have gone while its rights were read.
    if (state.available && (await this.allowed(client)) && this.attached(client)) {
      let clients = this.available.get(accountId);
      if (!clients) this.available.set(accountId, (clients = new Map()));
      if (!clients.has(client.jid)) {
        this.log.info({ event: 'rayo.client_available', jid: client.jid }, 'a Rayo client is available');
        this.tell(accountId, client.jid, true);
      }
      clients.set(client.jid, client);
      return;
    }
    const clients = this.available.get(accountId);
    if (clients?.delete(client.jid)) {
      this.log.info({ event: 'rayo.client_unavailable', jid: client.jid }, 'a Rayo client is no longer available');
      this.tell(accountId, client.jid, false);
      if (clients.size === 0) this.available.delete(accountId);
    }
    if (stanza.attrs.type === 'unavailable') {
      // The client is gone: the calls it controls end (the XEP leaves this to the server), here and on the other nodes.
      this.controllerGone(accountId, client.jid);
      this.options.bus.publish('rayoClient', { node: this.node, accountId, jid: client.jid, available: false, gone: true });
    }
  }

  /** A client went: the calls of this node it controls are hung up, what it plays into mixers here stops. */
  private controllerGone(accountId: number, jid: string): void {
    for (const { call } of [...this.calls.values()]) if (call.controller === jid && call.accountId === accountId) call.hangup();
    for (const mixer of this.mixers.values()) {
      if (mixer.accountId !== accountId) continue;
      for (const { component, starter } of [...mixer.components.values()]) if (starter === jid) component.hangup();
    }
  }

  private async iq(iq: XmlElement, client: RayoParty): Promise<void> {
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
    // An account uses the Rayo service of its own domain (its calls and mixers are there).
    if (!entity || serviceDomain !== client.account.domain) return fail(rayoError('item-not-found', 'no such call, mixer or component'));
    // A call of another node (or a component of one): the command goes there.
    const callId = entity.kind === 'call' ? entity.callId : entity.kind === 'component' && entity.parent.kind === 'call' ? entity.parent.callId : undefined;
    const holder = callId === undefined || this.calls.has(callId) ? undefined : nodeOfCall(callId);
    if (holder !== undefined && holder !== this.node && this.isLocal(client)) return this.forward(holder, iq, client);
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
      case 'mixer': {
        const wrong = commandError('mixer', command);
        if (wrong) return fail(wrong, checked.value);
        const mixer = this.mixers.get(mixerKey(client.account.id, entity.name));
        if (!mixer) return fail(rayoError('item-not-found', 'no such mixer'), checked.value);
        return this.mixerCommand(iq, client, mixer, command, checked.value);
      }
      case 'component': {
        if (entity.parent.kind === 'mixer') {
          const entry = this.mixers.get(mixerKey(client.account.id, entity.parent.name))?.components.get(entity.componentId);
          if (!entry || entry.starter !== client.jid) return fail(rayoError('item-not-found', 'no such component'), checked.value);
          const wrong = commandError({ component: entry.component.kind }, command);
          if (wrong) return fail(wrong, checked.value);
          const refused = entry.component.command(command as Parameters<RayoComponent['command']>[0]);
          if (refused) return fail(refused, checked.value);
          return client.deliver(buildIqResult(replyAddress(iq, client)));
        }
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

  private async callCommand(iq: XmlElement, client: RayoParty, held: HeldCall, command: RayoCommand, payload: XmlElement): Promise<void> {
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
          await call.answer(client.jid, headerPairs(command.headers));
        } catch (err) {
          // The call has refused its caller and ended (MediaParty.answer); the client is told why.
          this.log.warn({ event: 'rayo.answer_failed', call: call.id, error: errorText(err) }, 'a Rayo call could not be answered');
          if (err instanceof SessionLimitError) return fail(rayoError('resource-constraint', `no media session is free: ${errorText(err)}`));
          return fail(rayoError('bad-request', `the call's media could not be answered: ${errorText(err)}`));
        }
        return ok();
      case 'reject':
        if (!unanswered) return fail(rayoError('unexpected-request', 'only a call not answered yet can be rejected'));
        this.takeControl(held, client.jid);
        call.reject(codeOfRejectReason(command.reason), command.reason, headerPairs(command.headers));
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
        call.hangup(headerPairs(command.headers));
        return;
      case 'join': {
        const refused = this.join(held, command);
        if (refused) return fail(refused);
        return ok();
      }
      case 'unjoin': {
        const join = held.join;
        if (!join || (command.target && !sameTarget(command.target, join.target))) return fail(rayoError('service-unavailable', 'the call has no such join'));
        this.unjoin(held);
        return ok();
      }
      case 'input':
      case 'output':
      case 'prompt':
      case 'record': {
        if (!call.answeredMedia) return fail(rayoError('unexpected-request', 'the call has no media yet: answer it first'));
        if (held.components.size >= COMPONENTS_PER_CALL) return fail(rayoError('resource-constraint', `a call runs at most ${COMPONENTS_PER_CALL} components at once`));
        const id = randomId(10).toLowerCase();
        const completed = (component: RayoComponent, reason: CompleteReason): void => this.completed(held, component, reason);
        const renderer = this.options.renderer;
        let started: RayoComponent | RayoError;
        switch (command.kind) {
          case 'input':
            started = InputCollector.start(id, command, call, completed);
            break;
          case 'output':
            started = await OutputPlayer.start(id, command, call, renderer, completed);
            break;
          case 'prompt':
            started = await PromptRunner.start(id, command, call, renderer, completed, (component) => this.componentEvent(held, component, { kind: 'input-timers-started' }));
            break;
          case 'record': {
            const storage = this.options.recordings;
            if (!storage) return fail(unsupportedCommand('recordings have no storage on this server'));
            started = await Recorder.start(id, call.id, call.accountId, command, call, storage, completed);
            break;
          }
        }
        if ('condition' in started) return fail(started);
        if (call.ended) {
          started.hangup();
          return fail(rayoError('item-not-found', 'the call ended'));
        }
        // Announced with its ref first; one that completed while it started (a key during a
        // prompt's rendering) reports that right after.
        held.components.set(id, started);
        client.deliver(buildIqResult(replyAddress(iq, client), buildRef({ uri: xmppUri(componentJid(callJid(call.id, held.domain), id)) })));
        this.log.info({ event: 'rayo.component_started', call: call.id, component: id, kind: command.kind }, 'a Rayo component started');
        if (started.finished) this.completed(held, started, started.completion!);
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

  private async dial(iq: XmlElement, client: RayoParty, dial: DialCommand, domain: string): Promise<void> {
    const fail = (error: RayoError): void => client.deliver(buildIqError(replyAddress(iq, client), error));
    if (dial.joins.length > 1) return fail(rayoError('feature-not-implemented', 'a call is in one join at a time: dial with one <join>', 'modify'));
    const join = dial.joins[0];
    if (join?.media === 'direct') return fail(rayoError('feature-not-implemented', 'media="direct" is not available: joins are bridged at the server (media="bridge")', 'modify'));
    const target = addressOfUri(dial.to);
    if ('condition' in target) return fail(target);
    if (dial.from !== undefined) {
      const from = parsePartyUri(dial.from, 'from');
      if ('condition' in from) return fail(from);
    }
    const accountId = client.account.id;
    if ((this.perAccount.get(accountId) ?? 0) >= this.callsPerAccount) return fail(rayoError('resource-constraint', `an account may have ${this.callsPerAccount} Rayo calls at once`));
    const id = this.newCallId();
    const own = `${client.account.name}@${client.account.domain}`;
    // The client controls the call once it has its ref: an end before that is not told (it gets the iq error).
    const held = this.hold(id, accountId, domain, { address: dial.from ?? `sip:${own}` }, { address: dial.to }, undefined);
    held.pendingJoin = join;
    let sdp: string;
    try {
      sdp = await held.call.dialOffer();
    } catch (err) {
      held.call.hangup();
      return fail(rayoError('resource-constraint', `no media for the call: ${errorText(err)}`));
    }
    if (!this.attached(client)) {
      held.call.hangup();
      return;
    }
    let placed: { address: PortAddress };
    try {
      const headers = extensionHeaders(dial.headers.map((h) => [h.name, h.value] as const));
      placed = this.callService.place({ from: { address: own }, to: target.address, sdp, caller: held.call.address, accountId, ...(headers && { headers }) });
    } catch (err) {
      held.call.hangup();
      if (err instanceof CallRefused) return fail(rayoError('resource-constraint', err.message));
      throw err;
    }
    held.call.dialed(placed.address);
    held.call.controller = client.jid;
    client.deliver(buildIqResult(replyAddress(iq, client), buildRef({ uri: xmppUri(callJid(id, domain)) })));
    this.log.info({ event: 'rayo.dial', call: id, jid: client.jid, to: dial.to }, 'a Rayo client placed a call');
    if (dial.timeout > 0) {
      held.dialTimer = setTimeout(() => held.call.timeout(), dial.timeout);
      held.dialTimer.unref();
    }
  }

  // --- the call engine's side ---

  // --- availability across the cluster ---

  /** Tells the other nodes that a client of this node became or stopped being available. */
  private tell(accountId: number, jid: string, available: boolean): void {
    this.options.bus.publish('rayoClient', { node: this.node, accountId, jid, available });
  }

  /** What another node said. */
  private heard(event: BusEvents['rayoClient']): void {
    if (event.ask) {
      for (const [accountId, clients] of this.available) for (const jid of clients.keys()) this.tell(accountId, jid, true);
      return;
    }
    if (event.accountId === undefined || event.jid === undefined) return;
    // A client of another node went: the calls here it controls end too.
    if (event.gone) this.controllerGone(event.accountId, event.jid);
    let clients = this.elsewhere.get(event.accountId);
    if (event.available) {
      if (!clients) this.elsewhere.set(event.accountId, (clients = new Map()));
      clients.set(event.jid, event.node);
    } else if (clients?.get(event.jid) === event.node) {
      clients.delete(event.jid);
      if (clients.size === 0) this.elsewhere.delete(event.accountId);
    }
  }

  /**
   * The node that holds a new call of the account for its Rayo clients: this one when it has
   * some, else the live node that has the most (XEP-0349's idea: the call lives where it is
   * controlled; the call engine carries its signals from whichever node the caller came in).
   */
  private async nodeFor(accountId: number): Promise<string | undefined> {
    if (this.available.get(accountId)?.size) return this.node;
    const clients = this.elsewhere.get(accountId);
    if (!clients || clients.size === 0) return undefined;
    const counts = new Map<string, number>();
    for (const node of clients.values()) counts.set(node, (counts.get(node) ?? 0) + 1);
    const now = Date.now();
    for (const [node] of [...counts].sort((x, y) => y[1] - x[1])) {
      const record = await this.options.store.cluster.node(node);
      if (record && record.aliveUntil >= now) return node;
    }
    return undefined;
  }

  /** A call for an account with Rayo clients: held here, offered to each of them. */
  private offer(accountId: number, invite: Extract<Signal, { kind: 'invite' }>, replyTo: PortAddress): MediaParty | undefined {
    // Every potential controlling party of the account, on every node (XEP-0349): those of other
    // nodes answer through forwarded commands.
    const clients = new Map<string, string>();
    for (const jid of this.available.get(accountId)?.keys() ?? []) clients.set(jid, this.node);
    for (const [jid, node] of this.elsewhere.get(accountId) ?? []) if (!clients.has(jid)) clients.set(jid, node);
    if (clients.size === 0) return undefined;
    if ((this.perAccount.get(accountId) ?? 0) >= this.callsPerAccount) {
      this.log.warn({ event: 'rayo.offer_refused', account: accountId, limit: this.callsPerAccount }, 'a call was not offered: the account has as many Rayo calls as it may');
      return undefined;
    }
    const domain = parseJid([...clients.keys()][0]!).domain;
    const id = this.newCallId();
    const held = this.hold(id, accountId, domain, invite.from, invite.to, { peer: replyTo, sdp: invite.sdp });
    const from = uriOf(invite.from.address);
    const to = uriOf(invite.to.address);
    const headers = (invite.headers ?? []).map(([name, value]) => ({ name, value }));
    for (const jid of clients.keys()) {
      held.offeredTo.add(jid);
      this.sendEvent(held, jid, { kind: 'offer', to, from, headers }, true);
    }
    this.log.info({ event: 'rayo.offer', call: id, account: accountId, clients: clients.size }, 'a call was offered to Rayo clients');
    return held.call;
  }

  private hold(id: string, accountId: number, domain: string, from: { address: string }, to: { address: string }, incoming: { peer: PortAddress; sdp: string | undefined } | undefined): HeldCall {
    const offeredTo = new Set<string>();
    let held: HeldCall | undefined;
    const call = new MediaParty(this.callService.router, id, accountId, from, to, () => this.options.openMedia(id), {
      ringing: (c) => c.controller && this.sendEvent(held!, c.controller, { kind: 'ringing', headers: NO_HEADERS }),
      answered: (c, headers) => {
        clearTimeout(held!.dialTimer);
        if (c.controller) this.sendEvent(held!, c.controller, { kind: 'answered', headers: rayoHeaders(headers) });
        // dial with a join: made once the call is answered (XEP "Joining Calls": the new call joins at once).
        const join = held!.pendingJoin;
        held!.pendingJoin = undefined;
        const refused = join && this.join(held!, join);
        if (refused) this.log.warn({ event: 'rayo.join_failed', call: c.id, error: refused.text }, "a dialed call could not be joined as its dial asked");
      },
      ended: (_c, reason, code, headers) => this.ended(held!, reason, code, headers),
    }, incoming);
    held = { call, domain, offeredTo, components: new Map(), join: undefined };
    this.calls.set(id, held);
    this.perAccount.set(accountId, (this.perAccount.get(accountId) ?? 0) + 1);
    return held;
  }

  /**
   * join (XEP "Joining Calls"): the call's audio mixed with another call's (a private mix of the
   * two) or a mixer's, bridged at the server; `media="direct"` (the two remote parties sending to
   * each other) is not done here. A call is in one join at a time.
   */
  private join(held: HeldCall, command: JoinCommand): RayoError | undefined {
    if (command.media === 'direct') return rayoError('feature-not-implemented', 'media="direct" is not available: joins are bridged at the server (media="bridge")', 'modify');
    if (!held.call.answeredMedia) return rayoError('unexpected-request', 'the call has no media yet: answer it first');
    if (held.join) return rayoError('conflict', 'the call is already joined: unjoin it first');
    const callUri = callJid(held.call.id, held.domain);
    if (command.target.kind === 'call') {
      const jid = parseCallUri(command.target.callUri);
      if ('condition' in jid) return jid;
      const other = jid.domain === `${CALL_SUBDOMAIN}.${held.domain}` ? this.calls.get(jid.local) : undefined;
      if (!other || other === held || other.call.accountId !== held.call.accountId) return rayoError('service-unavailable', 'no such call to join');
      if (!other.call.answeredMedia) return rayoError('not-allowed', 'the other call has no media yet');
      if (other.join) return rayoError('conflict', 'the other call is already joined');
      const mix = new CallMix(`${held.call.id}+${other.call.id}`, undefined);
      mix.add(held.call, command.direction);
      mix.add(other.call, 'duplex');
      held.join = { mix, target: command.target, other };
      other.join = { mix, target: { kind: 'call', callUri: xmppUri(callUri) }, other: held };
      this.callEvent(held, { kind: 'joined', target: { kind: 'call', callUri: xmppUri(callJid(other.call.id, other.domain)) } });
      this.callEvent(other, { kind: 'joined', target: { kind: 'call', callUri: xmppUri(callUri) } });
      this.log.info({ event: 'rayo.joined', call: held.call.id, other: other.call.id }, 'two Rayo calls were joined');
      return undefined;
    }
    const name = command.target.mixerName.toLowerCase();
    const key = mixerKey(held.call.accountId, name);
    let mixer = this.mixers.get(key);
    if (!mixer) {
      let created: HeldMixer | undefined;
      const mix = new CallMix(name, (memberId, transition) => created && this.speaking(created, memberId, transition));
      created = { name, domain: held.domain, accountId: held.call.accountId, mix, members: new Set(), components: new Map() };
      this.mixers.set(key, (mixer = created));
      // The mixer's first presence, with its caps (XEP example 042).
      const controller = held.call.controller;
      if (controller) this.deliverTo(held, controller, buildEventPresence({ from: mixerJid(name, held.domain), to: controller }, undefined, { caps: { node: NS_RAYO_MIXER, ver: capsVer(RAYO_DISCO.service) } }));
      this.log.info({ event: 'rayo.mixer_created', mixer: name, account: held.call.accountId }, 'a Rayo mixer was created');
    }
    mixer.mix.add(held.call, command.direction);
    mixer.members.add(held);
    held.join = { mix: mixer.mix, target: { kind: 'mixer', mixerName: name } };
    this.callEvent(held, { kind: 'joined', target: { kind: 'mixer', mixerName: name } });
    return undefined;
  }

  /** Leaves the call's join: the other call (or the mixer's last member) is left alone. */
  private unjoin(held: HeldCall): void {
    const join = held.join;
    if (!join) return;
    held.join = undefined;
    join.mix.remove(held.call.id);
    if (join.other) {
      const other = join.other;
      other.join = undefined;
      join.mix.close();
      this.callEvent(held, { kind: 'unjoined', target: join.target });
      this.callEvent(other, { kind: 'unjoined', target: { kind: 'call', callUri: xmppUri(callJid(held.call.id, held.domain)) } });
      return;
    }
    const key = mixerKey(held.call.accountId, join.target.kind === 'mixer' ? join.target.mixerName : '');
    const mixer = this.mixers.get(key);
    mixer?.members.delete(held);
    this.callEvent(held, { kind: 'unjoined', target: join.target });
    if (mixer && mixer.members.size === 0) {
      for (const { component } of [...mixer.components.values()]) component.hangup();
      mixer.mix.close();
      this.mixers.delete(key);
      // The mixer is gone: unavailable presence from it (its last call's controller is told).
      const controller = held.call.controller;
      if (controller) this.deliverTo(held, controller, el('presence', { from: mixerJid(mixer.name, mixer.domain), to: controller, type: 'unavailable' }));
      this.log.info({ event: 'rayo.mixer_removed', mixer: mixer.name }, 'a Rayo mixer was removed (its last call left)');
    }
  }

  /** Commands to a mixer: output components played into it. */
  private async mixerCommand(iq: XmlElement, client: RayoParty, mixer: HeldMixer, command: RayoCommand, payload: XmlElement): Promise<void> {
    const fail = (error: RayoError): void => client.deliver(buildIqError(replyAddress(iq, client), error, payload));
    if (command.kind !== 'output' && command.kind !== 'record') return fail(unsupportedCommand(`a mixer does not take <${command.kind}> here (output and record)`));
    if (mixer.components.size >= COMPONENTS_PER_CALL) return fail(rayoError('resource-constraint', `a mixer runs at most ${COMPONENTS_PER_CALL} components at once`));
    const id = randomId(10).toLowerCase();
    const from = componentJid(mixerJid(mixer.name, mixer.domain), id);
    const completed = (component: RayoComponent, reason: CompleteReason): void => {
      if (!mixer.components.delete(component.id)) return;
      const recording = component instanceof Recorder ? component.recording : undefined;
      this.deliverTo(undefined, client.jid, buildEventPresence({ from, to: client.jid }, { kind: 'complete', reason, ...(recording && { recording }) }, { stamp: new Date() }), mixer.accountId);
    };
    let started: RayoComponent | RayoError;
    if (command.kind === 'record') {
      const storage = this.options.recordings;
      if (!storage) return fail(unsupportedCommand('recordings have no storage on this server'));
      // A mixer's recording is its whole mix (every member, and what plays into it), one channel:
      // the record's direction, which is a call party's, has no meaning here. Beeps play into the mix.
      const media = { onAudio: (listener: (frame: Int16Array) => void) => mixer.mix.tap(listener), onSent: () => () => {}, play: (source: AudioSource) => mixer.mix.play(source) };
      started = await Recorder.start(id, `mixer-${mixer.name.replace(/[^A-Za-z0-9_.-]/g, '_')}`, mixer.accountId, { ...command, direction: 'send', mix: false }, media, storage, completed);
    } else started = await OutputPlayer.start(id, command, mixer.mix, this.options.renderer, completed);
    if ('condition' in started) return fail(started);
    if (!this.mixers.has(mixerKey(mixer.accountId, mixer.name))) {
      started.hangup();
      return fail(rayoError('item-not-found', 'the mixer is gone'));
    }
    mixer.components.set(id, { component: started, starter: client.jid });
    client.deliver(buildIqResult(replyAddress(iq, client), buildRef({ uri: xmppUri(from) })));
  }

  /** A member of a mixer started or stopped speaking: the controllers of its calls are told. */
  private speaking(mixer: HeldMixer, memberId: string, transition: 'started' | 'stopped'): void {
    const speaker = this.calls.get(memberId);
    if (!speaker) return;
    const callUri = xmppUri(callJid(speaker.call.id, speaker.domain));
    const from = mixerJid(mixer.name, mixer.domain);
    const told = new Set<string>();
    for (const member of mixer.members) {
      const controller = member.call.controller;
      if (!controller || told.has(controller)) continue;
      told.add(controller);
      this.deliverTo(member, controller, buildEventPresence({ from, to: controller }, { kind: transition === 'started' ? 'started-speaking' : 'stopped-speaking', callUri }, { stamp: new Date() }));
    }
  }

  /** An event of a call, to its controller. */
  private callEvent(held: HeldCall, event: RayoEvent): void {
    if (held.call.controller) this.sendEvent(held, held.call.controller, event);
  }

  /** A component completed: its `complete` goes to the call's controller. */
  private completed(held: HeldCall, component: RayoComponent, reason: CompleteReason): void {
    // Only a component the client has heard of (its ref was sent) reports its completion.
    if (!held.components.delete(component.id)) return;
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

  private ended(held: HeldCall, reason: EndReason, code?: number, headers?: [string, string][]): void {
    const { call } = held;
    clearTimeout(held.dialTimer);
    // Its components complete first (reason hangup), it leaves its join, then the call ends.
    for (const component of [...held.components.values()]) component.hangup();
    if (held.join) this.unjoin(held);
    this.calls.delete(call.id);
    const count = (this.perAccount.get(call.accountId) ?? 1) - 1;
    if (count > 0) this.perAccount.set(call.accountId, count);
    else this.perAccount.delete(call.accountId);
    const told = call.controller !== undefined ? [call.controller] : [...held.offeredTo];
    const event: RayoEvent = { kind: 'end', reason, ...(code !== undefined && { platformCode: String(code) }), headers: rayoHeaders(headers) };
    for (const jid of told) this.sendEvent(held, jid, event);
    this.log.info({ event: 'rayo.call_ended', call: call.id, reason, code }, 'a Rayo call ended');
  }

  /** An event of a call, as presence from the call to a client of this node. */
  private sendEvent(held: HeldCall, jid: string, event: RayoEvent, withCaps = false): void {
    const from = callJid(held.call.id, held.domain);
    const caps = withCaps ? { node: NS_RAYO_CALL, ver: capsVer(RAYO_DISCO.service) } : undefined;
    this.deliverTo(held, jid, buildEventPresence({ from, to: jid }, event, { ...(caps && { caps }), stamp: new Date() }));
  }

  /** A stanza for a client, of this node or (through the IM router) of another; gone clients get nothing. */
  private deliverTo(held: HeldCall | undefined, jid: string, stanza: XmlElement, accountId = held?.call.accountId): void {
    if (accountId === undefined) return;
    const local = this.available.get(accountId)?.get(jid);
    if (local) return local.deliver(stanza);
    this.im.router.sendToResource(accountId, parseJid(jid).resource, stanza);
  }

  /** Whether the client is still connected (its resource is the same client here, or is still known on its node). */
  private attached(client: RayoParty): boolean {
    const known = this.im.router.resource(client.account.id, client.resource);
    return known !== undefined && (known.client === undefined ? !this.isLocal(client) : known.client === client);
  }

  /** A party of this node (not one whose command was forwarded from another). */
  private isLocal(client: RayoParty): boolean {
    return !(client instanceof ForwardedParty);
  }

  /**
   * A client of this node is gone (its stream ended): it is no longer a potential controlling
   * party, the calls it controls are hung up and what it plays into mixers stops — whether or
   * not it had told the domain it was available.
   */
  clientGone(client: ImClient): void {
    const clients = this.available.get(client.account.id);
    if (clients?.get(client.jid) === client) {
      clients.delete(client.jid);
      this.tell(client.account.id, client.jid, false);
      if (clients.size === 0) this.available.delete(client.account.id);
    }
    this.controllerGone(client.account.id, client.jid);
    this.options.bus.publish('rayoClient', { node: this.node, accountId: client.account.id, jid: client.jid, available: false, gone: true });
  }

  private async allowed(client: RayoParty): Promise<boolean> {
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

function replyAddress(iq: XmlElement, client: RayoParty): { from: string; to: string; id: string } {
  return { from: iq.attrs.to!, to: client.jid, id: iq.attrs.id ?? '' };
}

/** A stanza error answering a message or presence (RFC 6120 8.3). */
function errorOf(stanza: XmlElement, error: RayoError): XmlElement {
  return el(stanza.name, { from: stanza.attrs.to, to: stanza.attrs.from, type: 'error', id: stanza.attrs.id }, buildErrorElement(error));
}

function sameTarget(a: JoinTarget, b: JoinTarget): boolean {
  if (a.kind === 'mixer' || b.kind === 'mixer') return a.kind === b.kind && (a as { mixerName: string }).mixerName.toLowerCase() === (b as { mixerName: string }).mixerName.toLowerCase();
  return a.callUri.toLowerCase() === b.callUri.toLowerCase();
}

function mixerKey(accountId: number, name: string): string {
  return `${accountId}/${name.toLowerCase()}`;
}

/** The SIP code of a Rayo reject reason. */
function codeOfRejectReason(reason: 'decline' | 'busy' | 'error'): number {
  return reason === 'busy' ? 486 : reason === 'decline' ? 603 : 500;
}

/** Events with no headers to show (ringing: provisional responses' headers are not carried). */
const NO_HEADERS: readonly Header[] = [];

/** Extension headers the other side sent (its 200, BYE or refusal), as Rayo events show them. */
function rayoHeaders(headers: readonly [string, string][] | undefined): readonly Header[] {
  return headers ? headers.map(([name, value]) => ({ name, value })) : NO_HEADERS;
}

/** A command's headers as the call engine carries them: extension (`X-`) headers only (signal.ts extensionHeaders). */
function headerPairs(headers: readonly Header[]): [string, string][] | undefined {
  return extensionHeaders(headers.map((h): [string, string] => [h.name, h.value]));
}
