import { checkDatasetPath } from '../../services/datasets.js';
import { ServiceError } from '../../services/errors.js';
import { Flag, parseInitialFlags } from '../../services/mail/flags.js';
import { prepareMessage } from '../../services/mail/new-message.js';
import type { MailboxHandle } from '../../services/mail/service.js';
import { decodeHeaderText, decodePartBody, findPart, headerValue, parseAddressList, parseHeaderBlock, parseMailAddress, parseMime } from '../../services/mime/index.js';
import { dispositionNotification, forwardMessage, prependHeaderFields, removeHeaderFields, resentFields } from '../../services/mime/outgoing.js';
import { formatAddress } from '../../services/mime/compose.js';
import type { XmlElement } from '../../xml/element.js';
import { inSession, type OperationTable, type SessionContext } from '../engine.js';
import { createOption, openFolder } from '../folders.js';
import { composeSecured, internalDateAttr, readMessage, uidAttr } from './message.js';

/**
 * Spec section "Message Operations", the sending half: messageSubmit, messageRedirect,
 * messageForward, messageConfirm. Each message is committed to the outbound queue before
 * the response; the queue delivers it (local recipients through their Mail Rules).
 */

/** Recipients one submission may have (as SMTP's RCPT limit). */
const MAX_RECIPIENTS = 1000;

interface Target {
  address: string;
  realName?: string;
}

function checkedAddress(text: string, what: string): Target {
  const parsed = parseMailAddress(text);
  if (!parsed) throw new ServiceError(`invalid ${what} address: ${text.trim().slice(0, 200)}`);
  return parsed;
}

/** The addresses of To/Cc/Bcc-like elements: text with a realName attribute, or an address list. */
function addressesOf(elements: readonly XmlElement[], what: string): Target[] {
  const targets: Target[] = [];
  for (const e of elements) {
    const text = e.text().trim();
    if (text === '') continue;
    const realName = e.attr('realName');
    if (realName === undefined && /[<,;]/.test(text)) {
      // Every entry of a list must be an address: none is dropped silently.
      for (const entry of splitAddressList(text)) {
        const target = checkedAddress(entry, what);
        targets.push(target.realName === undefined ? target : { ...target, realName: decodeHeaderText(target.realName) });
      }
    } else {
      targets.push({ ...checkedAddress(text, what), ...(realName ? { realName } : {}) });
    }
  }
  return targets;
}

/** `a@b, "Doe, J" <c@d>; e@f`: the entries of an address list, split outside quotes and angle brackets. */
function splitAddressList(text: string): string[] {
  const entries: string[] = [];
  let current = '';
  let quoted = false;
  let angle = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted && c === '\\') {
      current += c + (text[++i] ?? '');
      continue;
    }
    if (c === '"') quoted = !quoted;
    else if (!quoted && c === '<') angle = true;
    else if (!quoted && c === '>') angle = false;
    else if (!quoted && !angle && (c === ',' || c === ';')) {
      entries.push(current);
      current = '';
      continue;
    }
    current += c;
  }
  entries.push(current);
  return entries.map((e) => e.trim()).filter((e) => e !== '');
}

/**
 * An Envelope-To element: an address, leniently (the spec's own example writes
 * `a1@domain address`): the first thing in it that looks like one.
 */
function envelopeAddress(element: XmlElement): Target {
  const text = element.text().trim();
  const found = /[^\s<>",;]+@[^\s<>",;]+/.exec(text)?.[0];
  return checkedAddress(found ?? text, 'Envelope-To');
}

function limitRecipients(targets: Target[]): Target[] {
  const seen = new Set<string>();
  const unique = targets.filter((t) => {
    const key = t.address.toLowerCase();
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  if (unique.length === 0) throw new ServiceError('the message has no recipients');
  if (unique.length > MAX_RECIPIENTS) throw new ServiceError(`too many recipients (at most ${MAX_RECIPIENTS})`);
  return unique;
}

/** The user as a From value: `"Real Name" <addr>` (encoded) or `addr`. */
function ownFrom(ctx: SessionContext): string {
  return formatAddress(ctx.session.userName, ctx.session.account.realName ?? undefined);
}

function yes(value: string | undefined): boolean | undefined {
  if (value === undefined || value === '') return undefined;
  return value.toLowerCase() === 'yes';
}

/** The stored message a redirect or forward sends: the whole message, or an enclosed one (partID). */
async function storedOriginal(ctx: SessionContext): Promise<{ box: MailboxHandle; uid: number; raw: Buffer; partID: string | undefined }> {
  const folder = openFolder(ctx.session, ctx.request);
  const uid = uidAttr(ctx.request);
  const raw = await readMessage(ctx, folder.box, uid);
  const partID = ctx.request.attrs.partID || undefined;
  if (partID === undefined) return { box: folder.box, uid, raw, partID };
  const part = findPart(parseMime(raw), partID);
  if (!part) throw new ServiceError(`message part not found: ${partID}`);
  if (!part.message) throw new ServiceError(`message part ${partID} is not a message`);
  return { box: folder.box, uid, raw: decodePartBody(raw, part), partID };
}

async function submit(ctx: SessionContext, sender: string, recipients: readonly Target[], raw: Buffer, useDSN = false): Promise<void> {
  if (raw.length > ctx.server.config.limits.maxMessageBytes) throw new ServiceError('the message is too large');
  await ctx.server.queue.submit({
    sender,
    recipients: recipients.map((t) => ({ address: t.address, notify: useDSN ? { success: true, failure: true, delay: false } : undefined })),
    raw,
    source: 'authenticated',
    // DKIM: the user's own domain only (a From of another hosted domain goes unsigned).
    signAs: ctx.session.account.domain,
  });
}

/**
 * RFC 5322 3.6.2: a message without From gets the user's own; a From that is not the user's own
 * gets Sender, the user's own (one naming someone else would pass the message off as theirs).
 */
function withOwnFrom(ctx: SessionContext, composed: Buffer): Buffer {
  const fields = parseHeaderBlock(composed).fields;
  const from = parseAddressList(headerValue(fields, 'From') ?? '')[0]?.address;
  if (from === undefined) return prependHeaderFields(removeHeaderFields(composed, new Set(['from'])), [`From: ${ownFrom(ctx)}`]);
  if (from.toLowerCase() !== ctx.session.userName.toLowerCase()) {
    const sender = parseAddressList(headerValue(fields, 'Sender') ?? '')[0]?.address;
    if (sender === undefined || sender.toLowerCase() !== ctx.session.userName.toLowerCase()) {
      return prependHeaderFields(removeHeaderFields(composed, new Set(['sender'])), [`Sender: ${ownFrom(ctx)}`]);
    }
  }
  return composed;
}

/** Redirected (markRedirected; by default when the whole message was sent). */
async function markRedirected(ctx: SessionContext, box: MailboxHandle, uid: number, partID: string | undefined): Promise<void> {
  if (!(yes(ctx.request.attrs.markRedirected) ?? partID === undefined)) return;
  await ctx.server.mail.setFlags(box, [uid], { set: Flag.Redirected, clear: 0, addKeywords: [], removeKeywords: [] });
}

export const messageSendOperations: OperationTable = {
  messageSubmit: inSession(async (ctx) => {
    const { mail, datasets } = ctx.server;
    const { targetMailbox, flags, internalDate, dataset } = ctx.request.attrs;
    const email = ctx.request.element('EMail');
    if (!email) throw new ServiceError('the EMail element is missing');
    const envelope = ctx.request.elements('Envelope-To');
    const recipients = limitRecipients(
      envelope.length > 0
        ? envelope.map(envelopeAddress)
        : [...addressesOf(email.elements('To'), 'To'), ...addressesOf(email.elements('Cc'), 'Cc'), ...addressesOf(email.elements('Bcc'), 'Bcc')],
    );
    // Checked before anything is sent, so that a bad attribute sends nothing.
    const initial = parseInitialFlags(flags);
    const date = internalDateAttr(internalDate);
    const copyBox =
      targetMailbox === undefined || targetMailbox === ''
        ? undefined
        : await mail.access(ctx.session.account, targetMailbox, 'i', createOption(ctx.request));
    if (dataset !== undefined && dataset !== '') checkDatasetPath(dataset);

    // Encrypting names every recipient's certificate in the message (a RecipientInfo each, which
    // every recipient can read): the hidden recipients (Bcc, or Envelope-To addresses not in To or
    // Cc) would be revealed. So, when encrypting, the message for the others is encrypted for them
    // (and the sender) only, and each hidden recipient gets a copy of its own, encrypted for that
    // recipient and the sender, with the same Message-ID and Date.
    const encrypting = (email.attrs.encrypt ?? '').toLowerCase() === 'yes';
    const visible = new Set([...addressesOf(email.elements('To'), 'To'), ...addressesOf(email.elements('Cc'), 'Cc')].map((t) => t.address.toLowerCase()));
    const hidden = encrypting ? recipients.filter((t) => !visible.has(t.address.toLowerCase())) : [];
    const shown = encrypting ? recipients.filter((t) => visible.has(t.address.toLowerCase())) : recipients;
    // One composition (one Message-ID, one Date): the stored copy keeps Bcc, the sent one not.
    // Signed or encrypted (for the recipients' certificates) when the EMail element asks.
    const composed = withOwnFrom(ctx, await composeSecured(ctx, { addMissing: true, omitBcc: false }, shown.map((t) => t.address)));
    const sent = removeHeaderFields(composed, new Set(['bcc']));
    // Every copy is made (every certificate found) before anything is sent.
    const hiddenCopies: { target: Target; raw: Buffer }[] = [];
    if (hidden.length > 0) {
      const mainFields = parseHeaderBlock(composed).fields;
      const same = ['Message-ID', 'Date'].flatMap((name) => {
        const value = headerValue(mainFields, name);
        return value === undefined ? [] : [`${name}: ${value}`];
      });
      for (const target of hidden) {
        const copy = withOwnFrom(ctx, await composeSecured(ctx, { addMissing: true, omitBcc: false }, [target.address]));
        hiddenCopies.push({ target, raw: prependHeaderFields(removeHeaderFields(copy, new Set(['bcc', 'message-id', 'date'])), same) });
      }
      ctx.server.log.info({ event: 'smime.bcc_copies', account: ctx.session.userName, copies: hidden.length }, `encrypted message: ${hidden.length} Bcc recipient(s) sent their own copies`);
    }
    if (shown.length > 0) await submit(ctx, ctx.session.userName, shown, sent, yes(ctx.request.attrs.useDSN));
    for (const copy of hiddenCopies) await submit(ctx, ctx.session.userName, [copy.target], copy.raw, yes(ctx.request.attrs.useDSN));

    if (copyBox) {
      const message = prepareMessage(composed, { flags: initial.flags | Flag.Recent, keywords: initial.keywords, internalDate: date });
      await mail.append(copyBox, [message]);
    }
    if (dataset !== undefined && dataset !== '') {
      // The message is queued: a dataset that cannot take the addresses (full) must not
      // turn that into an error, which a client would answer by sending it again.
      for (const t of recipients) {
        try {
          await datasets.addAddress(ctx.session.account, dataset, t.address, t.realName);
        } catch (err) {
          if (!(err instanceof ServiceError)) throw err;
          break;
        }
      }
    }
  }),

  messageRedirect: inSession(async (ctx) => {
    const recipients = limitRecipients(addressesOf(ctx.request.elements('To'), 'To'));
    const original = await storedOriginal(ctx);
    const mirror = yes(ctx.request.attrs.mirror) ?? false;
    const raw = mirror
      ? original.raw
      : prependHeaderFields(original.raw, resentFields(ownFrom(ctx), recipients.map((t) => t.address), ctx.server.config.defaultDomain));
    await submit(ctx, ctx.session.userName, recipients, raw);
    await markRedirected(ctx, original.box, original.uid, original.partID);
  }),

  messageForward: inSession(async (ctx) => {
    if (ctx.request.attrs.mirror !== undefined) throw new ServiceError('messageForward does not support the mirror attribute');
    const recipients = limitRecipients(addressesOf(ctx.request.elements('To'), 'To'));
    const original = await storedOriginal(ctx);
    const fields = parseHeaderBlock(original.raw).fields;
    const raw = await forwardMessage({
      hostName: ctx.server.config.defaultDomain,
      timeZone: ctx.session.timeZone,
      from: { address: ctx.session.userName, realName: ctx.session.account.realName ?? undefined },
      to: recipients.map((t) => t.address),
      subject: decodeHeaderText(headerValue(fields, 'Subject') ?? ''),
      original: original.raw,
    });
    await submit(ctx, ctx.session.userName, recipients, raw);
    await markRedirected(ctx, original.box, original.uid, original.partID);
  }),

  messageConfirm: inSession(async (ctx) => {
    const type = ctx.request.attrs.type ?? 'manual';
    if (type !== 'manual' && type !== 'auto') throw new ServiceError(`invalid type: ${type} (auto or manual)`);
    const folder = openFolder(ctx.session, ctx.request);
    const uid = uidAttr(ctx.request);
    const meta = await ctx.server.mail.getMessage(folder.box, uid);
    if (!meta) throw new ServiceError('message not found');
    if (meta.flags & Flag.MDNSent) throw new ServiceError('a confirmation for this message has already been sent');
    const raw = await readMessage(ctx, folder.box, uid);
    const fields = parseHeaderBlock(raw).fields;
    const requested = headerValue(fields, 'Disposition-Notification-To');
    const to = requested === undefined ? undefined : parseAddressList(requested)[0];
    if (!to) throw new ServiceError('the message does not ask for a confirmation (no Disposition-Notification-To)');
    const target = checkedAddress(to.address, 'Disposition-Notification-To');
    const mdn = dispositionNotification({
      hostName: ctx.server.config.defaultDomain,
      user: ctx.session.userName,
      from: ownFrom(ctx),
      to: `<${target.address}>`,
      original: raw,
      originalFields: fields,
      subject: decodeHeaderText(headerValue(fields, 'Subject') ?? ''),
      mode: type,
    });
    // RFC 8098 section 2.1: an MDN travels with the null envelope sender.
    await submit(ctx, '', [target], mdn);
    await ctx.server.mail.setFlags(folder.box, [uid], { set: Flag.MDNSent, clear: 0, addKeywords: [], removeKeywords: [] });
  }),
};
