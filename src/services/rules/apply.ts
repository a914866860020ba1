import { errorText, type Logger } from '../../log.js';
/**
 * Running an account's Mail Rules on one incoming message. This decides; it does not act:
 * the result is a plan (copies to store, messages to send, addresses to remember) that final
 * delivery carries out (src/transports/smtp/local-delivery.ts), so that stores can all be
 * committed before anything is sent.
 *
 * Semantics:
 * - Active rules (priority 1..10) run highest priority first (then by name); a rule applies
 *   when all its conditions hold (a rule without conditions always applies); its actions
 *   run in order against the message as earlier actions left it (Add Header, Tag Subject).
 * - Store in stores a copy at that point; the INBOX copy is made at the end unless Discard
 *   or Reject with cancelled it. Mark changes the flags of the copies stored after it.
 * - Stop Processing and Reject with end the processing after the current rule's actions.
 * - Reply with / Reply to All with answer only messages that are human-generated (which
 *   excludes the null sender), never the account itself, and the store's vacation log lets
 *   each rule reply to one address at most once in REPLY_INTERVAL.
 * - Messages sent by rules carry a Received field; a message that already carries
 *   MAX_HOPS of them, or one naming this account's rules, is not redirected, mirrored or
 *   forwarded again (mail loops).
 * - Every action has an ordinal: its position among all actions of the active rules, in
 *   rule order, from 1 (0 is the INBOX copy). Delivery keys derive from it, so a delivery
 *   run again after a crash stores and sends nothing twice.
 */
import type { AccountRecord } from '../../store/store.js';
import type { RuleRecord } from '../../store/rules.js';
import { fullName } from '../accounts.js';
import { ServiceError } from '../errors.js';
import { Flag, parseFlagChange } from '../mail/flags.js';
import { applyFlagDelta } from '../../store/store.js';
import type { Address } from '../mime/index.js';
import { rfcDateInZone } from '../mime/dates.js';
import { forwardMessage, prependHeaderFields, resentFields, textMessage, type GeneratedField } from '../mime/outgoing.js';
import { conditionHolds, isHumanGenerated, type ConditionContext } from './conditions.js';
import { RuleMessage } from './message.js';
import { actionSpec, isNoParameter, parseHeaderLines, parseReplyTemplate, parseTargets, qualifyAddress } from './model.js';

/** A message that already passed through this many Received fields is not sent on by rules. */
export const MAX_HOPS = 30;
/** Messages rules may send for one delivery; further sends are skipped (and logged). */
export const MAX_SENDS = 10;
/** Recipients of all messages rules send for one delivery. */
export const MAX_SEND_RECIPIENTS = 50;
/** One vacation reply per sender address and rule within this time. */
export const REPLY_INTERVAL_MS = 7 * 24 * 3600 * 1000;

const DEFAULT_REJECT_TEXT = 'the message was rejected by the recipient\'s mail rules';

export interface PlannedCopy {
  /** 0 for the INBOX copy, else the Store in action's ordinal. */
  ordinal: number;
  mailbox: string;
  /** Without Return-Path (final delivery adds it). */
  raw: Buffer;
  flags: number;
  keywords: readonly string[];
}

export interface PlannedSend {
  ordinal: number;
  /** The action that sends it ("Redirect to", ...), for logs. */
  action: string;
  rule: string;
  /** Envelope sender: '' for replies. */
  sender: string;
  recipients: string[];
  raw: Buffer;
  /** How the content reached the server (the Source condition of local recipients). */
  source: 'authenticated' | 'remote';
  /** For replies: the vacation log entry to claim before sending. */
  reply?: { address: string };
}

export interface PlannedRemember {
  ordinal: number;
  dataset: string;
  address: string;
  realName?: string;
}

export interface DeliveryPlan {
  /** Store in copies, in rule order. */
  copies: PlannedCopy[];
  /** The INBOX copy; undefined when a rule discarded or rejected the message. */
  inbox: PlannedCopy | undefined;
  sends: PlannedSend[];
  remember: PlannedRemember[];
  /** Set by Reject with: the text for the sender. */
  rejected?: string;
  /** The names of the rules that applied, in order (logs). */
  applied: string[];
}

export interface PlanContext extends ConditionContext {
  account: AccountRecord;
  /** This server's name: Message-IDs and Received fields of the messages rules send. */
  hostName: string;
  /** The account's time zone (dates of the messages rules send). */
  timeZone: string;
  /** Where skipped rules and actions are reported (component delivery). */
  log: Logger;
}

/** The plan without rules: the message into INBOX, flagged Recent. */
export function plainPlan(raw: Buffer): DeliveryPlan {
  return { copies: [], inbox: { ordinal: 0, mailbox: 'INBOX', raw, flags: Flag.Recent, keywords: [] }, sends: [], remember: [], applied: [] };
}

function sameAddress(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase();
}

class Planner {
  private readonly plan: DeliveryPlan = { copies: [], inbox: undefined, sends: [], remember: [], applied: [] };
  private readonly message: RuleMessage;
  private readonly human: boolean;
  private readonly self: string;
  private flags: number = Flag.Recent;
  private keywords: readonly string[] = [];
  private keep = true;
  private stop = false;
  private sendRecipients = 0;

  constructor(
    raw: Buffer,
    private readonly ctx: PlanContext,
  ) {
    this.message = new RuleMessage(raw);
    // Decided on the message as it came in: rules' own header edits do not make it automatic.
    this.human = isHumanGenerated(this.message, ctx.sender);
    this.self = fullName(ctx.account);
  }

  async run(rules: readonly RuleRecord[]): Promise<DeliveryPlan> {
    let ordinal = 1;
    for (const rule of rules) {
      const first = ordinal;
      ordinal += rule.actions.length;
      if (this.stop) continue;
      let applies: boolean;
      try {
        applies = await this.applies(rule);
      } catch (err) {
        this.ctx.log.warn({ event: 'rules.condition_failed', account: this.self, rule: rule.name, error: errorText(err) }, 'a rule was skipped: a condition failed');
        continue;
      }
      if (!applies) continue;
      this.plan.applied.push(rule.name);
      for (const [i, action] of rule.actions.entries()) await this.act(rule, action.opCode, action.parameter, first + i);
    }
    if (this.keep) this.plan.inbox = this.copy(0, 'INBOX');
    return this.plan;
  }

  private async applies(rule: RuleRecord): Promise<boolean> {
    for (const condition of rule.conditions) if (!(await conditionHolds(condition, this.message, this.ctx))) return false;
    return true;
  }

  private copy(ordinal: number, mailbox: string): PlannedCopy {
    return { ordinal, mailbox, raw: this.message.raw, flags: this.flags, keywords: this.keywords };
  }

  private async act(rule: RuleRecord, opCode: string, parameter: string, ordinal: number): Promise<void> {
    const spec = actionSpec('mailIn', opCode);
    if (!spec) {
      this.ctx.log.warn({ event: 'rules.action_skipped', account: this.self, rule: rule.name, action: opCode }, 'an unknown action was ignored');
      return;
    }
    try {
      switch (spec.kind) {
        case 'store':
          this.plan.copies.push(this.copy(ordinal, parameter));
          return;
        case 'mark': {
          const marked = applyFlagDelta(this.flags, this.keywords, parseFlagChange(parameter));
          this.flags = marked.flags;
          this.keywords = marked.keywords;
          return;
        }
        case 'addHeader':
          this.message.prependFields(parseHeaderLines(parameter, 'Add Header'));
          return;
        case 'tagSubject':
          this.message.tagSubject(parameter.trim());
          return;
        case 'discard':
          this.keep = false;
          return;
        case 'reject':
          this.keep = false;
          this.stop = true;
          this.plan.rejected ??= isNoParameter(parameter) ? DEFAULT_REJECT_TEXT : parameter;
          return;
        case 'stop':
          this.stop = true;
          return;
        case 'remember': {
          const from = this.message.addresses('From')[0];
          if (from) this.plan.remember.push({ ordinal, dataset: parameter.replace(/^#/, '').trim(), address: from.address, realName: from.realName });
          return;
        }
        case 'reply':
        case 'replyAll':
          await this.reply(rule, opCode, parameter, ordinal, spec.kind === 'replyAll');
          return;
        case 'redirect':
        case 'mirror':
        case 'forward':
          await this.sendOn(rule, opCode, spec.kind, parameter, ordinal);
          return;
        default:
          return;
      }
    } catch (err) {
      // A stored rule that no longer makes sense (it was valid when written): skip the action.
      if (!(err instanceof ServiceError)) throw err;
      this.ctx.log.warn({ event: 'rules.action_skipped', account: this.self, rule: rule.name, action: opCode, error: err.message }, 'an action was skipped');
    }
  }

  private addSend(send: PlannedSend): void {
    if (this.plan.sends.length >= MAX_SENDS || this.sendRecipients + send.recipients.length > MAX_SEND_RECIPIENTS) {
      this.ctx.log.warn({ event: 'rules.action_skipped', account: this.self, rule: send.rule, action: send.action, error: 'too many messages sent by rules for one delivery' }, 'an action was skipped');
      return;
    }
    this.sendRecipients += send.recipients.length;
    this.plan.sends.push(send);
  }

  private targets(parameter: string): string[] {
    const out: string[] = [];
    for (const t of parseTargets(parameter)) {
      const address = qualifyAddress(t, this.ctx.account.domain);
      // Never back to the account itself (a loop at once).
      if (sameAddress(address, this.self) || sameAddress(address, this.ctx.recipient)) continue;
      if (!out.some((o) => sameAddress(o, address))) out.push(address);
    }
    return out;
  }

  /** The trace field of a message these rules send (what sentOnBy looks for). */
  private received(): string {
    return `Received: by ${this.ctx.hostName} (ximssd mail rules of <${this.self}>);\r\n\t${rfcDateInZone(new Date(), this.ctx.timeZone)}`;
  }

  private source(): 'authenticated' | 'remote' {
    return this.ctx.authenticated ? 'authenticated' : 'remote';
  }

  /** Redirect to, Mirror to, Forward to. */
  private async sendOn(rule: RuleRecord, action: string, kind: 'redirect' | 'mirror' | 'forward', parameter: string, ordinal: number): Promise<void> {
    const recipients = this.targets(parameter);
    if (recipients.length === 0) return;
    if (this.message.hops() >= MAX_HOPS) {
      this.ctx.log.warn({ event: 'rules.action_skipped', account: this.self, rule: rule.name, action, error: `the message has passed ${MAX_HOPS} hops (a mail loop?)` }, 'an action was skipped');
      return;
    }
    // Accounts sending a message on to each other: each sends it on once. (With the hop
    // limit alone, rules that send to two or more others multiply it at every hop.)
    if (this.message.sentOnBy(this.self)) {
      this.ctx.log.warn({ event: 'rules.action_skipped', account: this.self, rule: rule.name, action, error: 'these rules sent the message on before (a mail loop)' }, 'an action was skipped');
      return;
    }
    let raw: Buffer;
    let sender = this.ctx.sender;
    if (kind === 'mirror') {
      raw = prependHeaderFields(this.message.raw, [this.received()]);
    } else if (kind === 'redirect') {
      const resent = resentFields(this.self, recipients, this.ctx.hostName, this.ctx.timeZone);
      raw = prependHeaderFields(this.message.raw, [this.received(), ...resent]);
    } else {
      sender = this.self;
      raw = prependHeaderFields(await this.composeForward(recipients), [this.received()]);
    }
    this.addSend({ ordinal, action, rule: rule.name, sender, recipients, raw, source: this.source() });
  }

  /** The account as the From of the messages these rules write. */
  private from(): Address {
    return { address: this.self, realName: this.ctx.account.realName ?? undefined };
  }

  private composeForward(recipients: string[]): Promise<Buffer> {
    return forwardMessage({
      hostName: this.ctx.hostName,
      timeZone: this.ctx.timeZone,
      from: this.from(),
      to: recipients,
      subject: this.message.subject(),
      original: this.message.raw,
      text: `The attached message was forwarded by a mail rule of ${this.self}.\n`,
      extraFields: [['Auto-Submitted', 'auto-generated']],
    });
  }

  /** Reply with, Reply to All with. */
  private async reply(rule: RuleRecord, action: string, parameter: string, ordinal: number, all: boolean): Promise<void> {
    if (!this.human) return;
    const target: Address | undefined =
      this.message.addresses('Reply-To')[0] ?? this.message.addresses('From')[0] ?? (this.ctx.sender ? { address: this.ctx.sender } : undefined);
    if (!target || sameAddress(target.address, this.self) || sameAddress(target.address, this.ctx.recipient)) return;
    const recipients = [target.address];
    const cc: Address[] = [];
    if (all) {
      for (const a of this.message.addresses('To', 'Cc')) {
        if (sameAddress(a.address, this.self) || sameAddress(a.address, this.ctx.recipient)) continue;
        if (recipients.some((r) => sameAddress(r, a.address))) continue;
        recipients.push(a.address);
        cc.push(a);
      }
    }
    const subject = this.message.subject();
    const messageId = this.message.messageId();
    const substitute = (text: string): string => text.replace(/\^([SI])/g, (_, code: string) => (code === 'S' ? subject : messageId));
    const template = parseReplyTemplate(parameter);
    const fields = template.fields.map(([name, value]): [string, string] => [name, substitute(value)]);
    const has = (name: string): boolean => fields.some(([n]) => n.toLowerCase() === name);
    const header: GeneratedField[] = [];
    if (!has('from')) header.push(['From', this.from()]);
    header.push(['To', target], ...cc.map((a): GeneratedField => ['Cc', a]));
    if (!has('subject')) header.push(['Subject', /^re:/i.test(subject) ? subject : `Re: ${subject}`.trim()]);
    header.push(...fields);
    if (messageId !== '') {
      const references = (this.message.value('References') ?? '').match(/<[^<>\s]+>/g) ?? [];
      header.push(['In-Reply-To', messageId], ['References', [...references.slice(-9), messageId].join(' ')]);
    }
    header.push(['Auto-Submitted', 'auto-replied']);
    const raw = await textMessage({ hostName: this.ctx.hostName, timeZone: this.ctx.timeZone, fields: header, text: substitute(template.body) });
    this.addSend({ ordinal, action, rule: rule.name, sender: '', recipients, raw, source: 'authenticated', reply: { address: target.address.toLowerCase() } });
  }
}

/** Runs `rules` (the account's active Mail Rules, in order) on a message: what to store and send. */
export async function planDelivery(rules: readonly RuleRecord[], raw: Buffer, ctx: PlanContext): Promise<DeliveryPlan> {
  return new Planner(raw, ctx).run(rules);
}
